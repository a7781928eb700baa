"""bench.branches without training: a horizon run's writer failing is the recording's failure, and a
retried trial whose last horizon was already recorded reads that horizon back whole, with a real MLflow
store. The trainings themselves are tested end to end in test_horizons.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import runner_spec
from mlflow.exceptions import MlflowException
from test_records import trial_record

from bench import branches, faults
from bench.engine import summary_of
from bench.horizons import Branch, HorizonPlan
from bench.records import Summary
from bench.run import TrialResult, TrialSpec
from bench.track import BATCH, Tracker


def horizons(tmp_path: Path, tracker: Tracker, trial_run: str) -> tuple[branches.Horizons, Branch]:
    """A trial of 20 steps with one horizon (the whole run) cooled down from step 10."""
    spec = runner_spec(tmp_path / "suite")
    branch = Branch(steps=20, start=10, schedule=spec.optimizer.schedule)
    h = branches.Horizons(
        spec,
        HorizonPlan(branches=(branch,), warmup=0),
        directory=tmp_path / "checkpoints",
        tracker=tracker,
        record=trial_record(),
        run_id=trial_run,
        name="trial",
        summarize=summary_of,
        log_metrics=lambda metrics, step: None,
        say=lambda line: None,
    )
    return h, branch


def test_a_horizon_runs_failing_writer_is_the_recordings_failure_not_the_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    trial_run = tracker.create_run("trial", {})
    h, branch = horizons(tmp_path, tracker, trial_run)
    h.dir.mkdir(parents=True)
    branches.checkpoint_path(h.dir, branch.start).touch()  # the trunk reached this cooldown's start
    log_batch = tracker.client.log_batch

    def failing(run_id: str, metrics: Any = (), **kw: Any) -> None:
        if run_id != trial_run and not kw:  # the horizon run's curves: the store refuses (not a full disk)
            raise MlflowException("INTERNAL_ERROR: the tracking server answered 503")
        log_batch(run_id, metrics=metrics, **kw)

    monkeypatch.setattr(tracker.client, "log_batch", failing)

    def runner(spec: TrialSpec, *, log_metrics: Any, **kw: Any) -> TrialResult:
        # the runner re-raises what `faults.not_the_trials` says is not the trial's, and records the rest
        # as the trial's `error`: a branch logs enough points for its writer to write a batch
        for step in range(branch.start + 1, branch.start + 1 + BATCH):
            log_metrics({"train/loss": 1.0}, step)
        return TrialResult(outcome="completed", value=0.1, metrics={}, steps=branch.steps, time_s=1.0)

    monkeypatch.setattr(branches, "train_trial", runner)
    trunk = TrialResult(outcome="completed", value=0.2, metrics={}, steps=branch.start, time_s=1.0)
    with pytest.raises(Exception) as raised:
        h.branch(branch, trunk, offset=branch.start, last=True)
    assert isinstance(raised.value, faults.RecordError) and faults.not_the_trials(raised.value)
    assert isinstance(raised.value.__cause__, MlflowException)


def test_a_retry_reads_back_an_already_recorded_last_horizon_with_its_step_cost(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    trial_run = tracker.create_run("trial", {})
    h, branch = horizons(tmp_path, tracker, trial_run)
    # the dead attempt finished the trunk and recorded the (only, so last) horizon
    h.dir.mkdir(parents=True)
    trunk = TrialResult(outcome="completed", value=0.2, metrics={}, steps=branch.start, time_s=1.0)
    (h.dir / branches.TRUNK_FILE).write_text(json.dumps(branches._result_dict(trunk)))
    record = h.horizon_record(branch)
    summary = Summary(outcome="completed", value=0.1, steps=20, time_s=2.0, steps_to_target=15.0,
                      seconds_to_target=1.5, tokens_to_target=960.0, final={"val/error": 0.1},
                      step_time_s=0.01, update_time_s=0.002, state_bytes=4096.0)  # fmt: skip
    run_id = tracker.open_trial(record, "trial/h20", None)
    tracker.close_trial(run_id, dataclasses.replace(record, summary=summary))
    result = h.run()
    assert result.outcome == "completed" and result.value == pytest.approx(0.1) and result.steps == 20
    assert (result.step_time_s, result.update_time_s, result.state_bytes) == pytest.approx(
        (0.01, 0.002, 4096.0)
    )
    read_back = summary_of(result)
    assert read_back.steps_to_target == 15.0 and read_back.final == {"val/error": pytest.approx(0.1)}
    assert not h.dir.exists()  # every horizon recorded: the checkpoints are spent
