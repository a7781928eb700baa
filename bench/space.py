"""Search spaces as plain data, independent of Optuna.

A search space maps a hyperparameter name to a `Float`, `Int` or `Categorical`. Names follow
`torch.optim` keywords (`lr`, `weight_decay`, `momentum`, `eps`); `beta1`/`beta2` become `betas`, and a
name `one_minus_X` is sampled as 1 - X (AlgoPerf's trick: log-uniform in 1 - beta1 spreads samples
where they matter). `bench.search` turns these into Optuna distributions; `grid` is the grid protocol's
space, here so that `bench.plan` can count its points without importing Optuna.

In YAML a parameter is written `{low: 1e-4, high: 1e-1, log: true}`, `{low: 1, high: 8, type: int}`
or `{choices: [true, false]}`; `parse_param` reads that form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}]{' log' if self.log else ''}"


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "type": "int"}

    def __str__(self) -> str:
        return f"{{{self.low}..{self.high}}}{' log' if self.log else ''}"


@dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"choices": list(self.choices)}

    def __str__(self) -> str:
        return "{" + ", ".join(map(str, self.choices)) + "}"


Param = Float | Int | Categorical
SearchSpace = Mapping[str, Param]

GRID_POINTS = 4  # default points per continuous axis of the grid protocol (`tuning.grid_points`)


def grid(space: Mapping[str, Param], points: int = GRID_POINTS) -> dict[str, list[Any]]:
    """A grid over `space`: `points` values per continuous axis (log-spaced on log axes)."""
    axes: dict[str, list[Any]] = {}
    for name, p in space.items():
        if isinstance(p, Categorical):
            axes[name] = list(p.choices)
        elif isinstance(p, Int):
            vals = np.geomspace(p.low, p.high, points) if p.log else np.linspace(p.low, p.high, points)
            axes[name] = sorted({int(round(v)) for v in vals})
        else:
            vals = np.geomspace(p.low, p.high, points) if p.log else np.linspace(p.low, p.high, points)
            axes[name] = [float(v) for v in vals]
    return axes


def grid_size(space: Mapping[str, Param], points: int = GRID_POINTS) -> int:
    """Points of `grid(space, points)`: the most trials the grid protocol runs (1 for an empty space)."""
    return math.prod(len(v) for v in grid(space, points).values()) if space else 1


class SpaceError(ValueError):
    """A malformed parameter; `key` is the sub-key at fault (e.g. 'low'), '' for the whole entry."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


def parse_param(raw: Any) -> Param:
    """Read the YAML form of one parameter, raising SpaceError with the offending sub-key."""
    if not isinstance(raw, Mapping):
        raise SpaceError("", f"expected a mapping like {{low: 1e-4, high: 1e-1, log: true}}, got {raw!r}")
    unknown = set(raw) - {"low", "high", "log", "type", "choices"}
    if unknown:
        key = sorted(unknown)[0]
        raise SpaceError(key, f"unknown key '{key}'; expected low, high, log, type or choices")
    if "choices" in raw:
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError("choices", f"expected a non-empty list, got {choices!r}")
        return Categorical(tuple(choices))
    for key in ("low", "high"):
        if key not in raw:
            raise SpaceError(key, f"missing '{key}'")
        if isinstance(raw[key], bool) or not isinstance(raw[key], int | float):
            raise SpaceError(key, f"expected a number, got {raw[key]!r}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError("log", f"expected true or false, got {log!r}")
    kind = raw.get("type", "float")
    if kind not in ("float", "int"):
        raise SpaceError("type", f"expected 'float' or 'int', got {kind!r}")
    low, high = raw["low"], raw["high"]
    if low > high:
        raise SpaceError("low", f"must be <= high ({high}), got {low}")
    if log and low <= 0:
        raise SpaceError("low", f"must be > 0 for a log scale, got {low}")
    if kind == "int":
        if int(low) != low or int(high) != high:
            raise SpaceError("low", f"expected integers for type: int, got {low}, {high}")
        return Int(int(low), int(high), log)
    return Float(float(low), float(high), log)


def to_kwargs(defaults: Mapping[str, Any], sampled: Mapping[str, Any]) -> dict[str, Any]:
    """Merge defaults with sampled values and map search names to optimizer keywords.

    `one_minus_beta1: 0.1` -> `beta1: 0.9`; `beta1`, `beta2` -> `betas: (beta1, beta2)` (and `beta3`
    for three-beta optimizers like AdEMAMix).
    """
    merged: dict[str, Any] = dict(defaults)
    for name, value in sampled.items():
        if name.startswith("one_minus_"):
            merged.pop(name, None)
            merged[name.removeprefix("one_minus_")] = 1.0 - value
        else:
            merged[name] = value
    betas = [merged.pop(b) for b in ("beta1", "beta2", "beta3") if b in merged]
    if betas:
        merged["betas"] = tuple(betas)
    return merged
