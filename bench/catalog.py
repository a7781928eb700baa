"""The project's registries: bench's built-in entries plus those of installed plugins.

Built-in entries are declared as data in `ENTRIES` of the modules below (torch-free, so building the
catalog costs milliseconds); plugins add theirs through the entry-point groups `bench.tasks`,
`bench.optimizers` and `bench.schedules` (see `bench.registry`). Adding a built-in family is adding a
module and a line here.

    from bench.catalog import OPTIMIZERS, REGISTRIES
    OPTIMIZERS.get("adamw")
    load_suite(path, registries=REGISTRIES)   # the resolver takes the registries as an argument
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.optimizers import adam, free, lowrank, matrix, rotational, sam, schedules, sgd, sophia
from bench.optimizers.base import OptimizerEntry
from bench.optimizers.schedules import Schedule
from bench.registry import Registry
from bench.tasks import digits, gpt, resnet, vit
from bench.tasks.base import TaskEntry


@dataclass(frozen=True)
class Registries:
    """The three registries a suite is resolved against."""

    tasks: Registry[TaskEntry]
    optimizers: Registry[OptimizerEntry]
    schedules: Registry[Schedule]


TASKS: Registry[TaskEntry] = Registry(
    "task", group="bench.tasks", entries=[*digits.ENTRIES, *gpt.ENTRIES, *resnet.ENTRIES, *vit.ENTRIES]
)
OPTIMIZERS: Registry[OptimizerEntry] = Registry(
    "optimizer",
    group="bench.optimizers",
    entries=[
        *sgd.ENTRIES,
        *adam.ENTRIES,
        *matrix.ENTRIES,
        *free.ENTRIES,
        *sophia.ENTRIES,
        *lowrank.ENTRIES,
        *rotational.ENTRIES,
        *sam.ENTRIES,
    ],
)
SCHEDULES: Registry[Schedule] = Registry("schedule", group="bench.schedules", entries=schedules.ENTRIES)
REGISTRIES = Registries(TASKS, OPTIMIZERS, SCHEDULES)
