"""Horizons: the branch plan of a WSD schedule with `horizons` (pure), and, end to end, that each
horizon's result is the result of a separate run of that length, and that a run killed in a cooldown
branch resumes that branch without retraining the trunk."""

from __future__ import annotations

import math

import pytest

from bench.catalog import SCHEDULES
from bench.horizons import HorizonError, first_reach, horizon_steps, merge_curve, plan_horizons, run_steps
from bench.optimizers.schedules import lr_lambda
from bench.spec import ScheduleSpec


def wsd(**fields: object) -> ScheduleSpec:
    return ScheduleSpec(SCHEDULES.get("wsd"), **fields)  # type: ignore[arg-type]


def test_horizons_are_fractions_of_the_steps_and_the_full_length_is_always_one() -> None:
    assert horizon_steps([0.25, 0.5], 400) == (100, 200, 400)
    assert horizon_steps([1.0, 0.5], 400) == (200, 400)
    with pytest.raises(HorizonError, match="round to 2 steps"):
        horizon_steps([0.5, 0.52], 4)
    with pytest.raises(HorizonError, match="rounds to 0 steps"):
        horizon_steps([0.001], 100)


def test_the_plan_branches_each_horizon_where_its_cooldown_starts() -> None:
    plan = plan_horizons(wsd(warmup=20, cooldown=0.2, horizons=(0.25, 0.5)), 400)
    assert plan.steps == (100, 200, 400) and plan.warmup == 20
    assert [b.start for b in plan.branches] == [84, 164, 324]  # 20% of the steps after warmup
    assert plan.trunk == 324 and plan.checkpoints == (84, 164, 324)
    assert plan.cost_steps == 324 + 16 + 36 + 76 and plan.separate_steps == 700
    assert run_steps(wsd(horizons=(0.5,)), 100) == plan_horizons(wsd(horizons=(0.5,)), 100).cost_steps
    assert run_steps(wsd(), 100) == 100


def test_each_branch_schedule_is_the_trunk_until_its_cooldown_then_its_own() -> None:
    spec = wsd(warmup=0.05, cooldown=0.25, cooldown_shape="1-sqrt", horizons=(0.25, 0.5))
    plan = plan_horizons(spec, 400)
    trunk = lr_lambda(plan.branches[-1].schedule, 400)
    for b in plan.branches:
        own = lr_lambda(b.schedule, b.steps)
        assert [own(s) for s in range(b.start + 1)] == [trunk(s) for s in range(b.start + 1)]
        assert own(b.start) == 1.0 and own(b.steps - 1) < 0.3
    # a separate run with the horizon's spec has the same warmup in steps: 5% of the longest run
    assert all(b.schedule.warmup == 20.0 and not b.schedule.horizons for b in plan.branches)


def test_a_cooldown_inside_the_warmup_is_refused() -> None:
    with pytest.raises(HorizonError, match="inside the 40-step warmup"):
        plan_horizons(wsd(warmup=40, horizons=(0.1,)), 200)


def test_a_horizon_curve_is_the_trunk_to_its_checkpoint_then_its_branch() -> None:
    trunk = [(10, 0.9), (20, 0.7), (30, 0.6), (40, 0.55)]
    branch = [(20, 0.7), (25, 0.5)]
    assert merge_curve(trunk, branch, start=20) == [(10, 0.9), (20, 0.7), (25, 0.5)]
    assert first_reach([(10, 0.9), (20, 0.7), (25, 0.5)], 0.6, "min") == 25.0
    assert math.isnan(first_reach([(10, 0.9)], 0.6, "min"))
    assert math.isnan(first_reach([(10, 0.9)], None, "min"))
    assert first_reach([(10, 0.2), (20, 0.4)], 0.3, "max") == 20.0


# ---------------------------------------------------------------------------------------------------
# End to end: real Lightning trainings, MLflow and Optuna stores in a temporary directory

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from helpers import trial_runs, write_suite  # noqa: E402

SCHEDULE = {"name": "wsd", "warmup": 4, "cooldown": 0.25, "cooldown_shape": "1-sqrt"}


def horizon_runs(directory: Path, *, active_only: bool = True) -> list[dict[str, str]]:
    """Horizon runs in the MLflow store, with their status, tags and final metrics."""
    con = sqlite3.connect(directory / "mlflow.db", timeout=30)
    try:
        stage = "AND r.lifecycle_stage = 'active'" if active_only else ""
        rows = con.execute(
            "SELECT r.run_uuid, r.status, r.lifecycle_stage, t.key, t.value FROM runs r "
            f"JOIN tags t ON t.run_uuid = r.run_uuid WHERE (t.key LIKE 'bench.%' OR t.key = 'mlflow.parentRunId') {stage}"
        ).fetchall()
        metrics = con.execute("SELECT run_uuid, key, value FROM latest_metrics").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()
    runs: dict[str, dict[str, str]] = {}
    for run_id, status, stage_, key, value in rows:
        runs.setdefault(run_id, {"run_id": run_id, "status": status, "stage": stage_})[key] = value
    for run_id, key, value in metrics:
        if run_id in runs:
            runs[run_id][f"metric:{key}"] = value
    return [r for r in runs.values() if r.get("bench.kind") == "horizon"]


@pytest.mark.slow
def test_each_horizon_matches_a_separate_run_of_its_length(tmp_path: Path) -> None:
    """One horizons run (trunk + cooldown branches) against three separate runs of 15, 30 and 60 steps
    with the same WSD schedule (warmup in steps), seed and default hyperparameters: equal to the last
    bit on a CPU, raw weights and EMA alike."""
    from bench.cli import main

    common = {
        "optimizers": [{"name": "adamw", "ema": 0.9}],
        "tuning": {"protocol": "defaults", "trials": 1, "seeds": 1},
    }
    one = write_suite(
        tmp_path / "one",
        name="one",
        tasks=[{"name": "digits_cnn", "steps": 60, "eval_every": 10, "metric": "val/loss", "target": 0.6}],
        schedule={**SCHEDULE, "horizons": [0.25, 0.5]},
        **common,
    )
    separate = write_suite(
        tmp_path / "sep",
        name="sep",
        tasks=[
            {
                "name": "digits_cnn",
                "steps": 60,
                "eval_every": 10,
                "metric": "val/loss",
                "target": 0.6,
                "scan": {"steps": [15, 30, 60]},
            }
        ],  # fmt: skip
        schedule=SCHEDULE,
        **common,
    )
    assert main(["run", str(one), "--no-leaderboard"]) == 0
    assert main(["run", str(separate), "--no-leaderboard"]) == 0
    horizons = {int(r["bench.horizon"]): r for r in horizon_runs(tmp_path / "one")}
    runs = {int(json.loads(r["bench.scan"])["axes"]["steps"]): r for r in trial_runs(tmp_path / "sep")}
    assert sorted(horizons) == sorted(runs) == [15, 30, 60]
    (trial,) = trial_runs(tmp_path / "one")
    assert all(r["mlflow.parentRunId"] == trial["run_id"] for r in horizons.values())

    from mlflow import MlflowClient

    def final(directory: Path, run_id: str) -> dict[str, float]:
        client = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
        return client.get_run(run_id).data.metrics

    for steps in (15, 30, 60):
        h, s = (
            final(tmp_path / "one", horizons[steps]["run_id"]),
            final(tmp_path / "sep", runs[steps]["run_id"]),
        )
        for key in ("value", "final/val/loss", "final/val/error", "final/val_ema/loss", "steps_to_target"):
            a, b = h.get(key, math.nan), s.get(key, math.nan)  # NaN (target not reached) is not logged
            assert a == pytest.approx(b, rel=1e-6, abs=1e-9, nan_ok=True), (steps, key, a, b)
    # the trial's own summary is its longest horizon's
    assert (
        final(tmp_path / "one", trial["run_id"])["value"]
        == final(tmp_path / "sep", runs[60]["run_id"])["value"]
    )
    assert not (tmp_path / "one" / ".bench" / "checkpoints").exists() or not any(
        (tmp_path / "one" / ".bench" / "checkpoints").rglob("*.ckpt")
    )  # spent checkpoints are removed


def bench_run(suite: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(suite), "--no-leaderboard", "--quiet-bars"],
        cwd=suite.parent,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
def test_a_run_killed_in_a_cooldown_resumes_that_branch_not_the_trunk(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path,
        name="killed",
        tasks=[{"name": "digits_cnn", "steps": 900, "eval_every": 100}],
        optimizers=["adamw"],
        tuning={"protocol": "defaults", "trials": 1, "seeds": 1},
        schedule={"name": "wsd", "warmup": 10, "cooldown": 0.5, "horizons": [0.25, 0.5]},
    )
    log = tmp_path / "run.log"
    proc = bench_run(suite, log)
    deadline = time.monotonic() + 600
    while True:  # kill during the second horizon's cooldown, once the first is recorded
        assert proc.poll() is None, f"bench run ended before it could be killed:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        runs = {int(r["bench.horizon"]): r for r in horizon_runs(tmp_path)}
        if runs.get(225, {}).get("status") == "FINISHED" and runs.get(450, {}).get("status") == "RUNNING":
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.1)
    plan = plan_horizons(wsd(warmup=10, cooldown=0.5, horizons=(0.25, 0.5)), 900)
    assert plan.checkpoints == (117, 230, 455)  # 0.5 of the steps after warmup: 108, 220, 445
    checkpoints = sorted((tmp_path / ".bench" / "checkpoints").rglob("*.ckpt"))
    assert sorted(p.name for p in checkpoints) == sorted(f"step-{c}.ckpt" for c in plan.checkpoints)
    written = {p: p.stat().st_mtime_ns for p in checkpoints}
    first = runs[225]["run_id"]
    dead = next(r["run_id"] for r in horizon_runs(tmp_path) if r["bench.horizon"] == "450")

    resumed = bench_run(suite, log)
    assert resumed.wait(timeout=600) == 0, log.read_text()
    text = log.read_text()
    assert "trunk of 455 steps read back (not retrained)" in text, text
    assert "horizon 225 already recorded" in text
    assert all(p.stat().st_mtime_ns == m for p, m in written.items() if p.exists())  # never rewritten

    (trial,) = trial_runs(tmp_path)  # the retried trial; the dead attempt's run is retired
    active = horizon_runs(tmp_path)
    assert sorted(int(r["bench.horizon"]) for r in active) == [225, 450, 900]  # each exactly once
    assert all(r["status"] == "FINISHED" and r["bench.outcome"] == "completed" for r in active)
    assert all(r["mlflow.parentRunId"] == trial["run_id"] for r in active)
    assert first in {r["run_id"] for r in active}  # the horizon recorded before the kill is kept
    everything = {r["run_id"]: r for r in horizon_runs(tmp_path, active_only=False)}
    assert everything[dead]["status"] == "KILLED" and everything[dead]["stage"] == "deleted"
    assert not list((tmp_path / ".bench" / "checkpoints").rglob("*.ckpt"))


@pytest.mark.slow
def test_a_diverged_trunk_records_every_horizon_as_diverged(tmp_path: Path) -> None:
    from bench.cli import main

    suite = write_suite(
        tmp_path,
        name="diverged",
        tasks=[{"name": "digits_cnn", "steps": 80, "eval_every": 20}],
        optimizers=[{"name": "sgd", "search_space": {"lr": {"low": 1.0e3, "high": 1.0e4, "log": True}}}],
        tuning={"protocol": "random", "trials": 1, "seeds": 1},
        schedule={**SCHEDULE, "horizons": [0.5]},
    )
    assert main(["run", str(suite), "--no-leaderboard"]) == 0
    (trial,) = trial_runs(tmp_path)
    runs = horizon_runs(tmp_path)
    assert sorted(int(r["bench.horizon"]) for r in runs) == [40, 80]
    assert all(r["bench.outcome"] == "diverged" for r in [trial, *runs])
    assert not list((tmp_path / ".bench" / "checkpoints").rglob("*"))  # nothing left behind


def test_a_sweeps_warmup_point_trains_the_branches_of_its_own_warmup(tmp_path: Path) -> None:
    """Sweep x horizons: a warmup point's trunk trains its warmup, so its cooldown branches (starts and
    schedules) are planned from that warmup, not the suite's; a warmup that leaves no constant-lr trunk
    before a cooldown is refused before training, naming the point."""
    from bench.engine import trial_horizons, trial_spec
    from bench.loader import load_suite
    from bench.plan import make_plan
    from bench.spec import SpecError

    def suite(warmups: list[float]) -> Path:
        return write_suite(
            tmp_path,
            name="swh",
            tasks=[{"name": "digits_cnn", "steps": 200, "eval_every": 50}],
            optimizers=["sgd"],
            tuning={
                "protocol": "sweep",
                "seeds": 1,
                "sweep": {"lr_points": 3, "extend": 0, "warmup": warmups},
            },
            schedule={"name": "wsd", "warmup": 4, "cooldown": 0.25, "horizons": [0.5]},
        )

    loaded = load_suite(suite([0.0, 0.2]))
    (sp,) = make_plan(loaded).studies
    assert trial_horizons(sp, trial_spec(loaded, sp, {"lr": 0.1}, 0)) is sp.horizons  # the lr points
    point = trial_horizons(sp, trial_spec(loaded, sp, {"lr": 0.1}, 0, warmup=0.2))
    assert point is not None and point.warmup == 40 != sp.horizons.warmup
    assert [b.schedule.warmup for b in point.branches] == [40.0, 40.0]
    assert [b.start for b in point.branches] == [
        b.start for b in plan_horizons(wsd(warmup=40, cooldown=0.25, horizons=(0.5,)), 200).branches
    ]

    with pytest.raises(SpecError, match=r"the sweep's warmup point 0\.9: .*inside the 180-step warmup"):
        load_suite(suite([0.0, 0.9]))
