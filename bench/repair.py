"""Repair what an earlier (killed, crashed, disk-full) run left half-done, so that nothing is lost.

A slot of a study ends finished with a valid outcome or back in the queue, whatever happens, and its
trial appears once among the MLflow experiment's active runs. Two halves keep that true:

- **Optuna** (`bench.search.repair_slots`, before each trial a worker pops): trials of dead processes
  are failed and every slot left without a live trial is re-enqueued, under the store's lock.
- **MLflow** (`retire_orphans`, here, when a worker starts and before the leaderboard is built): a trial
  run is valid while its Optuna trial runs, or once that trial finished *and* recorded this run's id.
  Every other active trial run (its process died after creating it; its trial was failed as stale, hit
  a full disk, or was retried) is retired: tagged with why, marked KILLED and hidden, as
  `Tracker.retire` does for the dead attempt of a retried trial.

Runs of studies the Optuna storage does not hold (another storage, kinds of runs this module does not
know) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench import search
from bench.records import TrialRecord
from bench.track import Tracker

FINISHED = ("COMPLETE", "PRUNED")


def verdict(state: str | None, recorded_run: Any, run_id: str) -> str | None:
    """Why a trial run must be retired (None: keep it), from its Optuna trial's state and the MLflow run
    id that trial recorded (`state` None: the study has no trial of that number)."""
    if state is None:
        return "its Optuna trial does not exist"
    if state == "RUNNING":
        return None  # a live worker's, or one the next repair fails (then retired next time)
    if state in FINISHED:
        if recorded_run is None or recorded_run == run_id:
            return None
        return f"its Optuna trial finished with another run ({recorded_run})"
    return f"its Optuna trial is {state} (the attempt did not finish; the slot was put back in the queue)"


def retire_orphans(
    tracker: Tracker, storage: Any, study_of: Callable[[TrialRecord], str | None]
) -> list[tuple[str, str]]:
    """Retire every active trial run of the experiment that is not its trial's valid record (see the
    module docstring). `study_of(record)` names the Optuna study a run's trial belongs to (None: not
    ours to judge). Returns (run id, reason) for each run retired."""
    states: dict[str, dict[int, tuple[str, Any]] | None] = {}
    retired = []
    for record in tracker.read_trials(ended=False):
        study = study_of(record)
        if study is None:
            continue
        if study not in states:
            states[study] = search.trial_states(storage, study)
        trials = states[study]
        if trials is None:
            continue
        state, recorded = trials.get(record.optuna_trial, (None, None))
        reason = verdict(state, recorded, record.run_id)
        if reason is not None:
            tracker.retire(record.run_id, f"repaired: {reason}")
            retired.append((record.run_id, reason))
    return retired
