"""bench's own checks, for the authors of plugins: the task and optimizer entry contracts as pytest
test classes, run by bench over its whole registries and by a plugin over its own entries.

    # tests/test_bench_contract.py in a plugin package (pytest collects the subclasses)
    from bench.catalog import OPTIMIZERS, TASKS
    from bench.testing import OptimizerContract, TaskContract, plugin_entries

    class TestOptimizers(OptimizerContract):
        entries = plugin_entries(OPTIMIZERS, "bench-example")

    class TestTasks(TaskContract):
        entries = plugin_entries(TASKS, "bench-example")

    models.py     a tiny model and problem, and the training step the runner takes for each flag
    optimizers.py OptimizerContract          tasks.py    TaskContract

Needs pytest (bench's `dev` extra); nothing in bench imports this package.
"""

from __future__ import annotations

import re
from typing import Any

from bench.registry import Registry
from bench.testing.optimizers import OptimizerContract
from bench.testing.tasks import TaskContract

__all__ = ["OptimizerContract", "TaskContract", "plugin_entries"]


def plugin_entries(registry: Registry[Any], distribution: str) -> list[Any]:
    """The entries of `registry` that the installed distribution `distribution` adds through its
    entry points (`bench ls` shows it in the `from` column). A distribution with none, or one whose
    entry point failed to load, is an error: a contract over no entries would pass silently."""
    wanted = _normal(distribution)
    found = [
        entry
        for name, entry in registry.items()
        if (origin := registry.origin(name)).startswith("plugin ")
        and _normal(origin.removeprefix("plugin ").split(" (")[0]) == wanted
    ]
    if not found:
        broken = "".join(f"; {k}: {v}" for k, v in registry.plugin_errors.items())
        raise LookupError(f"no {registry.kind} entries from the distribution '{distribution}'{broken}")
    return found


def _normal(distribution: str) -> str:
    """A distribution name as packaging compares them (PEP 503): `Bench_Example` == `bench-example`."""
    return re.sub(r"[-_.]+", "-", distribution).lower()
