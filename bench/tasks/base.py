"""The task contract: what a workload declares and what the runner asks of it.

A task never sees an optimizer. It owns a model, its data and its metrics:

- `TaskEntry` is the registry entry: the workload's contract in one place (AlgoPerf's spec.py idea):
  target metric and direction, target value, default step budget, batch size, version, default options
  and a `build` function.
- `Task` is a built instance for one trial: `build(options, seed, data_root)` returns it.

Metric names carry their split and direction is declared: `val/loss` (min), `val/error` (min).
Validation returns *sums* and a count per batch so the runner can take exact means over a split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

Mode = Literal["min", "max"]


class Task(Protocol):
    """One built task for one trial. Batches are whatever the task's loaders yield."""

    def build_model(self) -> nn.Module:
        """A freshly initialised model (seeded by the caller via torch.manual_seed)."""
        ...

    def train_loader(self) -> Iterable[Any]:
        """Training batches; the order is a function of the build seed only (same for every optimizer).
        May be finite: the runner cycles it."""
        ...

    def val_loader(self) -> Iterable[Any]:
        """A fixed held-out set, identical for every trial of the task."""
        ...

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Scalar mean loss of one batch (the quantity that is minimised)."""
        ...

    def validation_sums(self, model: nn.Module, batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        """Per-batch sums of each metric (without the `val/` prefix, e.g. {'loss': ..., 'error': ...})
        and the number of examples (or tokens) they were summed over."""
        ...


@dataclass(frozen=True)
class TaskEntry:
    """A registered workload. `options` are the defaults a suite may override under `options:`."""

    name: str
    family: str  # gpt, digits, resnet, vit ...
    size: str  # tiny, small, 124m ... (variants are data, not subclasses)
    description: str
    metric: str  # leaderboard metric, e.g. "val/loss"
    mode: Mode
    target: float | None  # value of `metric` that counts as reaching the target (time-to-target)
    steps: int  # default step budget per trial
    batch_size: int
    version: int  # bump whenever results of this task would change
    build: Callable[[Mapping[str, Any], int, Path], Task]  # (options, seed, data_root) -> Task
    options: Mapping[str, Any] = field(default_factory=dict)
    eval_every: int = 0  # validate every N steps (0: only at the end)
    metrics: Mapping[str, Mode] = field(default_factory=dict)  # every reported val metric -> mode
    flops_per_step: float | None = None  # forward+backward FLOPs per optimizer step at the defaults
    tokens_per_step: int | None = None  # LM tasks: tokens per optimizer step
    requires_gpu: bool = False  # full-size variants: plan/validate fine, running on CPU warns
