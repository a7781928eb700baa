"""The suite as bench runs it: frozen, typed objects with their registry entries, and the errors.

`bench.loader.load_suite(path)` is the only way a suite enters bench: it reads the YAML
(`bench.loader`), validates it against the format (`bench.schema`) and resolves names against the
registries (`bench.resolve`), producing the `Suite` below. Everything downstream reads these objects,
never raw dicts; every mapping in them is read-only.

A malformed suite raises one `SpecError` carrying *every* problem found, each naming the file the key
came from, the key path, the bad value, what was expected and (for names) the nearest valid one:

    suites/vision.yaml: optimizers[1].search_space.lr.low: must be > 0 for a log scale, got 0.0
    suites/vision.yaml: tuning.trials: must be >= 1, got 0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.schema import (
    CheckSpec,
    FrozenMap,
    KeyPath,
    LeaderboardSpec,
    Settings,
    TrainerSpec,
    TuningSpec,
    thaw,
)
from bench.space import Param
from bench.tasks.base import Mode, TaskEntry

if TYPE_CHECKING:
    from bench.optimizers.base import OptimizerEntry
    from bench.optimizers.schedules import Schedule

__all__ = [
    "CheckSpec", "LeaderboardSpec", "OptimizerSpec", "Problems", "ScheduleSpec", "Settings", "SpecError", "Suite",
    "TaskSpec", "TrainerSpec", "TuningSpec", "fmt_path",
]  # fmt: skip

COMMAND_LINE = "command line"  # the "file" named in errors about command-line overrides


def fmt_path(path: KeyPath) -> str:
    """("optimizers", 1, "fixed", "lr") -> 'optimizers[1].fixed.lr'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class SpecError(ValueError):
    """A malformed suite or benchmark.yaml. `str()` is the whole user-facing message: one line per
    problem. `file`, `key` and `message` are those of the first; `problems` lists them all."""

    def __init__(self, file: str | Path, key: str, message: str, *, more: list[SpecError] | None = None):
        self.file, self.key, self.message = str(file), key, message
        self.problems: list[SpecError] = [self, *(more or [])]
        super().__init__("\n".join(p.line for p in self.problems))

    @property
    def line(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"

    def __str__(self) -> str:
        return "\n".join(p.line for p in self.problems)


# Where each key path of the merged tree was last set, so that an error in a key that came from an
# include, benchmark.yaml or the command line names that source, not the suite.
Origins = dict[KeyPath, str]


class Problems:
    """Collects every problem of a suite, then raises them together (`raise_if_any`)."""

    def __init__(self, main: str, origins: Origins | None = None):
        self.main, self.origins = main, origins or {}
        self.found: list[SpecError] = []

    def file_of(self, path: KeyPath) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return self.main

    def add(self, path: KeyPath, message: str) -> None:
        error = SpecError(self.file_of(path), fmt_path(path), message)
        if all(e.line != error.line for e in self.found):  # a shared value is checked once per user
            self.found.append(error)

    def extend(self, problems: list[tuple[KeyPath, str]]) -> None:
        for path, message in problems:
            self.add(path, message)

    def require(self, ok: bool, path: KeyPath, message: str) -> bool:
        if not ok:
            self.add(path, message)
        return ok

    def __bool__(self) -> bool:
        return bool(self.found)

    def raise_if_any(self) -> None:
        if self.found:
            first, *rest = self.found
            raise SpecError(first.file, first.key, first.message, more=rest)


@dataclass(frozen=True)
class TaskSpec:
    """One task as the suite uses it: the registry entry plus the suite's overrides."""

    name: str
    entry: TaskEntry
    steps: int
    batch_size: int
    options: FrozenMap  # validated by the entry's options schema, defaults filled in
    metric: str
    mode: Mode
    target: float | None
    eval_every: int
    failure_value: float | None = None  # what a failed trial costs in `metric` (None: not declared)
    failure_why: str = "not declared"  # how `failure_value` was obtained


@dataclass(frozen=True)
class ScheduleSpec:
    """A learning-rate schedule (see bench.optimizers.schedules): the registered shape, after a linear
    warmup. `warmup` and `cooldown` are fractions of the trial's steps when < 1, else step counts."""

    entry: Schedule
    warmup: float = 0.0
    cooldown: float = 0.2  # wsd only: the final decay phase
    min_lr_ratio: float = 0.0

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer as the suite uses it. `label` is unique in the suite (defaults to the name)."""

    label: str
    entry: OptimizerEntry
    search_space: FrozenMap  # name -> bench.space.Param; the entry's default unless the suite replaces it
    fixed: FrozenMap  # hyperparameters held fixed (not searched), over the entry's defaults
    schedule: ScheduleSpec
    decay_filter: bool = True  # no weight decay on biases, norms and embeddings
    ema: float | None = None  # evaluate an EMA of the weights with this decay, beside the raw weights
    batch_size: int | None = None  # transfer the tuned lr to this batch size (entry.lr_scaling)


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    tasks: tuple[TaskSpec, ...]
    optimizers: tuple[OptimizerSpec, ...]
    tuning: TuningSpec
    trainer: TrainerSpec
    leaderboard: LeaderboardSpec
    settings: Settings
    overrides: FrozenMap = field(default_factory=FrozenMap)  # `--set`s it was loaded with (reload in workers)
    check: CheckSpec = field(default_factory=CheckSpec)  # how `bench check` gates it (bench.check)

    @property
    def resolved(self) -> dict[str, Any]:
        """The fully merged suite as plain data: includes, project defaults and entry defaults applied.
        It is itself a valid suite file, so a logged `resolved` can be run again."""
        return {
            "name": self.name,
            "description": self.description,
            "settings": thaw(self.settings),
            "tasks": [task_dict(t) for t in self.tasks],
            "optimizers": [optimizer_dict(o) for o in self.optimizers],
            "tuning": thaw(self.tuning),
            "trainer": thaw(self.trainer),
            "leaderboard": thaw(self.leaderboard),
            "check": thaw(self.check),
        }


def task_dict(t: TaskSpec) -> dict[str, Any]:
    """A task as the suite resolved it (loadable again as a `tasks:` item)."""
    return {
        "name": t.name,
        "version": t.entry.version,
        "steps": t.steps,
        "batch_size": t.batch_size,
        "eval_every": t.eval_every,
        "metric": t.metric,
        "target": t.target,
        "failure_value": t.failure_value,
        "options": thaw(t.options),
    }


def schedule_dict(s: ScheduleSpec) -> dict[str, Any]:
    return {"name": s.name, "warmup": s.warmup, "cooldown": s.cooldown, "min_lr_ratio": s.min_lr_ratio}


def optimizer_dict(o: OptimizerSpec) -> dict[str, Any]:
    """An optimizer as the suite resolved it (loadable again as an `optimizers:` item)."""
    space: Mapping[str, Param] = o.search_space
    return {
        "name": o.entry.name,
        "label": o.label,
        "search_space": {k: p.to_dict() for k, p in space.items()},
        "fixed": thaw(o.fixed),
        "schedule": schedule_dict(o.schedule),
        "decay_filter": o.decay_filter,
        "ema": o.ema,
        "batch_size": o.batch_size,
    }
