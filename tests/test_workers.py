"""Parallel workers on one suite: `bench run --workers 2`, and two `bench run` processes started at once.
Whoever creates the studies and whoever pops the slots, the budget runs exactly once: no trial lost, none
run twice, one MLflow parent run per study."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import optuna
import pytest
from helpers import bench_run, run_statuses, seeds_study, trial_runs, write_suite
from optuna.trial import TrialState

TRIALS, SEEDS, LABELS = 3, 2, ("sgd", "adamw")
TOTAL = len(LABELS) * (TRIALS + SEEDS - 1)


def both_train(directory: Path) -> str:
    """Fail points holding each process after its first trial until two processes got there: both train,
    however fast the first one runs through the budget while the other is still starting."""
    return f"trial.recorded=wait:2:{directory / 'barrier'}"


def make_suite(directory: Path, name: str) -> Path:
    return write_suite(
        directory,
        name=name,
        tasks=[{"name": "digits_cnn", "steps": 200, "eval_every": 100}],
        optimizers=list(LABELS),
        tuning={"protocol": "tpe", "trials": TRIALS, "seeds": SEEDS},
    )


def single_worker_draws(suite: Path, label: str) -> list[dict[str, Any]]:
    from bench import search
    from bench.loader import load_suite

    (optimizer,) = [o for o in load_suite(suite).optimizers if o.label == label]
    space = optimizer.search_space
    alone = optuna.create_study(sampler=search.make_sampler("tpe", 0, space))
    alone.optimize(lambda t: sum(search.suggest(t, space).values()), n_trials=TRIALS)  # still TPE's startup
    return [t.params for t in alone.trials]


def all_complete(storage: str, suite: str) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for label in LABELS
        for study in (f"{suite}.digits_cnn.{label}", seeds_study(storage, f"{suite}.digits_cnn.{label}"))
        for t in optuna.load_study(study_name=study, storage=storage).get_trials()
        if t.state == TrialState.COMPLETE
    ]


def check_every_trial_ran_once(directory: Path, suite: str, logs: list[Path]) -> None:
    storage = f"sqlite:///{directory / '.bench' / 'optuna.db'}"
    for label in LABELS:
        for study, budget in (
            (f"{suite}.digits_cnn.{label}", TRIALS),
            (seeds_study(storage, f"{suite}.digits_cnn.{label}"), SEEDS - 1),
        ):
            trials = optuna.load_study(study_name=study, storage=storage).get_trials()
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            assert sorted(t.user_attrs["slot"] for t in complete) == list(range(budget)), study
            others = [t for t in trials if t.state != TrialState.COMPLETE]
            # the only other trials: a worker that lost the race for the last slot (never run, no slot)
            assert all(t.state == TrialState.FAIL and "slot" not in t.user_attrs for t in others), study
        study = optuna.load_study(study_name=f"{suite}.digits_cnn.{label}", storage=storage)
        tuned = {t.user_attrs["slot"]: t.params for t in study.trials if t.state == TrialState.COMPLETE}
        # TPE's first trials are random draws seeded by (sampler seed, trial number): whichever worker
        # ran a slot, it tried what a single worker would have, and no configuration was spent twice.
        assert tuned == dict(enumerate(single_worker_draws(directory / f"{suite}.yaml", label)))

    ran_by = {t.user_attrs["bench.worker"] for t in all_complete(storage, suite)}
    assert len(ran_by) == 2, ran_by  # both processes trained trials: the suite was shared

    runs = trial_runs(directory)
    assert len(runs) == TOTAL
    assert len({r["bench.trial_id"] for r in runs}) == TOTAL
    assert all(r["bench.outcome"] in ("completed", "diverged") for r in runs)  # tpe tries wild sgd rates
    assert all(r["status"] == "FINISHED" for r in runs)
    con = sqlite3.connect(directory / "mlflow.db")
    try:
        parents = con.execute(
            "SELECT COUNT(*) FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
            "WHERE t.key = 'bench.kind' AND t.value = 'study' AND r.lifecycle_stage = 'active'"
        ).fetchone()[0]
    finally:
        con.close()
    assert parents == len(LABELS)
    # every study's run ended, whichever worker ran its last trial
    assert run_statuses(directory, "study") == {f"digits_cnn/{label}": "FINISHED" for label in LABELS}
    # Each trial was reported by exactly one worker's progress line.
    lines = [line for log in logs for line in log.read_text().splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    assert len(lines) == TOTAL, "\n".join(lines)


@pytest.mark.slow
def test_workers_flag_shares_the_suite_between_processes(tmp_path: Path) -> None:
    suite = make_suite(tmp_path, "pair")
    log = tmp_path / "run.log"
    proc = bench_run(suite, log, "--workers", "2", failpoints=both_train(tmp_path))
    assert proc.wait(timeout=600) == 0, log.read_text()
    text = log.read_text()
    assert "2 worker(s)" in text and "leaderboard written" in text
    assert text.count("leaderboard written") == 1  # the helper processes leave the leaderboard to the first
    check_every_trial_ran_once(tmp_path, "pair", [log])


@pytest.mark.slow
def test_two_runs_started_at_once_split_the_budget(tmp_path: Path) -> None:
    suite = make_suite(tmp_path, "twin")
    # Fresh stores: both processes race to create the databases (serialized by the stores' locks), the
    # studies, their slots and parent runs.
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [bench_run(suite, log, "--no-leaderboard", failpoints=both_train(tmp_path)) for log in logs]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=600) == 0, log.read_text()
    check_every_trial_ran_once(tmp_path, "twin", logs)
