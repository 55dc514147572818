"""A space with a conditional parameter (drafts only where speculation is on, as in the quickstart's) from the
study through the dashboard notes, the report and the export: the CI demo once ended in a KeyError there."""
from __future__ import annotations

import sys

import optuna
import yaml
from tests.report.reviewed_study import FAKE, run_cli

from tuner.report._data import report_data
from tuner.report._figures import all_figures


def test_a_study_with_a_conditional_parameter_reports_and_exports(tmp_path):
    (tmp_path / "space.yaml").write_text("""
parameters:
  seqs: {type: categorical, choices: [1, 2, 4], flag: --max-num-seqs}
  spec_method: {type: categorical, choices: [null, ngram], flag: --speculative-config, key: method}
  num_speculative_tokens: {type: int, low: 1, high: 4, flag: --speculative-config, key: num_speculative_tokens,
                           condition: {spec_method: ngram}}
""")
    (tmp_path / "study.yaml").write_text(f"""
name: conditional
model: fake
search_space: space.yaml
server:
  command: [{sys.executable}, {FAKE}]
  env: {{FAKE_VLLM_TOKEN_MS: "1"}}
load: {{concurrency: [1, 4], requests_per_level: 8, warmup_rounds: 1, input_len: 8, output_len: 8, repeats: 1,
        request_timeout_s: 10, level_timeout_s: 30}}
resources: {{CPU: 1}}
trials: 4
storage: sqlite:///{tmp_path / 'db.sqlite'}
runs_dir: {tmp_path / 'runs'}
timeouts: {{startup_s: 120, shutdown_grace_s: 2}}
confirm: {{repeats: 0}}
enqueue:
  - {{seqs: 1, spec_method: null}}
  - {{seqs: 4, spec_method: ngram, num_speculative_tokens: 2}}
  - {{seqs: 2, spec_method: null}}
  - {{seqs: 4, spec_method: null}}
""")
    run_cli("study", "start", "study.yaml", cwd=tmp_path)  # publishes the dashboard notes and importances
    run_cli("study", "report", "conditional", "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}", "-o", "report.html",
            cwd=tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "num_speculative_tokens" in html
    assert "<h2>Cost</h2>" in html and "slice-hours over 4 launches" in html and "by phase: sweep" in html
    assert "the whole grid: 24 configs" in html.lower()  # 3 x 2 x 4: the drafts counted as if always set
    assert "Compile cache per launch: unknown 4." in html
    data = report_data(optuna.load_study(study_name="conditional", storage=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    assert list(data.trials["param:spec_method"]) == ["null", "ngram", "null", "null"]  # chosen null, not missing
    assert data.trials["param:num_speculative_tokens"].isna().sum() == 3  # not set where speculation is off
    assert all_figures(data)["failures"].layout.xaxis.title.text == "seqs"  # an axis every trial has
    run_cli("study", "export", "conditional", "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}", "--trial", "1",
            "-o", "best.yaml", cwd=tmp_path)
    assert "# measured on: vLLM 0.32.0+fake" in (tmp_path / "best.yaml").read_text()
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["speculative-config"] == {"method": "ngram", "num_speculative_tokens": 2}


def test_what_a_warm_compile_cache_saved():
    import pandas as pd

    from tuner.report._render import _cache_saving

    launches = pd.DataFrame({"startup_s": [1800.0, 1700.0, 240.0], "compile_cache": ["cold", "cold", "warm"]})
    data = type("Data", (), {"launches": launches})()
    assert _cache_saving(data) == " Compile cache: warm launches started in 240 s on average, cold ones in 1,750 s."
