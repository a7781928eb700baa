"""Schedule values at key steps, the warmup/cooldown units, and which entries get a schedule."""

from __future__ import annotations

import math

import pytest
import torch
from optim_helpers import schedule

from bench.catalog import OPTIMIZERS, SCHEDULES
from bench.optimizers.schedules import (
    ENTRIES,
    Schedule,
    lr_lambda,
    needs_schedule,
    resolve_steps,
    warmup_steps,
)
from bench.spec import ScheduleSpec


def values(spec: ScheduleSpec, total: int) -> list[float]:
    f = lr_lambda(spec, total)
    return [f(s) for s in range(total)]


def test_declared_schedules():
    assert [s.name for s in ENTRIES] == ["constant", "linear", "cosine", "wsd"]
    assert all(s.description for s in ENTRIES)
    assert {"constant", "cosine", "linear", "wsd"} <= set(SCHEDULES.names())
    assert all(SCHEDULES.get(s.name) is s for s in ENTRIES)


def test_warmup_is_linear_and_reaches_the_peak():
    v = values(schedule("constant", warmup=4), 10)
    assert v[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert v[4:] == [1.0] * 6


def test_cosine_key_steps():
    v = values(schedule("cosine", warmup=0.1, min_lr_ratio=0.1), 110)  # 11 warmup steps
    assert v[0] == pytest.approx(1 / 11)
    assert v[10] == pytest.approx(1.0)
    assert v[11] == pytest.approx(1.0)  # first post-warmup step: s = 0
    assert v[11 + 49] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 49 / 99)))
    assert v[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 98 / 99)))
    assert lr_lambda(schedule("cosine", min_lr_ratio=0.1), 110)(500) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(v[11:-1], v[12:], strict=True))


def test_linear_key_steps():
    v = values(schedule("linear"), 100)
    assert v[0] == 1.0 and v[50] == pytest.approx(0.5) and v[99] == pytest.approx(0.01)


def test_wsd_is_flat_then_cools_down():
    v = values(schedule("wsd", warmup=10, cooldown=0.2), 110)  # cooldown: 20 of the 100 left
    assert v[9] == 1.0
    assert set(v[10:90]) == {1.0}
    assert v[90] == pytest.approx(1.0) and v[100] == pytest.approx(0.5) and v[109] == pytest.approx(0.05)


def test_fractions_and_counts():
    assert resolve_steps(0.05, 1000) == 50
    assert resolve_steps(25, 1000) == 25
    assert resolve_steps(2000, 1000) == 1000
    assert resolve_steps(0.0, 1000) == 0
    assert warmup_steps(schedule("cosine", warmup=0.1), 300) == 30


def test_unknown_schedule_name_suggests():
    with pytest.raises(KeyError, match="Did you mean 'cosine'"):
        SCHEDULES.get("cosin")


def test_reads_the_resolved_entry_not_a_name():
    """The shape comes from `spec.entry`: a schedule no registry knows works the same way."""
    half = ScheduleSpec(Schedule("half", "half the peak", lambda s, n, c: 0.5), warmup=2)
    assert values(half, 4) == pytest.approx([0.5, 1.0, 0.5, 0.5])


def test_drives_lambda_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(schedule("cosine", warmup=2), 10))
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(0.05) and seen[1] == pytest.approx(0.1) and seen[-1] < 0.01


@pytest.mark.parametrize(
    "name, expected",
    [("adamw", True), ("sgd", True), ("prodigy", True), ("schedulefree_adamw", False), ("dog", False)],
)
def test_needs_schedule(name: str, expected: bool):
    assert needs_schedule(OPTIMIZERS.get(name)) is expected


def test_wsd_1_sqrt_cooldown_follows_hagele():
    """Hägele et al. 2024: lr = peak * (1 - sqrt(t)) over the cooldown, t from 0 to 1."""
    v = values(schedule("wsd", warmup=10, cooldown=0.2, cooldown_shape="1-sqrt"), 110)
    assert set(v[10:90]) == {1.0}
    for step in (90, 95, 100, 109):
        t = (step - 90) / 20
        assert v[step] == pytest.approx(1 - math.sqrt(t))
    linear = values(schedule("wsd", warmup=10, cooldown=0.2), 110)
    assert all(a <= b for a, b in zip(v[90:], linear[90:], strict=True))  # 1-sqrt drops sooner


def test_a_horizon_spec_agrees_with_the_longest_run_up_to_its_cooldown():
    from bench.optimizers.schedules import cooldown_start, horizon_spec

    spec = schedule("wsd", warmup=0.05, cooldown=0.2)  # warmup: 5% of the longest run, 20 steps
    longest = lr_lambda(horizon_spec(spec, 400, 400), 400)
    short_spec = horizon_spec(spec, 100, 400)
    assert short_spec.warmup == 20.0 and warmup_steps(short_spec, 100) == 20
    start = cooldown_start(short_spec, 100)
    assert start == 100 - round(0.2 * 80)
    short = lr_lambda(short_spec, 100)
    assert [short(s) for s in range(start + 1)] == [longest(s) for s in range(start + 1)]
    assert short(99) < 0.1
