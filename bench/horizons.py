"""Many training lengths from one run: the branches of a WSD schedule with `horizons`, and what each
horizon's result is made of. Pure: no torch, no Lightning, no MLflow (`bench.branches` runs them).

Hägele et al. 2024 ("Scaling laws and compute-optimal training beyond fixed training durations"):
warmup-stable-decay matches a cosine schedule of the same length, and since its lr is constant until the
cooldown, runs of several lengths share everything up to their cooldowns. So one **trunk** trains at the
constant lr, a checkpoint is saved where each horizon's cooldown starts, and a **branch** per horizon
resumes from its checkpoint and cools down to its own end:

    horizons [0.25, 0.5, 1] of 400 steps, warmup 20, cooldown 0.2 (of the steps after warmup):
      horizon 100: cooldown from step 84   horizon 200: from 164   horizon 400: from 324
      trunk 0 -> 324 (checkpoints at 84, 164, 324); branches 84 -> 100, 164 -> 200, 324 -> 400
      compute: 324 + 16 + 36 + 76 = 452 steps instead of 100 + 200 + 400 = 700 for separate runs

Each horizon's schedule is `schedules.horizon_spec(spec, H, longest)`: the warmup is resolved once
against the longest run and given in steps, so a separate run of `H` steps with that spec has the very
same lr at every step, and the branch reproduces it (same seed, same data order; see
`tests/test_horizons.py` for the measured agreement).

A horizon's evaluations are the trunk's up to its checkpoint, then its branch's (`merge_curve`); its
time to target is the first of those that reaches the target (`first_reach`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.optimizers.schedules import cooldown_start, horizon_spec, resolve_steps
from bench.spec import ScheduleSpec


class HorizonError(ValueError):
    """Horizons that do not make branches of one run (the message says which and why)."""


@dataclass(frozen=True)
class Branch:
    """One horizon: a run of `steps` steps whose cooldown starts at `start` (the trunk's checkpoint)."""

    steps: int
    start: int
    schedule: ScheduleSpec  # the schedule a separate run of `steps` steps would have

    @property
    def cooldown(self) -> int:
        return self.steps - self.start


@dataclass(frozen=True)
class HorizonPlan:
    """The branches of a horizons run, shortest first, and what the run costs."""

    branches: tuple[Branch, ...]
    warmup: int

    @property
    def trunk(self) -> int:
        """Steps of the constant-lr trunk: up to the last checkpoint."""
        return max(b.start for b in self.branches)

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """Steps where the trunk saves a checkpoint (one per distinct cooldown start)."""
        return tuple(sorted({b.start for b in self.branches}))

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(b.steps for b in self.branches)

    @property
    def cost_steps(self) -> int:
        """Optimizer steps of the whole run: the trunk plus every cooldown."""
        return self.trunk + sum(b.cooldown for b in self.branches)

    @property
    def separate_steps(self) -> int:
        """Optimizer steps of one separate run per horizon."""
        return sum(b.steps for b in self.branches)


def horizon_steps(fractions: Iterable[float], steps: int) -> tuple[int, ...]:
    """The horizons in steps, shortest first; the full `steps` is always one. Raises HorizonError when
    a fraction rounds to no step or to the same step as another."""
    out: dict[int, float] = {steps: 1.0}
    for f in sorted(fractions):
        h = round(f * steps)
        if h < 1:
            raise HorizonError(f"horizon {f:g} of {steps} steps rounds to 0 steps")
        if h in out and not math.isclose(out[h], f):
            raise HorizonError(
                f"horizons {out[h]:g} and {f:g} of {steps} steps both round to {h} steps; use fewer horizons"
            )
        out[h] = f
    return tuple(sorted(out))


def plan_horizons(spec: ScheduleSpec, steps: int) -> HorizonPlan:
    """The branches of a `steps`-step run with `spec.horizons`. Raises HorizonError when a horizon's
    cooldown would start inside the warmup (its branch would not leave a constant-lr trunk)."""
    warmup = resolve_steps(spec.warmup, steps)
    branches = []
    for h in horizon_steps(spec.horizons, steps):
        schedule = horizon_spec(spec, h, steps)
        start = cooldown_start(schedule, h)
        if start < warmup:
            raise HorizonError(
                f"the horizon of {h} steps would cool down from step {start}, inside the {warmup}-step warmup; "
                "drop it, or shorten the warmup or the cooldown"
            )
        branches.append(Branch(steps=h, start=start, schedule=schedule))
    return HorizonPlan(branches=tuple(branches), warmup=warmup)


def run_steps(spec: ScheduleSpec, steps: int) -> int:
    """Optimizer steps one run of a `steps`-step task costs with this schedule (trunk + cooldowns with
    horizons, else `steps`)."""
    return plan_horizons(spec, steps).cost_steps if spec.horizons else steps


# ---------------------------------------------------------------------------------------------------
# A horizon's result from the trunk's and its branch's evaluations

Curve = Sequence[tuple[int, float]]


def merge_curve(trunk: Curve, branch: Curve, start: int) -> list[tuple[int, float]]:
    """A horizon's evaluations: the trunk's up to (and at) its checkpoint, then the branch's after it
    (an evaluation the branch repeats at the checkpoint step is the same weights: kept once)."""
    return [(s, v) for s, v in trunk if s <= start] + [(s, v) for s, v in branch if s > start]


def first_reach(curve: Curve, target: float | None, mode: str) -> float:
    """The first step whose value reaches `target`; NaN when none does or there is no target (the
    runner's convention: `bench.score` reads NaN under a target as never reached)."""
    if target is None or math.isnan(target):
        return math.nan
    for step, value in sorted(curve):
        if value <= target if mode == "min" else value >= target:
            return float(step)
    return math.nan
