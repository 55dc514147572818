"""Headless Chromium for the report and dashboard tests (Debian's chromium and chromium-driver, which
scripts/chromium.sh installs for `make test`), driven by Selenium. Screenshots of every page checked are kept in
test-artifacts/ (TUNER_TEST_ARTIFACTS to put them elsewhere)."""
from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = os.environ.get("TUNER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TUNER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("TUNER_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
# Without the background-networking flags Chromium keeps dialing Google's hosts, which this network refuses.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


class BrowserMissing(RuntimeError):
    pass


@contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            raise BrowserMissing(f"{path} not found: run `make test` (it installs Chromium via scripts/chromium.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Page:
    console_errors: list[str]  # SEVERE entries of the page's console (JS errors, failed loads)
    text: str
    screenshot: Path


def open_page(driver, url: str, ready_js: str, name: str, timeout_s: float = 30.0) -> Page:
    """Load url, wait until `ready_js` returns true, keep a full-height screenshot as `name`.png."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    deadline = time.monotonic() + timeout_s
    while not driver.execute_script(f"return Boolean({ready_js})"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}: not ready after {timeout_s:.0f} s ({ready_js})")
        time.sleep(0.2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(1000, height), 12000))
    shot = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(shot))
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return Page(errors, driver.find_element(By.TAG_NAME, "body").text, shot)


def report_points(driver, figure_id: str) -> int:
    """Points Plotly drew in one figure of the report (the SVG markers, not the data handed to it)."""
    return driver.execute_script(f"return document.querySelectorAll('#fig-{figure_id} .scatterlayer .point').length")
