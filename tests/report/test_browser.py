"""The report and the dashboard as a person sees them: rendered in headless Chromium, with no console errors, one
point per trial, the notes and the server log reachable. Screenshots go to test-artifacts/."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from tests.browser import chromium, open_page, report_points
from tests.report.reviewed_study import run_cli

PLOTS_DRAWN = "document.querySelectorAll('.js-plotly-plot .main-svg').length > 0"


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def dashboard(reviewed, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # No --artifacts: the dashboard finds the directory the study recorded (run from elsewhere, as a user would).
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "dashboard", "--storage", reviewed.storage,
                             "--port", str(port)], cwd=tmp_path_factory.mktemp("elsewhere"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/studies", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_report_renders_with_one_point_per_trial_and_no_console_errors(reviewed, browser, tmp_path):
    out = tmp_path / "report.html"
    run_cli("study", "report", "reviewed", "--storage", reviewed.storage, "-o", str(out), cwd=reviewed.root)
    page = open_page(browser, out.as_uri(), PLOTS_DRAWN, "report")
    assert page.console_errors == []
    assert report_points(browser, "front") == len(reviewed.load().trials) == 3
    assert "Trade-off: baseline, peak and balanced" in page.text and "max-num-seqs: 4" in page.text
    assert browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length") >= 6


def test_the_dashboard_shows_the_plots_the_notes_and_the_server_log(reviewed, browser, dashboard):
    study = open_page(browser, f"{dashboard}/dashboard/studies/1", PLOTS_DRAWN, "dashboard-study")
    assert study.console_errors == []
    assert "output_tok_s" in study.text and "stability" in study.text  # objective names, not "Objective 0"
    assert "Every trial: throughput vs stability" in study.text  # tuner's plot, saved with the study
    assert browser.execute_script("return document.querySelectorAll('.scatterlayer .point').length") > 0

    trial = open_page(browser, f"{dashboard}/dashboard/studies/1/trials?numbers=2",
                      "document.body.innerText.includes('Penalized: kv_capacity')", "dashboard-trial")
    assert trial.console_errors == []
    assert "Command" in trial.text and "--max-num-seqs 2" in trial.text
    link = browser.execute_script(
        "return [...document.querySelectorAll('a')].find(a => a.href.includes('/artifacts/'))?.href")
    assert link, "no artifact link on the trial page"
    log = open_page(browser, link, "document.body.innerText.length > 0", "dashboard-artifact")
    assert "KV cache" in log.text
