"""Storage: SQLite settings safe for a dashboard reading while the study writes, and a real PostgreSQL server
(started by `make test` through scripts/postgres.sh; TUNER_TEST_POSTGRES_URL names it)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from tuner.errors import InputError, StudyNotFound
from tuner.study.storage import check_storage_url, load_existing_study, open_storage

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get("TUNER_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("TUNER_TEST_POSTGRES_URL is not set: run `make test` (it starts PostgreSQL via scripts/postgres.sh)")
    return url


def test_sqlite_uses_wal_for_concurrent_readers(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    storage = open_storage(url)
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    study = optuna.create_study(study_name="w", storage=storage, directions=["maximize", "maximize"])
    reader = optuna.load_study(study_name="w", storage=open_storage(url))  # a dashboard, say
    t = study.ask()
    assert [x.state.name for x in reader.get_trials()] == ["RUNNING"]
    study.tell(t, [1.0, 1.0])
    assert [x.state.name for x in reader.get_trials()] == ["COMPLETE"]


def test_missing_study_is_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    optuna.create_study(study_name="there", storage=open_storage(url))
    with pytest.raises(StudyNotFound, match="studies there: there"):
        load_existing_study(url, "absent")


def test_unreachable_postgres_is_one_clear_line():
    with pytest.raises(InputError) as info:
        check_storage_url("postgresql+psycopg://tuner:secret@127.0.0.1:1/nope", "--storage", "")
    assert "cannot open" in str(info.value) and "secret" not in str(info.value)


def test_study_on_real_postgres(postgres_url, tmp_path):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    (tmp_path / "space.yaml").write_text("parameters:\n  seqs: {type: categorical, choices: [1, 2], flag: --max-num-seqs}\n")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": name, "model": "fake", "search_space": "space.yaml",
        "server": {"command": [sys.executable, FAKE], "env": {"FAKE_VLLM_MODE": "ok", "HF_TOKEN": "hf_donotstore"}},
        "load": {"concurrency": [1, 2], "requests_per_level": 4, "warmup_rounds": 0, "input_len": 4, "output_len": 4,
                 "repeats": 1},
        "resources": {"CPU": 1}, "trials": 2, "storage": postgres_url, "runs_dir": str(tmp_path / "runs"),
        "sampler": {"name": "random", "seed": 0},
        "confirm": {"repeats": 0},  # confirmation has its own tests; here, two trials on a real PostgreSQL
    }))
    cli = [sys.executable, "-m", "tuner.cli"]
    run = subprocess.run([*cli, "study", "start", "study.yaml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hf_donotstore" not in run.stdout + run.stderr
    study = load_existing_study(postgres_url, name)
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(complete) == 2 and all(t.values[0] > 0 for t in complete)
    assert all(t.user_attrs["env"]["HF_TOKEN"] == "***" for t in complete)  # passed to the server, never stored
    export = subprocess.run([*cli, "study", "export", name, "--storage", postgres_url, "-o", "best.yaml",
                             "--env-file", "best.env"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    assert "hf_donotstore" not in (tmp_path / "best.yaml").read_text() + (tmp_path / "best.env").read_text()
    log_artifacts = list((tmp_path / "runs" / "artifacts").rglob("*"))
    assert log_artifacts and not any(p.is_file() and "hf_donotstore" in p.read_text(errors="ignore") for p in log_artifacts)


def test_two_processes_creating_one_new_database_both_open_it(tmp_path):
    # A study starting while a dashboard (or a test poller) opens the same new file: both race to create tables.
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = f"from tuner.study.storage import open_storage; open_storage({url!r})"
    for _ in range(5):
        (tmp_path / "race.db").unlink(missing_ok=True)
        procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
