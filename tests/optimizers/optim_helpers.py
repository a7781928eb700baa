"""Shared by the optimizer tests: the tiny model, problem and training loop of `bench.testing.models`
(what plugin authors get too), and a resolved schedule spec."""

from __future__ import annotations

from bench.optimizers import schedules
from bench.spec import ScheduleSpec
from bench.testing.models import (  # noqa: F401  (re-exported for the tests)
    DATA,
    ROLES,
    TinyNet,
    clone,
    loss_of,
    make_data,
    make_model,
    max_param_diff,
    step,
    train,
)


def schedule(name: str, **fields: float) -> ScheduleSpec:
    """The resolved spec of the built-in schedule `name`."""
    (entry,) = [s for s in schedules.ENTRIES if s.name == name]
    return ScheduleSpec(entry, **fields)
