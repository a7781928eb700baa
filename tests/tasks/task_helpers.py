"""Helpers for the task tests: build a registered task the way the runner does."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.catalog import TASKS
from bench.testing.tasks import build_task


def build(
    name: str, options: Mapping[str, Any] | None = None, seed: int = 0, data_root: Path | None = None
) -> Any:
    """`TASKS.get(name)` built with `options` (the suite's `options:`, plus an optional `batch_size`):
    validated by the task's schema and completed with its defaults, then passed to `build` as a plain
    dict with the per-process `batch_size` (the entry's when not given), as the runner does."""
    return build_task(TASKS.get(name), options, seed, data_root or Path("unused"))
