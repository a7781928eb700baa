"""Populate the registries: import the built-in tasks, optimizers and schedules once."""

from __future__ import annotations

import functools


@functools.cache
def load() -> None:
    import bench.optimizers  # noqa: F401  (importing the package registers optimizers and schedules)
    from bench import tasks

    tasks.register_all()
