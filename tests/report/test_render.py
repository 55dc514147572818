"""The report files: HTML in one file that needs no network, Markdown with its figures beside it."""
from __future__ import annotations

import re

import pytest
from tests.report.reviewed_study import run_cli

from tuner.errors import ReportFigureError
from tuner.report import write_report


def test_the_html_report_is_one_self_contained_file(reviewed, tmp_path):
    out = tmp_path / "report.html"
    run_cli("study", "report", "reviewed", "--storage", reviewed.storage, "-o", str(out), cwd=reviewed.root)
    text = out.read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=['\"]https?:", text)  # opens offline
    assert "Plotly" in text and text.count("class=\"plotly-graph-div\"") >= 5
    assert "id='recommended-yaml'" in text and "max-num-seqs: 4" in text
    assert "kv_capacity" in text
    assert "<h3>Physical limits</h3>" in text and "decode ceiling tok/s" in text and "bandwidth " in text
    assert "decode ceiling (bandwidth)" in text  # drawn on the load curves


def test_the_markdown_report_links_its_png_figures(reviewed, tmp_path):
    out = tmp_path / "report.md"
    written = write_report(reviewed.load(), out, "md")
    text = out.read_text()
    assert "| output tok/s" in text and "```yaml" in text
    for png in written[1:]:
        assert png.read_bytes().startswith(b"\x89PNG") and f"](report_figures/{png.name})" in text


def test_without_chromium_the_markdown_report_says_how_to_fix_it_and_writes_nothing(reviewed, tmp_path,
                                                                                    monkeypatch):
    import plotly.graph_objects as go
    from kaleido.errors import ChromeNotFoundError

    def no_browser(*args, **kwargs):
        raise ChromeNotFoundError("no chrome")

    monkeypatch.setattr(go.Figure, "write_image", no_browser)
    with pytest.raises(ReportFigureError, match=r"apt install chromium.*--format html"):
        write_report(reviewed.load(), tmp_path / "report.md", "md")
    assert not (tmp_path / "report.md").exists()


def test_a_bad_format_is_one_clear_line(reviewed, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tuner.cli", "study", "report", "reviewed", "--storage",
                           reviewed.storage, "-o", str(tmp_path / "r.pdf"), "--format", "pdf"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == "error: --format: expected html or md, got 'pdf'"
