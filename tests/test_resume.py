"""Resume after a hard kill: `bench run` is SIGKILLed mid-trial, the same command is run again, and every
slot ends up finished exactly once, in Optuna and in MLflow."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from helpers import run_statuses, trial_runs, write_suite
from optuna.trial import TrialState

STUDY = "resume.digits_cnn.adamw"
BUDGET = 3


def bench_run(suite: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(suite), "--no-leaderboard"],
        cwd=suite.parent,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill reaches everything it started
    )


def trial_states(db: Path) -> list[tuple[int, str, bool]]:
    """(id, state, has an MLflow run yet) of every trial, read straight from Optuna's SQLite tables."""
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(
            "SELECT t.trial_id, t.state, EXISTS (SELECT 1 FROM trial_user_attributes a "
            "WHERE a.trial_id = t.trial_id AND a.key = 'mlflow_run') FROM trials t"
        ).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def training(db: Path) -> set[int]:
    """Trials running with their MLflow run created, once at least one trial has completed."""
    states = trial_states(db)
    if not any(state == "COMPLETE" for _, state, _ in states):
        return set()
    return {trial for trial, state, has_run in states if state == "RUNNING" and has_run}


def kill_mid_trial(proc: subprocess.Popen, db: Path, log: Path, timeout_s: float = 300.0) -> None:
    """SIGKILL the run while its second (or later) trial is training."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"bench run ended before it could be killed:\n{log.read_text()}"
        running = training(db)
        if running:
            time.sleep(1.0)  # past creating its run: into Trainer.fit
            if running & training(db):  # still the same trial: kill now
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"no trial was running after {timeout_s}s:\n{log.read_text()}")


@pytest.mark.slow
def test_a_killed_run_resumes_and_finishes_every_slot_exactly_once(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path,
        name="resume",
        tasks=[{"name": "digits_cnn", "steps": 200, "eval_every": 100}],  # seconds per trial: killable
        optimizers=["adamw"],
        # tpe: an adaptive protocol, whose slots get their parameters only when a trial starts
        tuning={"protocol": "tpe", "trials": BUDGET, "seeds": 1},
        settings={
            "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "storage": f"sqlite:///{tmp_path / '.bench' / 'optuna.db'}",
            "leaderboard_dir": str(tmp_path / "leaderboards"),
            "heartbeat_s": 1,  # a dead trial is stale (and retried) 3 s after its last beat
        },
    )
    log = tmp_path / "run.log"
    db = tmp_path / ".bench" / "optuna.db"
    kill_mid_trial(bench_run(suite, log), db, log)

    storage = f"sqlite:///{db}"
    killed = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    (dead,) = [t for t in killed if t.state == TrialState.RUNNING]  # nobody told Optuna it died
    assert sum(t.state == TrialState.COMPLETE for t in killed) >= 1
    dead_run = dead.user_attrs["mlflow_run"]

    resumed = bench_run(suite, log)  # the same command again
    assert resumed.wait(timeout=400) == 0, log.read_text()

    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == BUDGET
    assert sorted(t.user_attrs["slot"] for t in complete) == list(range(BUDGET))
    assert [t.state for t in trials if t.state != TrialState.COMPLETE] == [TrialState.FAIL]  # the dead one
    (retry,) = [t for t in complete if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.user_attrs["slot"] == dead.user_attrs["slot"]
    assert retry.params == dead.params  # the sampler's choice survives the kill
    assert retry.user_attrs["outcome"] == "completed" and retry.user_attrs["steps"] == 200

    runs = trial_runs(tmp_path)
    assert len(runs) == BUDGET
    assert sorted(r["bench.trial_id"] for r in runs) == [f"{STUDY}.trial-{i}" for i in range(BUDGET)]
    assert all(r["bench.outcome"] == "completed" and r["status"] == "FINISHED" for r in runs)
    assert dead_run not in {r["run_id"] for r in runs}
    retried_run = next(r for r in runs if int(r["bench.number"]) == dead.user_attrs["slot"])
    assert json.loads(retried_run["bench.params"]) == dead.params

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    retired = client.get_run(dead_run)
    assert retired.info.lifecycle_stage == "deleted" and retired.info.status == "KILLED"
    assert "process died" in retired.data.tags["bench.retired"]
    assert len(trial_runs(tmp_path, active_only=False)) == BUDGET + 1
    assert set(run_statuses(tmp_path, "study").values()) == {"FINISHED"}  # the killed run left it RUNNING
