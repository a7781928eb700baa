"""bench.search (slots, samplers, pruning) in isolation, then every protocol, budget and outcome through
the engine on a tiny CPU suite."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from helpers import optuna_states, run_statuses, trial_runs, write_suite
from optuna.trial import TrialState

from bench import search
from bench.space import Categorical, Float, Int

SPACE = {
    "lr": Float(1e-4, 1e-1, log=True),
    "momentum": Float(0.0, 0.99),
    "layers": Int(1, 4),
    "nesterov": Categorical((True, False)),
}


def in_space(config: dict[str, Any]) -> bool:
    return (
        set(config) == set(SPACE)
        and 1e-4 <= config["lr"] <= 1e-1
        and 0.0 <= config["momentum"] <= 0.99
        and config["layers"] in range(1, 5)
        and config["nesterov"] in (True, False)
    )


# -- hyperparameter importance ------------------------------------------------------------------


@pytest.mark.parametrize("evaluator", ["fanova", "ped_anova"])
def test_importance_finds_the_hyperparameter_that_matters(evaluator: str) -> None:
    # the value is a valley in log lr; the momentum does nothing
    rng = np.random.default_rng(0)
    space = {"lr": Float(1e-4, 1e-1, log=True), "momentum": Float(0.0, 0.99)}
    configs = [{"lr": 10 ** rng.uniform(-4, -1), "momentum": rng.uniform(0, 0.99)} for _ in range(40)]
    values = [(math.log10(c["lr"]) + 2.5) ** 2 + rng.normal(0, 0.01) for c in configs]
    found = search.importances(configs, values, space, evaluator)
    assert set(found) == {"lr", "momentum"} and sum(found.values()) == pytest.approx(1.0)
    assert found["lr"] > 0.7
    # a value outside the declared range (an extended sweep, a default) still counts
    configs[0]["lr"] = 1.0
    assert search.importances(configs, values, space, evaluator)["lr"] > 0.7
    with pytest.raises(ValueError, match="unknown importance evaluator"):
        search.importances(configs, values, space, "shap")


# -- configurations drawn up front ----------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["random", "qmc", "grid"])
def test_non_adaptive_protocols_draw_the_same_configurations_for_the_same_seed(protocol: str) -> None:
    first = search.draw_configurations(protocol, 0, SPACE, 6)
    assert first == search.draw_configurations(protocol, 0, SPACE, 6)
    assert first != search.draw_configurations(protocol, 1, SPACE, 6)
    assert len(first) == 6 and all(in_space(c) for c in first)
    assert len({json.dumps(c, sort_keys=True) for c in first}) == 6  # no configuration twice
    # A prefix of the budget is the same draw: the configurations do not depend on the budget.
    assert search.draw_configurations(protocol, 0, SPACE, 3) == first[:3]


def test_qmc_spreads_its_points_more_evenly_than_random() -> None:
    def lr_gap(protocol: str) -> float:  # largest empty stretch of the log-lr axis, in decades
        configs = search.draw_configurations(protocol, 0, {"lr": Float(1e-4, 1e-1, log=True)}, 16)
        points = np.sort(np.log10([c["lr"] for c in configs]))
        return float(np.diff(np.concatenate([[-4.0], points, [-1.0]])).max())

    assert lr_gap("qmc") < lr_gap("random")
    assert lr_gap("qmc") < 0.5  # 16 Sobol points over 3 decades leave no hole of half a decade


def test_grid_is_the_whole_grid_at_most_and_a_seeded_spread_part_of_it_otherwise() -> None:
    axes = search.grid(SPACE)
    assert axes["lr"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])  # log-spaced, ends included
    assert axes["layers"] == [1, 2, 3, 4] and axes["nesterov"] == [True, False]
    size = search.grid_size(SPACE)
    assert size == 4 * 4 * 4 * 2

    whole = search.draw_configurations("grid", 0, SPACE, 1000)
    assert len(whole) == size
    assert len({json.dumps(c, sort_keys=True) for c in whole}) == size
    assert all(all(c[k] in axes[k] for k in SPACE) for c in whole)

    part = search.draw_configurations("grid", 0, SPACE, 8)
    assert all(all(c[k] in axes[k] for k in SPACE) for c in part)
    assert len({c["lr"] for c in part}) > 1  # not the first 8 points in lexicographic order (one lr)


def test_grid_spacing_is_configurable() -> None:
    lr_only = {"lr": Float(1e-4, 1e-1, log=True)}
    configs = search.draw_configurations("grid", 0, lr_only, 100, grid_points=7)  # 2 per decade
    assert sorted(c["lr"] for c in configs) == pytest.approx(np.geomspace(1e-4, 1e-1, 7).tolist())
    assert search.grid_size(SPACE, 3) == 3 * 3 * 3 * 2


@pytest.mark.parametrize("protocol", ["tpe", "cmaes", "defaults", "sweep"])
def test_adaptive_and_defaults_protocols_enqueue_empty_slots(protocol: str) -> None:
    assert search.draw_configurations(protocol, 0, SPACE, 3) == [{}, {}, {}]


@pytest.mark.parametrize("protocol", ["tpe", "cmaes"])
def test_adaptive_samplers_never_repeat_draws_across_processes_and_replay_alike(protocol: str) -> None:
    space = {"lr": Float(1e-4, 1e-1, log=True), "momentum": Float(0.0, 0.99)}

    def history(one: optuna.Study, two: optuna.Study) -> list[tuple[float, ...]]:
        """Two workers start a trial each at once, then `two` runs two more (or a resumed run does)."""
        a, b = one.ask(), two.ask()
        values = [sum(search.suggest(t, space).values()) for t in (a, b)]  # both sample before either ends
        one.tell(a, values[0])
        two.tell(b, values[1])
        two.optimize(lambda t: sum(search.suggest(t, space).values()), n_trials=2)
        return [tuple(t.params.values()) for t in two.trials]

    storage = optuna.storages.InMemoryStorage()
    one = optuna.create_study(
        storage=storage, study_name="s", sampler=search.make_sampler(protocol, 0, space)
    )
    two = optuna.load_study(storage=storage, study_name="s", sampler=search.make_sampler(protocol, 0, space))
    drawn = history(one, two)  # each process with a sampler of its own
    assert len(set(drawn)) == 4  # a sampler seeded once per process gives trial 1 the draw of trial 0

    alone = optuna.create_study(sampler=search.make_sampler(protocol, 0, space))
    assert history(alone, alone) == drawn  # same seed, same order of events: the same draws
    other = optuna.create_study(sampler=search.make_sampler(protocol, 1, space))
    assert history(other, other)[0] != drawn[0]


def test_unknown_protocol_and_pruner_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'bayes'.*random, qmc, tpe"):
        search.make_sampler("bayes", 0, SPACE)
    with pytest.raises(ValueError, match="unknown pruner 'asha'.*none, median, hyperband"):
        search.make_pruner("asha", 100, 10)


# -- studies and slots ----------------------------------------------------------------------------
def open_tiny(storage: Any, slots: list[dict[str, Any]], **kwargs: Any) -> tuple[optuna.Study, bool]:
    return search.open_study(
        storage,
        "s",
        direction="minimize",
        protocol="random",
        seed=0,
        space={"lr": Float(1e-3, 1.0, log=True)},
        pruner=search.make_pruner("none", 10, 10),
        slots=slots,
        **kwargs,
    )


def slot_of(trials: list[optuna.trial.FrozenTrial]) -> list[int]:
    return sorted(t.user_attrs["slot"] for t in trials)


@pytest.mark.parametrize("url", ["sqlite:///{d}/optuna.db", "{d}/journal.log"])
def test_open_study_enqueues_the_budget_once_and_marks_it_ready(tmp_path: Path, url: str) -> None:
    storage = search.open_storage(url.format(d=tmp_path), heartbeat_s=1)
    created_hooks: list[str] = []
    slots = [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.5}]
    study, created = open_tiny(
        storage,
        slots,
        slot_attrs=[{"kind": "tune", "seed": 0}] * 3,
        study_attrs={"fingerprint": "abc"},
        on_create=lambda st: created_hooks.append(st.study_name),
    )
    assert created and created_hooks == ["s"]
    assert study.user_attrs["fingerprint"] == "abc" and study.user_attrs["bench.ready"] is True
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert slot_of(waiting) == [0, 1, 2]
    assert sorted(t.system_attrs["fixed_params"]["lr"] for t in waiting) == [0.01, 0.1, 0.5]
    assert all(t.user_attrs["kind"] == "tune" for t in waiting)

    again, created = open_tiny(storage, slots, on_create=lambda st: created_hooks.append("again"))
    assert not created and created_hooks == ["s"]
    assert len(again.get_trials()) == 3  # reopening adds no slot


def test_open_study_repairs_a_study_whose_creator_died_half_way(tmp_path: Path) -> None:
    storage = search.open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    # What a creator killed after enqueuing one slot leaves behind: no `bench.ready`, no parent run.
    half = optuna.create_study(storage=storage, study_name="s")
    half.enqueue_trial({"lr": 0.01}, user_attrs={"slot": 0})
    hooks: list[str] = []
    study, created = open_tiny(
        storage,
        [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.5}],
        on_create=lambda st: (hooks.append("parent"), st.set_user_attr("mlflow_parent", "run-1")),
    )
    assert not created and hooks == ["parent"]
    assert study.user_attrs["bench.ready"] is True and study.user_attrs["mlflow_parent"] == "run-1"
    assert slot_of(study.get_trials()) == [0, 1, 2]  # the missing slots, each once


def test_a_larger_budget_extends_a_study_once_keeping_its_slots(tmp_path: Path) -> None:
    storage = search.open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    slots = [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.5}, {"lr": 0.9}]
    open_tiny(storage, slots[:2])
    extended: list[tuple[int, int]] = []
    study, created = open_tiny(storage, slots, on_extend=lambda st, had, now: extended.append((had, now)))
    assert not created and extended == [(2, 4)] and search.slot_count(study) == 4
    fixed = {t.user_attrs["slot"]: t.system_attrs["fixed_params"]["lr"] for t in study.get_trials()}
    assert fixed == {0: 0.01, 1: 0.1, 2: 0.5, 3: 0.9}  # the first two as they were, the new ones after
    open_tiny(storage, slots, on_extend=lambda st, had, now: extended.append((had, now)))
    assert extended == [(2, 4)] and len(study.get_trials()) == 4  # extended once
    assert "s.extend-to-4" not in optuna.get_all_study_names(storage)  # its marker is gone
    smaller, _ = open_tiny(storage, slots[:3])
    assert search.slot_count(smaller) == 4  # never shrunk: the caller refuses a smaller budget


def test_workers_extending_at_once_enqueue_each_new_slot_once(tmp_path: Path) -> None:
    storage = search.open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    slots = [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.5}]
    open_tiny(storage, slots[:1])
    optuna.create_study(storage=storage, study_name="s.extend-to-3")  # another worker holds the extension
    hooks: list[int] = []
    # ... and died before enqueuing: this worker waits, then finishes its work
    study, _ = open_tiny(storage, slots, on_extend=lambda st, had, now: hooks.append(now), wait_s=0.2)
    assert hooks == [3] and slot_of(study.get_trials()) == [0, 1, 2]
    assert search.finished_slots(storage, "s") == 0 and search.finished_slots(storage, "nothing") == 0


def test_a_worker_that_finds_no_slot_left_runs_nothing(tmp_path: Path) -> None:
    storage = search.open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    study, _ = open_tiny(storage, [{"lr": 0.1}])
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        if not search.is_slot(trial):
            raise search.ExcessTrial("no slot left")
        ran.append(trial.user_attrs["slot"])
        return trial.suggest_float("lr", 1e-3, 1.0, log=True)

    search.run_one(study, objective)
    assert search.pending(study) == (0, 0)
    search.run_one(study, objective)  # lost the race for the last slot: a fresh trial, failed quietly
    assert ran == [0]
    assert search.counts(study) == {"COMPLETE": 1, "FAIL": 1}
    assert [t.number for t in search.finished_trials(study)] == [0]


def test_journal_storage_retries_the_trials_of_dead_processes_of_this_machine(tmp_path: Path) -> None:
    url = str(tmp_path / "journal.log")
    study, _ = open_tiny(search.open_storage(url), [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.5}])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    here = search.worker_id().rpartition(":")[0]  # this machine: host and boot id
    for worker in (f"{here}:{int(gone.stdout)}", search.worker_id(), "another-machine/0:1"):
        study.ask().set_user_attr("bench.worker", worker)  # slots 0, 1, 2 popped by these workers

    # A second worker process opens the same journal and finds the dead process's trial.
    other = search.open_storage(url)
    assert search.repair_slots(optuna.load_study(storage=other, study_name="s")) == [0]
    dead, live, elsewhere, *retries = study.get_trials()
    assert dead.state == TrialState.FAIL
    assert live.state == elsewhere.state == TrialState.RUNNING  # alive, or not ours to judge
    (retry,) = retries
    assert retry.state == TrialState.WAITING and retry.user_attrs["slot"] == 0
    assert retry.system_attrs["fixed_params"] == {"lr": 0.01} and retry.system_attrs["failed_trial"] == 0

    assert search.repair_slots(study) == []  # the first worker looks too: nothing left to do
    assert len(study.get_trials()) == 4
    # Two workers failing the same trial at once: the journal rejects the second, which enqueues nothing.
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        other.set_trial_state_values(dead._trial_id, TrialState.FAIL)


def test_a_slot_whose_trial_failed_without_a_retry_goes_back_to_the_queue(tmp_path: Path) -> None:
    # The lost slot: a worker failed a dead trial and was killed before re-enqueuing it.
    storage = search.open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    study, _ = open_tiny(storage, [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.5}])
    popped = study.ask()
    study.tell(popped, state=TrialState.FAIL)  # FAIL, and nothing else
    assert search.pending(study) == (2, 0) and search.unfinished_slots(study) == [0, 1, 2]
    assert search.repair_slots(study) == [popped.user_attrs["slot"]]
    assert search.repair_slots(study) == []  # once
    ran: list[float] = []
    while search.pending(study)[0]:
        search.run_one(study, lambda t: ran.append(t.suggest_float("lr", 1e-3, 1.0, log=True)) or 0.0)
    assert sorted(ran) == [0.01, 0.1, 0.5] and search.unfinished_slots(study) == []


REPAIR = """
import sys, time
from pathlib import Path
import optuna
from bench import search
gate, url = Path(sys.argv[1]), sys.argv[2]
study = optuna.load_study(storage=search.open_storage(url, 1), study_name="s")
while not gate.exists():
    time.sleep(0.005)
print(search.repair_slots(study))
"""


def test_a_study_is_locked_under_its_storage_url(tmp_path: Path) -> None:
    # Optuna wraps an RDB storage in its cache: a lock named after the wrapper would lock nothing.
    for url in (f"sqlite:///{tmp_path}/optuna.db", str(tmp_path / "journal.log")):
        study, _ = open_tiny(search.open_storage(url, 1), [{"lr": 0.1}])
        assert search.storage_url(study._storage).removeprefix("journal:") == url
    assert search.storage_url(optuna.create_study()._storage) == ""  # in memory: one process owns it


def test_workers_repairing_at_once_re_enqueue_a_lost_slot_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study, _ = open_tiny(search.open_storage(url, 1), [{"lr": 0.01}, {"lr": 0.1}])
    study.tell(study.ask(), state=TrialState.FAIL)
    gate = tmp_path / "gate"
    procs = [
        subprocess.Popen([sys.executable, "-c", REPAIR, str(gate), url], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(4)  # each has imported Optuna and opened the study
    gate.touch()
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs == ["[0]", "[]", "[]", "[]"]
    assert search.counts(study) == {"FAIL": 1, "WAITING": 2}


def test_trials_of_dead_processes_are_failed_and_their_slots_requeued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = search.open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    study, _ = open_tiny(storage, [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.5}])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    here = search.worker_id().rpartition(":")[0]
    study.ask().set_user_attr("bench.worker", f"{here}:{int(gone.stdout)}")  # slot 0: its process is gone
    study.ask()  # slot 1: popped, killed before it recorded its process (and before any heartbeat)
    study.ask().set_user_attr("bench.worker", search.worker_id())  # slot 2: alive (this process)
    assert search.repair_slots(study) == [0]  # at once: no heartbeat grace for a pid known dead
    monkeypatch.setattr(search, "NEVER_STARTED_S", -60.0)  # as if slot 1 had been popped a minute ago
    assert search.repair_slots(study) == [1]
    assert search.running_slots(study) == [2]


def test_a_grid_over_an_empty_space_runs_its_one_slot(tmp_path: Path) -> None:
    storage = search.open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    slots = search.draw_configurations("grid", 0, {}, 1)  # the plan gives an empty space one trial
    study, _ = search.open_study(
        storage, "g", direction="minimize", protocol="grid", seed=0, space={},
        pruner=search.make_pruner("none", 1, 1), slots=slots,
    )  # fmt: skip
    search.run_one(study, lambda trial: 1.0)  # Optuna's grid sampler: KeyError 'grid_id' after the trial
    assert search.counts(study) == {"COMPLETE": 1} and search.unfinished_slots(study) == []


def test_best_trial_is_the_best_completed_outcome_only() -> None:
    def trial(value: float, outcome: str) -> optuna.trial.FrozenTrial:
        return optuna.create_trial(value=value, user_attrs={"outcome": outcome})

    for direction, best in (("minimize", 0.2), ("maximize", 0.9)):
        study = optuna.create_study(direction=direction)
        assert search.best_trial(study) is None
        for value, outcome in (
            (0.5, "completed"),
            (0.2, "completed"),
            (0.9, "completed"),
            (0.01, "timeout"),  # partial training: never the configuration rerun on seeds
            (-math.inf, "diverged"),
            (math.inf, "error"),
            (0.99, "timeout"),
        ):
            study.add_trial(trial(value, outcome))
        assert search.best_trial(study).value == best


def test_the_pruning_callable_reports_at_the_optimizer_step_and_says_when_to_stop() -> None:
    class PruneAfter(optuna.pruners.BasePruner):  # deterministic: prune once a step >= 40 is reported
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return max(trial.intermediate_values, default=0) >= 40

    study = optuna.create_study(pruner=PruneAfter())
    on_eval = search.pruning_callable(study.ask())
    assert on_eval(20, 0.5) is False
    assert on_eval(30, 0.45) is False
    assert study.trials[0].intermediate_values == {20: 0.5, 30: 0.45}  # the step, not the epoch
    assert on_eval(40, 0.4) is True
    assert study.trials[0].state == TrialState.RUNNING  # it only answers; the engine ends the trial


def test_a_real_pruner_through_the_callable_stops_a_trial_worse_than_the_median() -> None:
    study = optuna.create_study(pruner=search.make_pruner("median", steps=100, eval_every=20))
    for value in (0.1, 0.2):  # two finished trials that did well (the median pruner's startup)
        on_eval = search.pruning_callable(trial := study.ask())
        assert not any(on_eval(step, value) for step in (20, 40, 60))
        study.tell(trial, value)
    on_eval = search.pruning_callable(study.ask())
    assert on_eval(20, 10.0) is True


@pytest.mark.parametrize("name", ["median", "hyperband"])
def test_pruners_never_stop_a_trial_before_its_first_evaluation(name: str) -> None:
    pruner = search.make_pruner(name, steps=100, eval_every=20)
    study = optuna.create_study(pruner=pruner)
    for value in (0.1, 0.2, 0.3):  # finished trials that did well
        t = study.ask()
        for step in (20, 40, 60, 80, 100):
            t.report(value, step)
        study.tell(t, value)
    bad = study.ask()
    bad.report(10.0, 10)  # earlier than the first evaluation a pruner may act on
    assert not bad.should_prune()
    if name == "median":
        bad.report(10.0, 40)
        assert bad.should_prune()


# -- protocols, budgets and outcomes through the engine -------------------------------------------
@pytest.fixture(scope="module")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow store, created once: creating its tables costs seconds per test otherwise."""
    from bench.track import Tracker

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    Tracker(f"sqlite:///{path}", "template")
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path) -> Path:
    shutil.copyfile(mlflow_template, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and the test machine is shared
    yield tmp_path
    torch.set_num_threads(threads)


def run(suite: Path, *args: str) -> None:
    from bench.cli import main

    assert main(["run", str(suite), "--no-leaderboard", *args]) == 0


def study_trials(directory: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{directory / '.bench' / 'optuna.db'}"
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def parent_tags(directory: Path, study: str) -> dict[str, str]:
    """Tags of a study's MLflow parent run."""
    con = sqlite3.connect(directory / "mlflow.db")
    try:
        (run,) = con.execute(
            "SELECT a.run_uuid FROM tags a JOIN tags b ON a.run_uuid = b.run_uuid WHERE a.key = 'bench.study' "
            "AND a.value = ? AND b.key = 'bench.kind' AND b.value = 'study'",
            (study,),
        ).fetchone()
        return dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run,)).fetchall())
    finally:
        con.close()


def parent_metrics(directory: Path, study: str) -> dict[str, float]:
    """Latest metrics of a study's MLflow parent run."""
    con = sqlite3.connect(directory / "mlflow.db")
    try:
        rows = con.execute(
            "SELECT l.key, l.value FROM latest_metrics l JOIN tags t ON t.run_uuid = l.run_uuid "
            "WHERE t.key = 'bench.study' AND t.value = ? AND l.run_uuid IN "
            "(SELECT run_uuid FROM tags WHERE key = 'bench.kind' AND value = 'study')",
            (study,),
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


TINY = {"name": "digits_cnn", "steps": 4, "eval_every": 2}


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["qmc", "grid", "tpe", "cmaes"])
def test_each_protocol_runs_its_budget_of_slots(workdir: Path, protocol: str) -> None:
    lr = {"low": 1.0e-3, "high": 1.0, "log": True}
    # grid over lr alone has 4 points: a budget of 6 runs the whole grid, once each
    space = {"lr": lr} if protocol == "grid" else {"lr": lr, "one_minus_momentum": {"low": 0.01, "high": 0.3}}
    trials = 6 if protocol == "grid" else 3
    suite = write_suite(
        workdir,
        name=protocol,
        tasks=[TINY],
        optimizers=[{"name": "sgd", "search_space": space}],
        tuning={"protocol": protocol, "trials": trials, "seeds": 1, "sampler_seed": 3},
    )
    run(suite)
    expected = 4 if protocol == "grid" else 3
    done = study_trials(workdir, f"{protocol}.digits_cnn.sgd")
    assert [t.state.name for t in done] == ["COMPLETE"] * expected
    assert slot_of(done) == list(range(expected))
    runs = trial_runs(workdir)
    assert len(runs) == expected and len({r["bench.trial_id"] for r in runs}) == expected
    assert all(r["bench.outcome"] == "completed" and r["status"] == "FINISHED" for r in runs)
    params = {int(r["bench.number"]): json.loads(r["bench.params"]) for r in runs}
    assert all(set(p) == set(space) for p in params.values())
    assert len({p["lr"] for p in params.values()}) == expected  # every slot a different configuration
    if protocol in ("qmc", "grid"):  # drawn up front, slot by slot, from the suite's sampler seed
        from bench.loader import load_suite

        drawn = search.draw_configurations(protocol, 3, load_suite(suite).optimizers[0].search_space, trials)
        assert [params[i] for i in range(expected)] == drawn
    if protocol == "grid":
        assert sorted(p["lr"] for p in params.values()) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    if protocol == "cmaes":  # past its first (independent) trial, CMA-ES itself proposed the points
        assert any(k.startswith("cma:") for t in done[1:] for k in t.system_attrs)


@pytest.mark.slow
def test_errors_and_out_of_memory_are_outcomes_with_their_message(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from bench.run import BenchModule

    failures = [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                RuntimeError("boom in the model")]  # fmt: skip
    start = BenchModule.on_train_start

    def failing_start(self: BenchModule) -> None:  # the trials run one after another, slot by slot
        if failures:
            raise failures.pop(0)
        start(self)

    monkeypatch.setattr(BenchModule, "on_train_start", failing_start)
    suite = write_suite(workdir, name="fails", tasks=[TINY], optimizers=["adamw"], tuning={"trials": 3})
    from bench.cli import main

    assert main(["run", str(suite)]) == 0  # a failing trial never stops the suite

    runs = {r["bench.outcome"]: r for r in trial_runs(workdir)}
    assert sorted(runs) == ["completed", "error", "oom"]
    assert runs["error"]["status"] == "FAILED" and runs["oom"]["status"] == "FINISHED"
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")

    def error_text(run: dict[str, str]) -> str:
        path = client.download_artifacts(run["run_id"], "error.txt", str(workdir / run["run_id"]))
        return Path(path).read_text()

    text = error_text(runs["error"])
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom in the model" in text
    assert "on_train_start" in text  # the traceback reaches the failing line
    assert error_text(runs["oom"]).startswith("OutOfMemoryError: CUDA out of memory")
    assert "error.txt" not in {a.path for a in client.list_artifacts(runs["completed"]["run_id"])}

    done = study_trials(workdir, "fails.digits_cnn.adamw")
    assert [t.state.name for t in done] == ["COMPLETE"] * 3
    by_outcome = {t.user_attrs["outcome"]: t for t in done}
    assert by_outcome["oom"].value == math.inf and by_outcome["error"].value == math.inf  # the worst
    assert math.isfinite(by_outcome["completed"].value)
    counted = parent_metrics(workdir, "fails.digits_cnn.adamw")
    assert counted["trials"] == 3 and counted["steps"] == 4
    assert counted["best/val/error"] == by_outcome["completed"].value  # the only completed trial
    assert parent_tags(workdir, "fails.digits_cnn.adamw")["bench.outcomes"] == "1 completed, 1 oom, 1 error"
    board = json.loads((workdir / "leaderboards" / "fails.json").read_text())
    assert '"oom": 1' in json.dumps(board) and '"error": 1' in json.dumps(board)


@pytest.mark.slow
def test_trial_time_budget_ends_a_trial_as_timeout_with_its_value(workdir: Path) -> None:
    suite = write_suite(
        workdir,
        name="slow",
        tasks=[{"name": "digits_cnn", "steps": 100000, "eval_every": 100000}],
        optimizers=["adamw"],
        tuning={"trials": 1, "trial_time_budget_s": 2},
    )
    run(suite)
    (trial,) = trial_runs(workdir)
    assert trial["bench.outcome"] == "timeout" and trial["status"] == "FINISHED"
    (done,) = study_trials(workdir, "slow.digits_cnn.adamw")
    assert 0 < done.user_attrs["steps"] < 100000
    assert 2.0 <= done.user_attrs["time_s"] < 60.0
    assert math.isfinite(done.value)  # validated where it stopped: a partial result, not a failure


@pytest.mark.slow
def test_study_time_budget_stops_every_study_alike_and_a_larger_cap_resumes(workdir: Path, capsys) -> None:
    suite = write_suite(
        workdir,
        name="capped",
        tasks=[TINY],
        optimizers=["sgd", "adamw"],
        tuning={"trials": 3, "study_time_budget_s": 0.001},  # spent by the first trial of each study
    )
    run(suite)
    assert "study time budget spent" in capsys.readouterr().out
    for label in ("sgd", "adamw"):
        name = f"capped.digits_cnn.{label}"
        assert sorted(optuna_states(workdir, name)) == ["COMPLETE", "WAITING", "WAITING"]
        (done,) = [t for t in study_trials(workdir, name) if t.state == TrialState.COMPLETE]
        storage = f"sqlite:///{workdir / '.bench' / 'optuna.db'}"
        attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
        assert attrs["bench.time_budget_spent_s"] == pytest.approx(done.user_attrs["time_s"])
        spent = parent_metrics(workdir, name)
        assert spent["trials"] == 1 and spent["time_s"] == pytest.approx(done.user_attrs["time_s"])
    assert len(trial_runs(workdir)) == 2

    run(suite)  # the same cap: nothing more to run
    assert len(trial_runs(workdir)) == 2
    assert set(run_statuses(workdir, "study").values()) == {"FINISHED"}  # stopped by the cap: ended
    run(suite, "--set", "tuning.study_time_budget_s=null")  # lifted: the waiting slots run
    assert sorted(optuna_states(workdir, "capped.digits_cnn.adamw")) == ["COMPLETE"] * 3
    assert parent_metrics(workdir, "capped.digits_cnn.adamw")["trials"] == 3  # reopened, counted, ended
    assert set(run_statuses(workdir, "study").values()) == {"FINISHED"}
    runs = trial_runs(workdir)
    assert len(runs) == 6 and len({r["bench.trial_id"] for r in runs}) == 6


POPPER = """
import json, sys, time
from pathlib import Path
import optuna
from bench import search
url, gate = sys.argv[1], Path(sys.argv[2])
study = optuna.load_study(study_name="s", storage=search.open_storage(url))
while not gate.exists():
    time.sleep(0.001)
popped = []
while (trial_id := study._pop_waiting_trial_id()) is not None:  # what Study.ask does first
    popped.append(trial_id)
print(json.dumps(popped))
"""


@pytest.mark.slow
def test_processes_popping_one_sqlite_queue_at_once_never_get_the_same_trial(tmp_path: Path) -> None:
    url, gate = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "gate"
    study = optuna.create_study(study_name="s", storage=search.open_storage(url))
    for i in range(200):
        study.enqueue_trial({"x": i})
    procs = [
        subprocess.Popen([sys.executable, "-c", POPPER, url, str(gate)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(6)  # every process has imported and opened the store: released at one instant
    gate.touch()
    popped = [t for p in procs for t in json.loads(p.communicate(timeout=120)[0].splitlines()[-1])]
    # without BEGIN IMMEDIATE, 4 processes popped 90 of 300 trials twice (search.immediate_transactions)
    assert len(popped) == len(set(popped)) == 200
