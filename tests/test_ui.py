"""The MLflow UI as a newcomer meets it: a real suite's stores served by `bench ui`, looked at through a
real headless browser (Debian's chromium, driven by selenium).

It checks what a person would look for, and saves a screenshot of each page so that a person can look too:

1. the link `bench ui` prints opens the suite's experiment on its training-runs table (not MLflow 3's
   GenAI overview), with the suite's description;
2. a study's run has ended (Finished), with its description;
3. the suite run's leaderboard page, in its artifacts, shows its tables and every plot;
4. a trial's page shows its loss curves; the experiment's chart view starts with the curves.

    BENCH_UI_SHOTS=/tmp/ui-shots pytest -q -m slow tests/test_ui.py -s     # screenshots kept there

Needs chromium and its driver (`apt-get install chromium chromium-driver`) and selenium (the `dev`
extra); without them the test is skipped, as in CI.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import write_suite

BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (BROWSER and DRIVER and importlib.util.find_spec("selenium")),
        reason="needs chromium, chromedriver (apt-get install chromium chromium-driver) and selenium",
    ),
]
FLAGS = (  # what works for Debian's chromium in a container
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
)  # fmt: skip
WAIT_S = 90  # a busy 2-core machine renders MLflow's pages slowly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A tiny suite run into fresh stores, and `bench ui` serving them; yields the links it printed."""
    directory = tmp_path_factory.mktemp("ui")
    suite = write_suite(
        directory,
        description="UI check: SGD and AdamW on the digits CNN",
        tuning={"protocol": "random", "trials": 2, "seeds": 2},
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", str(suite), "--quiet-bars"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    port = free_port()
    log = (directory / "ui.log").open("w")
    ui = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "ui", "--tracking-uri", f"sqlite:///{directory / 'mlflow.db'}",
         "--port", str(port)],
        cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(base, timeout=5)
                break
            except OSError:
                assert ui.poll() is None and time.monotonic() < deadline, (directory / "ui.log").read_text()
                time.sleep(1)
        printed = (directory / "ui.log").read_text()
        links = dict(re.findall(r"(runs|leaderboard) (http\S+)", printed))
        assert set(links) == {"runs", "leaderboard"}, printed
        yield {"links": links, "run_output": run.stdout, "directory": directory}
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # MLflow 3's server starts job runners: stop the whole group
        with contextlib.suppress(subprocess.TimeoutExpired):
            ui.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGKILL)  # its job runners can outlive a TERM
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = BROWSER
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="bench-ui-")  # a fresh profile: MLflow's per-browser defaults
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = Path(os.environ.get("BENCH_UI_SHOTS") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def show(driver: Any, url: str, *texts: str) -> str:
    """Open `url` and wait until the page shows every one of `texts`; return the page's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts)
    )
    time.sleep(2)  # charts finish drawing after their titles appear
    return driver.find_element(By.TAG_NAME, "body").text


def save(driver: Any, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")


def run_id_of(served: dict[str, Any], kind: str, name: str | None = None) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{served['directory'] / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    runs = client.search_runs([experiment.experiment_id], f"tags.`bench.kind` = '{kind}'")
    return next(r.info.run_id for r in runs if name is None or r.info.run_name == name)


def test_the_printed_link_opens_the_training_runs_of_the_suite(served, browser, shots) -> None:
    text = show(browser, served["links"]["runs"], "digits_cnn/sgd", "digits_cnn/adamw")
    save(browser, shots, "1_experiment_runs")
    assert "UI check: SGD and AdamW on the digits CNN" in text  # the experiment's description
    assert "Runs" in text.splitlines() and "Detect Issues" not in text and "Token Usage" not in text
    assert "matching runs" in text  # the runs table, not the GenAI overview


def test_a_study_run_has_ended_and_says_what_it_is(served, browser, shots) -> None:
    experiment = served["links"]["runs"].split("/runs?")[0]
    study = run_id_of(served, "study", "digits_cnn/adamw")
    text = show(browser, f"{experiment}/runs/{study}?workflowType=machine_learning", "Finished")
    save(browser, shots, "2_study_run")
    assert "Study digits_cnn x adamw of suite tiny" in text.replace("**", "").replace("`", "")


def test_the_leaderboard_page_shows_its_tables_and_every_plot(served, browser, shots) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    show(browser, served["links"]["leaderboard"], "leaderboard/tiny.html")
    frame = WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.TAG_NAME, "iframe"))
    browser.switch_to.frame(frame)
    try:
        WebDriverWait(browser, WAIT_S).until(
            lambda d: "Leaderboard: tiny" in d.find_element(By.TAG_NAME, "body").text
        )
        images = browser.find_elements(By.TAG_NAME, "img")
        drawn = browser.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth)"
        )
        tables = browser.find_elements(By.TAG_NAME, "table")
        save(browser, shots, "3_leaderboard_top")
        browser.execute_script("document.images[0].scrollIntoView()")  # the first plot, for the eye
        time.sleep(1)
    finally:
        browser.switch_to.default_content()
    save(browser, shots, "3_leaderboard_plots")
    # the summary and the task's table; lr sensitivity, expected best of k, the best trials' curves
    assert len(tables) >= 2 and len(images) >= 3
    assert all(width and width > 100 for width in drawn), drawn  # every plot loaded and drawn


def test_a_trial_shows_its_loss_curves_and_the_chart_view_starts_with_the_curves(
    served, browser, shots
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    experiment = served["links"]["runs"].split("/runs?")[0]
    trial = run_id_of(served, "tune")
    show(
        browser,
        f"{experiment}/runs/{trial}/model-metrics?workflowType=machine_learning",
        "train/loss",
        "val/error",
    )
    save(browser, shots, "4_trial_curves")

    def sections(text: str) -> list[str]:
        return [
            line
            for line in text.splitlines()
            if line in ("best/val", "train", "val", "Model metrics", "System metrics")
        ]

    # The chart view charts the runs it lists: first the study runs, whose first chart is their tuning curve
    text = show(browser, f"{served['links']['runs']}&compareRunsMode=CHART", "best/val")
    save(browser, shots, "5_experiment_charts")
    assert sections(text)[0] == "best/val", sections(text)
    # ... then, with the studies expanded, their trials' curves, before the summaries and the throughput
    expand = 'button[data-component-id*="runnamecellrenderer"]'  # the +/- beside a parent run's name
    assert len(browser.find_elements(By.CSS_SELECTOR, expand)) == 2, "MLflow's runs table changed"
    for i in range(2):
        browser.find_elements(By.CSS_SELECTOR, expand)[i].click()
        time.sleep(1)
    WebDriverWait(browser, WAIT_S).until(
        lambda d: "train" in d.find_element(By.TAG_NAME, "body").text.splitlines()
    )
    time.sleep(2)
    text = browser.find_element(By.TAG_NAME, "body").text
    save(browser, shots, "6_experiment_charts_expanded")
    assert sections(text) == ["best/val", "train", "val", "Model metrics", "System metrics"], sections(text)
