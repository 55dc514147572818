"""Replay: a study answered from a recorded surface runs the normal loop (scoring, constraints, front, export) and
every replayed number says so."""
from __future__ import annotations

import random
import subprocess
import sys

import optuna
import pytest
from tests.builders import SPACE, write_surface

from tuner.errors import SurfaceError
from tuner.study.replay import Surface


@pytest.fixture
def surface(tmp_path):
    return write_surface(tmp_path)


def test_a_draw_is_a_recorded_launch_marked_as_replayed(surface):
    s = Surface.load(surface)
    draws = {s.draw({"seqs": 8}, random.Random(seed)).levels[1].output_throughput for seed in range(20)}
    assert draws == {1000, 900}
    result = s.draw({"seqs": 16}, random.Random(0))
    assert result.failure_class == "kv_capacity" and result.replayed == "surface.json (measured)"
    assert "no server was started" in result.log_tail
    with pytest.raises(SurfaceError, match="no launch recorded"):
        s.draw({"seqs": 32}, random.Random(0))


def test_a_bad_surface_file_is_one_clear_input_error(tmp_path):
    (tmp_path / "bad.json").write_text("{\"configs\": 3}")
    with pytest.raises(SurfaceError, match=r"record one with benchmarks/record_surface\.py"):
        Surface.load(tmp_path / "bad.json")


def test_a_replayed_study_runs_the_normal_loop(surface, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    storage = f"sqlite:///{tmp_path / 'replay.db'}"
    (tmp_path / "study.yaml").write_text(
        "name: r\nmodel: m\nsearch_space: space.yaml\nslo: {ttft_p99_ms: 500}\nslo_margin: 0\n"
        f"trials: 3\nstorage: {storage}\nruns_dir: {tmp_path / 'runs'}\n"
        "confirm: {repeats: 1, candidates: 1}\nload: {concurrency: [2, 8], repeats: 1}\n"
        "enqueue: [{seqs: 4}, {seqs: 8}, {seqs: 16}]\n"
        "replay: {surface: surface.json, seed: 3}\n")
    done = subprocess.run([sys.executable, "-m", "tuner.cli", "study", "start", "study.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = " ".join(done.stdout.split())
    assert "REPLAY: no server is started" in out and "REPLAYED from surface.json" in out
    # The sampler auto chose, and why (without torch: how to get GPSampler, `[gp]` printed as is).
    assert "sampler: gp (auto:" in out or "(pip install 'tuner[gp]')" in out

    study = optuna.load_study(study_name="r", storage=storage)
    slow, fast, broken, confirmation = study.trials
    assert all(t.user_attrs["replayed"] == "surface.json (measured)" for t in study.trials)
    # Scored as live trials are: 4 sequences meet the SLO only at 2 streams; 16 is a config failure.
    assert slow.user_attrs["score"]["operating_concurrency"] == 2
    assert fast.user_attrs["score"]["operating_concurrency"] == 8
    assert broken.constraints["config_failure"] > 0
    assert confirmation.user_attrs["confirms"] == fast.number

    exported = tmp_path / "best.yaml"
    subprocess.run([sys.executable, "-m", "tuner.cli", "study", "export", "r", "--storage", storage, "-o",
                    str(exported)], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    assert "# REPLAYED, NOT MEASURED BY THIS STUDY" in exported.read_text()


def test_a_missing_surface_stops_before_storage_is_written(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "study.yaml").write_text(f"name: r\nmodel: m\nsearch_space: space.yaml\n"
                                         f"storage: sqlite:///{tmp_path / 'replay.db'}\n"
                                         "replay: {surface: nowhere.json}\n")
    done = subprocess.run([sys.executable, "-m", "tuner.cli", "study", "start", "study.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nowhere.json" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "replay.db").exists()


def test_patience_ends_the_search_when_the_front_stops_improving(surface, tmp_path):
    from tuner.inputs.spec import load_study
    from tuner.study import StudyRunner, create_or_load
    from tuner.study.storage import open_storage

    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "study.yaml").write_text(
        "name: p\nmodel: m\nsearch_space: space.yaml\nslo: {ttft_p99_ms: 500}\nslo_margin: 0\n"
        f"trials: 8\npatience: 2\nstorage: sqlite:///{tmp_path / 'p.db'}\nruns_dir: {tmp_path / 'runs'}\n"
        "confirm: {repeats: 0}\nload: {concurrency: [2, 8], repeats: 1}\n"
        "enqueue: [{seqs: 8}, {seqs: 4}, {seqs: 16}]\nreplay: {surface: surface.json, seed: 1}\n")
    study = load_study(tmp_path / "study.yaml")
    optuna_study = create_or_load(study, open_storage(study.spec.storage), "p")
    StudyRunner(study, optuna_study, study.spec.trials).run()
    # 8 makes the front; 4 (slower, no steadier) and 16 (cannot start) do not: two in a row, the search ends.
    assert [t.params["seqs"] for t in optuna_study.trials] == [8, 4, 16]
    assert optuna_study.user_attrs["search_stopped"] == ("stopping the search: the front has not improved in the"
                                                         " last 2 launched trials (patience 2); 3 of 8 trials used")


def test_a_compressed_surface_loads_like_a_plain_one(surface, tmp_path):
    import gzip

    packed = tmp_path / "surface.json.gz"
    packed.write_bytes(gzip.compress(surface.read_bytes()))
    assert Surface.load(packed).launches == Surface.load(surface).launches
