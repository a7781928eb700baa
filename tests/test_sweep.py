"""The sweep protocol: its points (bench/sweep.py, pure), its count in `bench plan`, and its stages run by
real `bench run` processes: killed between stages and resumed, and shared by two workers, every point
runs exactly once and each stage study is created once, around the right best learning rate."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import trial_runs, write_suite

from bench import sweep
from bench.schema import SweepSpec
from bench.space import Categorical, Float, Int, to_kwargs

SGD_SPACE = {
    "lr": Float(1e-3, 1.0, log=True),
    "one_minus_momentum": Float(0.01, 0.3, log=True),
    "weight_decay": Float(1e-5, 1e-2, log=True),
}
SGD_KWARGS = to_kwargs({"lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4}, {})


# --- the points ------------------------------------------------------------------------------------


def test_lr_grid_is_centred_on_the_range_at_nice_values():
    # [1e-3, 1]: middle 10^-1.5, at 2 per decade j = -3; 5 points j = -5 .. -1
    spec = SweepSpec(lr_points=5, per_decade=2)
    assert sweep.lr_grid(SGD_SPACE["lr"], spec) == [0.00316228, 0.01, 0.0316228, 0.1, 0.316228]
    # an even count puts the extra point above the middle; 3 per decade: 10^(j/3)
    assert sweep.lr_grid(Float(1e-4, 1e-2, log=True), SweepSpec(lr_points=4, per_decade=1)) == [
        1e-4,
        1e-3,
        1e-2,
        0.1,
    ]
    assert sweep.lr_grid(Float(1e-3, 1e-3, log=True), SweepSpec(lr_points=3, per_decade=3)) == [
        0.000464159,
        0.001,
        0.00215443,
    ]
    with pytest.raises(ValueError, match="log-scale"):
        sweep.lr_grid(Float(1e-3, 1.0), spec)


def test_defaults_of_searched_names_come_from_the_optimizer_kwargs():
    assert sweep.default_of(
        "one_minus_momentum", SGD_SPACE["one_minus_momentum"], SGD_KWARGS
    ) == pytest.approx(0.1)
    assert sweep.default_of("weight_decay", SGD_SPACE["weight_decay"], SGD_KWARGS) == 5e-4
    adam = to_kwargs({"lr": 1e-3, "beta1": 0.9, "beta2": 0.999}, {})
    assert sweep.default_of("one_minus_beta2", Float(1e-3, 0.1, log=True), adam) == pytest.approx(1e-3)
    # no default: the middle of the range (geometric on a log axis); a categorical's default or first choice
    assert sweep.default_of("gamma", Float(1e-3, 0.1, log=True), adam) == pytest.approx(1e-2)
    assert sweep.default_of("k", Int(1, 9), adam) == 5
    assert sweep.default_of("nesterov", Categorical((True, False)), SGD_KWARGS) is False


def test_first_stage_holds_every_other_hyperparameter_at_its_default():
    points = sweep.first_stage(SGD_SPACE, SGD_KWARGS, SweepSpec(lr_points=3))
    assert [p.value for p in points] == [0.01, 0.0316228, 0.1]
    assert all(p.axis == "lr" and p.scale == "log" for p in points)
    assert points[0].params == {"lr": 0.01, "one_minus_momentum": pytest.approx(0.1), "weight_decay": 5e-4}


def test_extension_steps_past_the_edge_where_the_best_lr_sits():
    grid = [(0.01, 0.5), (0.0316228, 0.4), (0.1, 0.3)]
    assert sweep.extension(grid, 2) == 0.316228  # best at the top: one step up
    assert sweep.extension([(0.01, 0.2), (0.0316228, 0.4), (0.1, 0.5)], 2) == 0.00316228
    assert sweep.extension([(0.01, 0.5), (0.0316228, 0.3), (0.1, 0.4)], 2) is None  # inside
    # a failed point beyond the best bounds it: the best is no longer at an edge of what was swept
    assert sweep.extension([*grid, (0.316228, None)], 2) is None
    assert sweep.extension([(0.01, None), (0.1, None)], 2) is None  # nothing completed
    assert sweep.best_lr([(0.1, 0.3), (0.01, 0.3)]) == 0.01  # a tie goes to the smaller lr


def test_second_stage_sweeps_each_hyperparameter_and_the_warmup_at_the_best_lr():
    spec = SweepSpec(points=4, per_decade=2, params=("weight_decay",), warmup=(0.0, 0.05, 0.1))
    points = sweep.second_stage(SGD_SPACE, SGD_KWARGS, spec, 0.1, warmup=0.05)
    # weight decay around its default 5e-4 at half-decade steps, two below and two above: all in
    # [1e-5, 1e-2]; the warmup 0.05 is the schedule's own, i.e. the best lr point, so it is not rerun
    assert [(p.axis, p.value) for p in points] == [
        ("weight_decay", 5e-5),
        ("weight_decay", 0.000158114),
        ("weight_decay", 0.00158114),
        ("weight_decay", 0.005),
        ("warmup", 0.0),
        ("warmup", 0.1),
    ]
    assert all(p.params["lr"] == 0.1 and p.params["one_minus_momentum"] == pytest.approx(0.1) for p in points)
    assert points[4].warmup == 0.0 and points[0].warmup is None and points[0].scale == "log"
    # no schedule (schedule-free optimizers): no warmup points
    assert [p.axis for p in sweep.second_stage(SGD_SPACE, SGD_KWARGS, spec, 0.1, None)] == [
        "weight_decay"
    ] * 4


def test_axis_values_stay_in_the_range_and_skip_the_default():
    spec = SweepSpec(points=4, per_decade=2)
    # 1 - momentum around 0.1 in [0.01, 0.3]: 0.01, 0.0316 below; 0.316 and 1 are past the range
    assert sweep.axis_values(SGD_SPACE["one_minus_momentum"], 0.1, spec) == [0.01, 0.0316228]
    # a linear axis: evenly over the range; a categorical: every choice but the default
    assert sweep.axis_values(Float(0.0, 0.3), 0.1, SweepSpec(points=4)) == pytest.approx([0.0, 0.2, 0.3])
    assert sweep.axis_values(Categorical((False, True)), False, spec) == [True]
    assert sweep.axis_values(Int(1, 100, log=True), 10, SweepSpec(points=2, per_decade=2)) == [3, 32]


def test_trial_space_holds_every_point_a_sweep_may_run():
    spec = SweepSpec(lr_points=3, extend=2)
    space = sweep.trial_space(SGD_SPACE, {**SGD_KWARGS, "weight_decay": 0.5}, spec)
    lrs = [*sweep.lr_grid(SGD_SPACE["lr"], spec), 0.001, 1.0]  # 0.01 .. 0.1, then two extensions each way
    assert all(space["lr"].low <= lr <= space["lr"].high for lr in lrs)
    assert space["weight_decay"].high == 0.5  # the default lies outside the declared range


def test_plan_counts_the_fixed_stages_exactly_and_the_extensions_as_a_bound(tmp_path: Path) -> None:
    from bench.loader import load_suite
    from bench.plan import format_plan, make_plan

    path = write_suite(
        tmp_path,
        optimizers=["sgd", "adamw", "schedulefree_adamw"],
        tuning={
            "protocol": "sweep",
            "seeds": 2,
            "sweep": {"lr_points": 5, "extend": 2, "points": 3, "warmup": [0, 0.1]},
        },
        schedule={"name": "cosine", "warmup": 0.05},
    )
    plan = make_plan(load_suite(path))
    counts = {s.optimizer.label: (s.trials, s.extension, s.cost.runs) for s in plan.studies}
    # around the defaults at half-decade steps (one below, two above), in each range, plus 2 warmups:
    # sgd: 5 lrs + momentum 1 (0.0316; 0.316 and 1 leave [0.01, 0.3]) + weight decay 3 + 2 = 11
    # adamw: 5 + beta1 1 + beta2 2 (3.2e-3, 1e-2) + weight decay 3 + 2 = 13; schedule-free: no warmups
    # (beta1 0.9 in [0.02, 0.3]: 1; beta2 0.999: 2; weight decay 3) = 11
    assert counts == {"sgd": (11, 2, 14), "adamw": (13, 2, 16), "schedulefree_adamw": (11, 2, 14)}
    assert plan.estimate.extension == 6 and plan.estimate.runs == 14 + 16 + 14
    text = format_plan(plan)
    assert "11+<=2" in text and "35+<=6" in text and "at most N more learning rates" in text
    # the fingerprint follows the sweep's options, not the other protocols' budgets
    other = make_plan(load_suite(path, {"tuning.sweep.points": 4}))
    assert other.studies[0].fingerprint != plan.studies[0].fingerprint
    same = make_plan(load_suite(path, {"tuning.trials": 99}))
    assert same.studies[0].fingerprint == plan.studies[0].fingerprint


# --- real runs -------------------------------------------------------------------------------------

SPEC = {"lr_points": 3, "extend": 0, "points": 2, "params": ["weight_decay"], "warmup": [0.0, 0.2]}


def sweep_suite(directory: Path, name: str, optimizers: list[str]) -> Path:
    return write_suite(
        directory,
        name=name,
        tasks=[{"name": "digits_cnn", "steps": 150, "eval_every": 50}],  # a second or more per trial
        optimizers=optimizers,
        tuning={"protocol": "sweep", "seeds": 1, "sweep": SPEC},
        schedule={"name": "cosine", "warmup": 0.05},
    )


def bench_run(suite: Path, log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(suite), "--quiet-bars", *args],
        cwd=suite.parent,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def complete_in(db: Path, study: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(
            "SELECT COUNT(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = ? AND t.state = 'COMPLETE'",
            (study,),
        ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def check_stages(directory: Path, study: str, optimizer_points: int) -> float:
    """Every stage's slots finished exactly once, the 1-D stage around the best lr of the first; the
    best lr."""
    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{directory / '.bench' / 'optuna.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(study)]
    assert sorted(names) == [study, f"{study}.sweep"]  # created once each; no extension (extend: 0)
    first = optuna.load_study(study_name=study, storage=storage).get_trials()
    done = [t for t in first if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["slot"] for t in done) == [0, 1, 2]
    finite = [t for t in done if t.user_attrs.get("outcome") == "completed"]
    best = min(finite, key=lambda t: (t.value, t.params["lr"])).params["lr"]
    second = optuna.load_study(study_name=f"{study}.sweep", storage=storage).get_trials()
    done2 = [t for t in second if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["slot"] for t in done2) == list(range(optimizer_points))
    assert {t.params["lr"] for t in done2} == {best}
    assert sorted(t.user_attrs["number"] for t in done2) == list(range(3, 3 + optimizer_points))
    return best


@pytest.mark.slow
def test_a_sweep_killed_between_its_stages_resumes_with_its_second_stage_once(tmp_path: Path) -> None:
    suite = sweep_suite(tmp_path, "cut", ["sgd"])
    study, db, log = "cut.digits_cnn.sgd", tmp_path / ".bench" / "optuna.db", tmp_path / "run.log"
    proc = bench_run(suite, log, "--no-leaderboard")
    deadline = time.monotonic() + 300
    while complete_in(db, study) < 3:  # the lr grid: 3 points
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the moment the first stage is finished: between the stages
    proc.wait()
    started = complete_in(db, f"{study}.sweep")
    assert started == 0, "the second stage had finished a trial already: the kill came too late"

    resumed = bench_run(suite, log, "--no-leaderboard")
    assert resumed.wait(timeout=600) == 0, log.read_text()
    points = 2 + 2  # weight decay at 2 values, 2 warmups (neither is the centre)
    best = check_stages(tmp_path, study, points)
    runs = trial_runs(tmp_path)
    assert len(runs) == 3 + points and len({r["bench.trial_id"] for r in runs}) == 3 + points
    swept = [r for r in runs if r["bench.axis"] != "lr"]
    assert {float(r["bench.lr"]) for r in swept} == {best}
    assert sorted(r["bench.axis"] for r in swept) == ["warmup", "warmup", "weight_decay", "weight_decay"]

    again = tmp_path / "again.log"  # every stage recorded, and the lr extensions that will never run
    assert bench_run(suite, again, "--no-leaderboard").wait(timeout=600) == 0, again.read_text()
    assert "trials already recorded; nothing to train" in again.read_text(), again.read_text()


@pytest.mark.slow
def test_two_workers_share_every_stage_of_a_sweep(tmp_path: Path) -> None:
    suite = sweep_suite(tmp_path, "duo", ["sgd", "adamw"])
    log = tmp_path / "run.log"
    proc = bench_run(suite, log, "--workers", "2")
    assert proc.wait(timeout=600) == 0, log.read_text()
    for label in ("sgd", "adamw"):
        check_stages(tmp_path, f"duo.digits_cnn.{label}", 4)
    runs = trial_runs(tmp_path)
    assert len(runs) == 2 * 7 and len({r["bench.trial_id"] for r in runs}) == 2 * 7
    assert math.isclose(len({r["bench.study"] for r in runs}), 2)
    assert "leaderboard written" in log.read_text()


def lr_study(name: str, values: dict[float, float], waiting: int = 0) -> object:
    """An in-memory stage of lr points (finished with `values`), with `waiting` slots not run yet."""
    import optuna
    from optuna.distributions import FloatDistribution

    study = optuna.create_study(study_name=name, direction="minimize")
    for lr, v in values.items():
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr}, distributions={"lr": FloatDistribution(1e-6, 10.0, log=True)}, value=v,
            user_attrs={"axis": "lr", "outcome": "completed"},
        ))  # fmt: skip
    for _ in range(waiting):
        study.enqueue_trial({"lr": 1e-3})
    return study


@pytest.mark.parametrize(("values", "waiting", "forgone"), [
    ({1e-3: 0.5, 1e-2: 0.3, 1e-1: 0.4}, 0, 2),  # the optimum inside: neither extension will run
    ({1e-3: 0.5, 1e-2: 0.4, 1e-1: 0.3}, 0, 0),  # at the high edge: an extension is due
    ({1e-3: 0.5, 1e-2: 0.3}, 1, 0),  # the grid is not finished
])  # fmt: skip
def test_a_resume_counts_the_lr_extensions_that_will_never_run_as_done(
    values: dict[float, float], waiting: int, forgone: int
) -> None:
    from types import SimpleNamespace

    from bench.engine import Worker

    spec = SweepSpec(per_decade=1, lr_points=3, extend=2)
    worker = SimpleNamespace(suite=SimpleNamespace(tuning=SimpleNamespace(sweep=spec)))
    sp = SimpleNamespace(name="s", extension=2, task=SimpleNamespace(mode="min"))
    stages = [lr_study("s", values, waiting)]
    assert Worker.extensions_forgone(worker, sp, stages) == forgone  # type: ignore[arg-type]


def test_a_sweep_stages_runs_are_judged_against_their_own_stage_study(tmp_path: Path) -> None:
    """`retire_orphans` (start and end of every `bench run`) keeps the valid runs of the later stages: a
    stage's trial is judged by the stage study that holds it, not by the lr grid's trial of that number."""
    import dataclasses

    from test_records import SUMMARY

    from bench import search
    from bench.engine import Worker
    from bench.loader import load_suite
    from bench.plan import make_plan
    from bench.progress import Display

    suite = load_suite(sweep_suite(tmp_path, "judge", ["sgd"]))
    plan = make_plan(suite)
    (sp,) = plan.studies
    worker = Worker(suite, plan, Display(plan.estimate.runs, live=False, out=lambda line: None))

    def finish_all(study: object) -> list[str]:
        run_ids = []
        while search.pending(study)[0]:
            trial = study.ask()
            hparams = search.suggest(
                trial, sweep.trial_space(sp.optimizer.search_space, {}, suite.tuning.sweep)
            )
            number = int(trial.user_attrs.get("number", trial.user_attrs["slot"]))
            record = worker.record_of(sp, trial, number, "tune", 0, hparams)
            run_id = worker.tracker.open_trial(record, f"sgd#{number}", None)
            trial.set_user_attr("mlflow_run", run_id)
            worker.tracker.close_trial(run_id, dataclasses.replace(record, summary=SUMMARY))
            study.tell(trial, 0.5)
            run_ids.append(run_id)
        return run_ids

    tuning = worker.open_tuning(sp)
    runs = finish_all(tuning)
    points = sweep.second_stage(sp.optimizer.search_space, {}, suite.tuning.sweep, 0.1, 0.05)
    runs += finish_all(worker.open_stage(sp, tuning, sweep.sweep_stage(sp.name), points, start=3))
    assert len(runs) == 3 + len(points)

    worker.retire_orphans()
    assert {r["run_id"] for r in trial_runs(tmp_path)} == set(runs)  # every stage's runs stay
