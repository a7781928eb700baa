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
