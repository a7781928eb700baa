"""Resume after a hard kill: `bench run` is SIGKILLed mid-trial (at the `trial.step` fail point), the same
command is run again, and every slot ends up finished exactly once, in Optuna and in MLflow."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import optuna
import pytest
from helpers import bench_run, run_statuses, trial_runs, write_suite
from optuna.trial import TrialState

STUDY = "resume.digits_cnn.adamw"
BUDGET = 3


@pytest.mark.slow
def test_a_killed_run_resumes_and_finishes_every_slot_exactly_once(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path,
        name="resume",
        tasks=[{"name": "digits_cnn", "steps": 200, "eval_every": 100}],  # the kill lands at step 100 of 200
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
    # SIGKILLed by its own fail point half-way through its second trial (its 300th step): deterministic,
    # however fast the machine trains (polling the store and killing from outside lost that race).
    killed_run = bench_run(suite, log, "--no-leaderboard", failpoints="trial.step@300")
    assert killed_run.wait(timeout=400) == -signal.SIGKILL, log.read_text()

    storage = f"sqlite:///{db}"
    killed = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    (dead,) = [t for t in killed if t.state == TrialState.RUNNING]  # nobody told Optuna it died
    assert sum(t.state == TrialState.COMPLETE for t in killed) >= 1
    dead_run = dead.user_attrs["mlflow_run"]

    resumed = bench_run(suite, log, "--no-leaderboard")  # the same command again
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
