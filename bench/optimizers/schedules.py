"""Learning-rate schedules: constant, linear, cosine and wsd, each after a linear warmup.

A schedule is a multiplier of the peak learning rate, for `torch.optim.lr_scheduler.LambdaLR`:

    scheduler = LambdaLR(opt, lr_lambda(spec, total_steps=1000))

where `spec` is a resolved `bench.spec.ScheduleSpec`: its `entry` (a `Schedule` of `ENTRIES`, looked up
by the suite resolver in `SCHEDULES`), `warmup`, `cooldown` and `min_lr_ratio`. This module imports
neither torch nor a registry; `bench.catalog` gathers `ENTRIES` into `SCHEDULES`.

`step` counts optimizer steps from 0 (LambdaLR's `last_epoch`); the runner steps the scheduler after
every optimizer step. With `W` warmup steps, `C` cooldown steps, `N = total - W` and `s = step - W`:

    warmup     step < W:  (step + 1) / W                 (reaches the peak at step W - 1)
    constant             1
    linear               m + (1 - m) (1 - s/N)
    cosine               m + (1 - m) (1 + cos(pi s/N)) / 2
    wsd                  1 while s < N - C, then m + (1 - m) (1 - t),  t = (s - N + C)/C  (linear cooldown)
      cooldown_shape 1-sqrt:                       then m + (1 - m) (1 - sqrt(t))

where `m` is `min_lr_ratio`. The 1-sqrt cooldown (Hägele et al. 2024, section 3) keeps the lr high for
longer and then drops it faster than the linear one; `cooldown_shape` applies to `wsd` only. `warmup` and `cooldown` in a `ScheduleSpec` are fractions of the total
steps when < 1, else step counts. WSD (warmup-stable-decay) is from Hu et al. 2024 (MiniCPM) and
Hägele et al. 2024 (Scaling laws and compute-optimal training beyond fixed training durations).

Schedule-free optimizers and `no_schedule` entries run without a schedule: see `needs_schedule`.

A WSD schedule with `horizons` trains many lengths in one run (see `bench.horizons`): for each horizon
`H` the run of `H` steps cools down from `cooldown_start(spec, H)`, and `horizon_spec(spec, steps)` is the
schedule of one horizon's run: the same warmup in steps whatever its length, so every horizon's schedule
agrees with every other's up to its own cooldown.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.optimizers.base import OptimizerEntry
    from bench.spec import ScheduleSpec


@dataclass(frozen=True)
class Schedule:
    """A schedule, registered under `name`. `shape(s, n, cooldown)` is the position between the
    minimum (0) and the peak (1) at `s` steps after warmup, out of `n` post-warmup steps."""

    name: str
    description: str
    shape: Callable[[int, int, int], float]


def _constant(s: int, n: int, cooldown: int) -> float:
    return 1.0


def _linear(s: int, n: int, cooldown: int) -> float:
    return 1.0 - min(s / max(n, 1), 1.0)


def _cosine(s: int, n: int, cooldown: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(s / max(n, 1), 1.0)))


def _wsd(s: int, n: int, cooldown: int) -> float:
    start = n - cooldown
    if s < start:
        return 1.0
    return 1.0 - min((s - start) / max(cooldown, 1), 1.0)


ENTRIES: tuple[Schedule, ...] = (
    Schedule("constant", "the peak lr after warmup", _constant),
    Schedule("linear", "linear decay to min_lr_ratio", _linear),
    Schedule("cosine", "cosine decay to min_lr_ratio", _cosine),
    Schedule("wsd", "warmup-stable-decay: constant, then a linear cooldown", _wsd),
)


def resolve_steps(value: float, total_steps: int) -> int:
    """A fraction of `total_steps` when `value` < 1, else a step count; clipped to [0, total_steps]."""
    steps = round(value * total_steps) if value < 1 else int(value)
    return max(0, min(steps, total_steps))


COOLDOWN_SHAPES: tuple[str, ...] = ("linear", "1-sqrt")


def _phases(spec: ScheduleSpec, total_steps: int) -> tuple[int, int]:
    """(warmup steps, cooldown steps) of a run of `total_steps`: the cooldown is a fraction of the steps
    after warmup."""
    warmup = resolve_steps(spec.warmup, total_steps)
    return warmup, resolve_steps(spec.cooldown, total_steps - warmup)


def cooldown_start(spec: ScheduleSpec, total_steps: int) -> int:
    """The first step of the cooldown of a WSD run of `total_steps` (its lr is still the peak)."""
    _, cooldown = _phases(spec, total_steps)
    return total_steps - cooldown


def horizon_spec(spec: ScheduleSpec, steps: int, longest: int) -> ScheduleSpec:
    """The schedule of the `steps`-step run of a horizons schedule whose longest horizon is `longest`:
    the warmup is resolved once, against the longest run, and given in steps, so that every horizon
    warms up alike (a separate run with this spec is what the horizon stands for); no horizons."""
    warmup = resolve_steps(spec.warmup, longest)
    return replace(spec, warmup=float(warmup), horizons=())


def lr_lambda(spec: ScheduleSpec, total_steps: int) -> Callable[[int], float]:
    """The lr multiplier for optimizer step `step` (0-based) of a run of `total_steps` steps."""
    shape = spec.entry.shape
    warmup, cooldown = _phases(spec, total_steps)
    n = total_steps - warmup
    low = spec.min_lr_ratio
    root = spec.cooldown_shape == "1-sqrt"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        position = shape(step - warmup, n, cooldown)
        if root:  # wsd's position in its cooldown is 1 - t; the 1-sqrt shape is 1 - sqrt(t)
            position = 1.0 - math.sqrt(max(0.0, 1.0 - position))
        return low + (1.0 - low) * position

    return factor


def needs_schedule(entry: OptimizerEntry) -> bool:
    """False for schedule-free and self-scheduling optimizers, which run at a constant lr."""
    return not ({"schedule_free", "no_schedule"} & set(entry.flags))


def warmup_steps(spec: ScheduleSpec, total_steps: int) -> int:
    """The warmup of `spec` in steps: what a schedule-free optimizer takes as its `warmup_steps`."""
    return resolve_steps(spec.warmup, total_steps)
