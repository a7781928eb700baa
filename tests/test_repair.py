"""What an interrupted run leaves in MLflow is repaired against Optuna, with real stores: runs whose trial
failed, was retried or never told Optuna its run are retired; live and valid runs stay; and a
half-written record (outcome `running` on a FINISHED run) never reaches the leaderboard's table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_records import SUMMARY, trial_record

from bench import records, repair, score, search
from bench.space import Float
from bench.spec import LeaderboardSpec
from bench.track import Tracker

STUDY = "tiny.digits_cnn.adamw"


@pytest.mark.parametrize(
    ("state", "recorded", "retired"),
    [
        ("RUNNING", None, False),  # a live worker's (or one the slot repair fails first)
        ("COMPLETE", "r", False),  # the valid record
        ("PRUNED", "r", False),
        ("COMPLETE", None, False),  # a store from before trials recorded their run: not judged
        ("COMPLETE", "other", True),  # an earlier attempt's run, the trial finished with another
        ("FAIL", "r", True),  # killed, failed as stale, full disk: the slot runs again
        ("FAIL", None, True),  # killed between creating the run and telling Optuna its id
        ("WAITING", None, True),
        (None, None, True),  # no such trial in the study
    ],
)
def test_verdict(state: str | None, recorded: str | None, retired: bool) -> None:
    assert (repair.verdict(state, recorded, "r") is not None) == retired


def test_runs_of_unfinished_attempts_are_retired_and_the_rest_kept(tmp_path: Path) -> None:
    storage = search.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=1)
    study, _ = search.open_study(
        storage, STUDY, direction="minimize", protocol="random", seed=0,
        space={"lr": Float(1e-4, 1e-1, log=True)}, pruner=search.make_pruner("none", 1, 1),
        slots=[{"lr": 1e-3}] * 4,
    )  # fmt: skip
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")

    def attempt(slot: int, *, tell_run: bool = True) -> tuple[optuna.Trial, str]:
        trial = study.ask()
        assert trial.user_attrs["slot"] == slot
        record = trial_record(trial_id=f"{STUDY}.trial-{slot}", number=slot, optuna_trial=trial.number)
        run_id = tracker.open_trial(record, f"adamw#{slot}", None)
        if tell_run:
            trial.set_user_attr("mlflow_run", run_id)
        return trial, run_id

    done, valid = attempt(0)
    tracker.close_trial(
        valid, dataclasses.replace(trial_record(trial_id=f"{STUDY}.trial-0"), summary=SUMMARY)
    )
    study.tell(done, 0.0417)
    earlier = tracker.open_trial(trial_record(optuna_trial=done.number), "adamw#0 (an earlier attempt)", None)
    _, live = attempt(1)  # still training in another worker
    full, half_written = attempt(2)
    tracker.finish(half_written)  # a full disk: FINISHED, outcome still `running`, no value
    study.tell(full, state=TrialState.FAIL)
    killed, orphan = attempt(3, tell_run=False)  # killed before Optuna heard of its run...
    study.tell(killed, state=TrialState.FAIL)  # ...and failed as stale
    elsewhere = tracker.open_trial(trial_record(study="tiny.digits_cnn.lion", optuna_trial=0), "lion#0", None)

    table = tracker.trials_table()  # the half-written record is no trial's result
    assert list(table["run_id"]) == [valid]
    tracker.log(half_written, tags={records.OUTCOME: "exploded"})  # nor is an outcome bench does not know
    table = tracker.trials_table()
    assert list(table["run_id"]) == [valid]
    score.leaderboard(table, LeaderboardSpec())  # scoring raises on an unknown outcome: none reaches it

    retired = dict(repair.retire_orphans(tracker, storage, lambda r: r.study))
    assert sorted(retired) == sorted([earlier, half_written, orphan])
    assert "another run" in retired[earlier] and "FAIL" in retired[orphan]
    active = {r.run_id for r in tracker.read_trials(ended=False)}
    assert active == {valid, live, elsewhere}
    for run_id in retired:
        run = tracker.client.get_run(run_id)
        assert run.info.status == "KILLED" and run.info.lifecycle_stage == "deleted"
        assert run.data.tags[records.RETIRED].startswith("repaired: ")
    assert repair.retire_orphans(tracker, storage, lambda r: r.study) == []  # idempotent
