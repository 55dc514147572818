"""A server that dies at each seam of a trial, at an exact point, never a race: the trial ends as the server's outcome
(died_under_load), keeps what it measured before, and the study goes on. The fake server dies on SIGUSR1 (sent by an
observer at a tuner.trial.run.Seam) or on the N-th request to a path (during a /metrics scrape, during tokenization).

Also: every call tuner makes to the server maps a refused, reset or closed connection, or a timeout, to ServerGone
(tuner.server.client), and a server without tokenizer endpoints is the user's setup (exit 2), never a tuner bug."""
from __future__ import annotations

import sys
from pathlib import Path

import httpx
import optuna
import pytest
import ray
import yaml
from tests.builders import FAKE, TIMEOUTS, EndServerAt, fake_config, load

from tuner.errors import ServerGone, SetupError, TokenizerUnavailable
from tuner.inputs.spec import load_study
from tuner.load.tokenizer import ServerTokenizer
from tuner.server.client import server_client
from tuner.study import StudyRunner, create_or_load
from tuner.study.storage import open_storage
from tuner.trial import Seam, launch, run_trial
from tuner.trial.sweep_plan import SweepPlan

pytestmark = pytest.mark.usefixtures("no_server_left_behind")


def trial(tmp_path: Path, plan: SweepPlan, observer=None, mode: str = "ok", vocab_size: int | None = None):
    return run_trial(fake_config(tmp_path, mode), plan, TIMEOUTS, str(tmp_path / "server.log"),
                     vocab_size=vocab_size, observer=observer).result


def kept(result) -> list[tuple[str, int, int]]:
    """The levels measured before the death, which stay; whatever came after is unreliable (a level that meets a
    dead server at connect is no level at all)."""
    good = [lv for lv in result.levels if lv.reliable]
    assert result.levels[:len(good)] == good and all(not lv.reliable for lv in result.levels[len(good):])
    return [(lv.phase, lv.concurrency, lv.repeat) for lv in good]


# -- at each seam, on one launch (the kept levels) -------------------------------------------------------------

@pytest.mark.parametrize("vocab_size", [None, 2048], ids=["text-prompts", "id-prompts"])
def test_dies_after_startup_before_the_first_level(tmp_path, vocab_size):
    """Until its first request is answered a server that dies has failed to start (classified from its log, here
    the fake's crash line), whichever of tuner's calls met it first: /tokenize for text prompts, or the request."""
    result = trial(tmp_path, SweepPlan(load()), EndServerAt(Seam.READY), vocab_size=vocab_size)
    assert result.failure_class == "crash", result.failure_detail
    assert "exit code 1 before its first request was answered" in result.failure_detail
    assert result.levels == [] and not result.traceback and result.first_request_s is None


def test_dies_after_the_prompts_were_built_before_the_first_level(tmp_path):
    result = trial(tmp_path, SweepPlan(load()), EndServerAt(Seam.PROMPTS_BUILT))
    assert result.failure_class == "crash", result.failure_detail  # before its first request: failed to start
    # both levels, their warm-ups and a repeat at each (the operating point is known after the sweep), built up front
    assert result.prompts_built == 8 + 1 + 8 + 4 + 8 + 8
    assert kept(result) == []


def test_dies_between_two_levels_keeps_the_first(tmp_path):
    result = trial(tmp_path, SweepPlan(load()), EndServerAt(Seam.LEVEL_DONE, nth=1))
    assert result.failure_class == "died_under_load", result.failure_detail
    assert kept(result) == [("sweep", 1, 0)] and result.levels[0].completed == 8


def test_dies_between_the_sweep_and_the_repeats_keeps_the_sweep(tmp_path):
    result = trial(tmp_path, SweepPlan(load()), EndServerAt(Seam.SWEEP_DONE))
    assert result.failure_class == "died_under_load", result.failure_detail
    assert kept(result) == [("sweep", 1, 0), ("sweep", 4, 0)]


def test_dies_before_the_soak_keeps_sweep_and_repeats(tmp_path):
    plan = SweepPlan(load()).with_soak(4, None)
    result = trial(tmp_path, plan, EndServerAt(Seam.BEFORE_SOAK))
    assert result.failure_class == "died_under_load", result.failure_detail
    assert kept(result) == [("sweep", 1, 0), ("sweep", 4, 0), ("sweep", 4, 1)]


def test_dies_during_a_metrics_scrape(tmp_path):
    # The first scrape opens the first level (its counters' baseline); later ones depend on the sampler's timing.
    result = trial(tmp_path, SweepPlan(load()), mode="die-on:/metrics:1")
    assert result.failure_class == "died_under_load", result.failure_detail
    assert "during request 1 to /metrics" in result.log_tail
    assert kept(result) == [] and not result.traceback


@pytest.mark.parametrize("nth", [1, 5])
def test_dies_during_prompt_tokenization(tmp_path, nth):
    """/detokenize is the tokenizer's probe (request 1); /tokenize requests build the text prompts. Both come before
    the first request is answered: the server failed to start."""
    path = "/detokenize" if nth == 1 else "/tokenize"
    result = trial(tmp_path, SweepPlan(load()), mode=f"die-on:{path}:{nth}")
    assert result.failure_class == "crash", result.failure_detail
    assert f"POST {path}" in result.failure_detail and "before its first request" in result.failure_detail
    assert result.levels == [] and not result.traceback


# -- through the study: the class is recorded and the study goes on --------------------------------------------

def seam_study(tmp_path: Path, mode: str = "ok", trials: int = 2, **env: str):
    (tmp_path / "space.yaml").write_text(
        "parameters:\n  seqs: {type: categorical, choices: [1, 2, 3, 4], flag: --max-num-seqs}\n")
    spec = {
        "name": "seams", "model": "fake", "search_space": "space.yaml",
        "server": {"command": [sys.executable, FAKE], "nice": 0, "env": {"FAKE_VLLM_MODE": mode, "FAKE_VLLM_TOKEN_MS": "1",
                                                              "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "1",
                                                              "TUNER_TEST_TAG": str(tmp_path), **env}},
        "load": {"concurrency": [1, 4], "requests_per_level": 8, "warmup_rounds": 1, "input_len": 8, "output_len": 8,
                 "repeats": 2, "request_timeout_s": 10, "level_timeout_s": 30, "stop_early": False, "worst_case": False},
        "resources": {"CPU": 1}, "trials": trials, "storage": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "runs_dir": str(tmp_path / "runs"), "timeouts": {"startup_s": 120, "shutdown_grace_s": 2, "fatal_log_grace_s": 1},
        "sampler": {"name": "random", "seed": 0}, "max_infra_retries": 1, "confirm": {"repeats": 0},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    return load_study(tmp_path / "study.yaml")


def run_study(study, task=launch) -> optuna.Study:
    optuna_study = create_or_load(study, open_storage(study.spec.storage), study.spec.name)
    StudyRunner(study, optuna_study, study.spec.trials, task=task).run()
    return optuna_study


@pytest.mark.parametrize("seam, lived, failure", [(Seam.READY, 0, "crash"), (Seam.LEVEL_DONE, 1, "died_under_load"),
                                                  (Seam.SWEEP_DONE, 2, "died_under_load")])
def test_a_death_at_a_seam_is_recorded_and_the_study_goes_on(tmp_path, local_ray, seam, lived, failure):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this test module

    def task(request, **kwargs):
        return launch(request, observer=EndServerAt(seam), **kwargs)

    optuna_study = run_study(seam_study(tmp_path), task)
    trials = optuna_study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]  # both launched: the study went on
    for t in trials:
        assert t.user_attrs["failure_class"] == failure  # before its first request was answered: failed to start
        assert t.user_attrs["score"]["evidence"]["phases_lived"] == lived


@pytest.mark.parametrize("mode", ["die-on:/tokenize:3", "die-on:/metrics:2"])
def test_a_death_during_tuners_own_calls_is_recorded_and_the_study_goes_on(tmp_path, local_ray, mode):
    optuna_study = run_study(seam_study(tmp_path, mode))
    assert [t.state.name for t in optuna_study.get_trials()] == ["COMPLETE", "COMPLETE"]
    # Prompts are built (/tokenize) before the first request: a death there is a failure to start.
    expected = "crash" if "tokenize" in mode else "died_under_load"
    assert {t.user_attrs["failure_class"] for t in optuna_study.get_trials()} == {expected}


# -- a server without tokenizer endpoints: the user's setup ---------------------------------------------------

def test_a_server_without_tokenizer_endpoints_stops_the_study_as_a_setup_error(tmp_path, local_ray):
    """An OpenAI-compatible server that answers /detokenize with a 404: one line with the fix, exit 2 at the CLI,
    the trial not penalized, not a tuner bug, and re-queued for the run after the fix."""
    study = seam_study(tmp_path, FAKE_VLLM_NO_TOKENIZER="1")
    with pytest.raises(SetupError) as info:
        run_study(study)
    message = str(info.value)
    assert "study.yaml: model_info.config_json" in message and "/detokenize answered 404" in message
    assert "bug" not in message
    first, requeued = optuna.load_study(study_name="seams", storage=open_storage(study.spec.storage)).get_trials()
    assert first.state.name == "FAIL" and first.user_attrs["failure_class"] == "setup_error"
    assert requeued.state.name == "WAITING"


# -- the one rule: every call to the server maps the server not answering to ServerGone -----------------------

@pytest.mark.parametrize("error, kind", [
    (httpx.ConnectError("refused"), "refused"), (httpx.ReadError("reset by peer"), "reset"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), "closed"),
    (httpx.ReadTimeout("timed out"), "timeout"), (httpx.WriteError("broken pipe"), "reset"),
])
def test_the_server_client_maps_every_transport_failure(error, kind):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with server_client(1.0, transport=httpx.MockTransport(handler)) as client, pytest.raises(ServerGone) as info:
        client.get("http://server/metrics")
    assert info.value.kind == kind and info.value.call == "GET /metrics"


def test_a_reset_in_the_middle_of_a_body_is_mapped_too():
    class Broken(httpx.SyncByteStream):
        def __iter__(self):
            yield b'{"tok'
            raise httpx.ReadError("Connection reset by peer")

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=Broken()))
    with server_client(1.0, transport=transport) as client, pytest.raises(ServerGone, match="reset"):
        client.post("http://server/tokenize", json={})


def test_the_server_tokenizer_tells_the_server_from_the_setup():
    def answer(status: int):
        return httpx.MockTransport(lambda request: httpx.Response(status, json={"detail": "Not Found"}))

    with pytest.raises(TokenizerUnavailable, match="answered 404"):
        ServerTokenizer("http://server", "m", transport=answer(404))
    with pytest.raises(ServerGone, match="error 503"):
        ServerTokenizer("http://server", "m", transport=answer(503))
