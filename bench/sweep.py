"""The points of the `sweep` protocol (Zhao et al. 2024): a learning-rate grid, its extensions, and the
1-D sweeps of the other hyperparameters at the best learning rate. Pure: no Optuna, no torch.

`bench.plan` counts the points, `bench.engine` creates one Optuna study per stage with them (through
`bench.search`'s slots, so every point is an ordinary trial), `bench.robustness` scores the curves.

A study `<suite>.<task>.<label>` runs in stages, each an Optuna study created exactly once:

    <study>          the lr grid: `lr_points` learning rates 10^(j / per_decade) (j integer), centred on
                     the geometric middle of the optimizer's lr range, every other hyperparameter at its
                     default. The grid has the same width, (lr_points - 1) / per_decade decades, and the
                     same points per decade for every optimizer.
    <study>.lr-1 ... while the best lr sits at an edge of the lrs swept so far (failed points count as
                     swept: a diverged lr beyond the best bounds it), one more lr beyond that edge, at
                     most `extend` of them. An optimum still at an edge after that is flagged.
    <study>.sweep    at the best lr, a 1-D sweep of each swept hyperparameter, the others at their
                     defaults: on a log axis `points` values around its default at the lr grid's
                     spacing (half below, half above: default x 10^(k / per_decade)), those inside
                     its search range; on a linear axis `points` values evenly over its range; every
                     choice of a categorical. Then each warmup of `warmup`, for optimizers that follow
                     a schedule. The centre of each 1-D curve (every hyperparameter at its default)
                     is the best lr point itself, so a value equal to the default is not run twice.
    <study>.seeds    (seeds > 1) the best point of every stage, rerun on the other seeds.

The default of a searched name is read from the optimizer's keyword arguments (its defaults and the
suite's `fixed:`): `one_minus_beta1` is 1 - betas[0]; a name without a default sits at the middle of its
range (geometric on log axes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.schema import SweepSpec
from bench.space import Categorical, Float, Int, Param, grid

LR = "lr"
WARMUP = "warmup"  # the axis of a warmup sweep
SWEEP_STAGE = "sweep"  # suffix of the 1-D sweeps' study


@dataclass(frozen=True)
class Point:
    """One trial of a sweep: its searched values (every name of the space), the axis it lies on and
    its value there, and the schedule's warmup when the point overrides it."""

    params: Mapping[str, Any]
    axis: str  # LR, a searched name, or WARMUP
    value: Any
    scale: str  # how the axis is spaced: "log", "linear" or "choice" (`scale_of`)
    warmup: float | None = None


def scale_of(param: Param) -> str:
    """How a hyperparameter's axis is spaced: "log", "linear" or "choice" (a categorical)."""
    return "choice" if isinstance(param, Categorical) else "log" if param.log else "linear"


def lr_stage(study: str, k: int) -> str:
    """Name of the k-th extension stage (k >= 1) of a study's lr grid."""
    return f"{study}.lr-{k}"


def sweep_stage(study: str) -> str:
    return f"{study}.{SWEEP_STAGE}"


def lr_at(j: int, per_decade: int) -> float:
    """The j-th learning rate of a grid with `per_decade` points per decade: 10^(j / per_decade), to 6
    significant digits (so that a point is written the same in every store and file)."""
    return float(f"{10 ** (j / per_decade):.6g}")


def lr_index(lr: float, per_decade: int) -> int:
    """The grid index j of a learning rate of `lr_at`."""
    return round(math.log10(lr) * per_decade)


def lr_grid(param: Param, spec: SweepSpec) -> list[float]:
    """The first stage's learning rates: `spec.lr_points` consecutive grid points centred on the geometric
    middle of `param`'s range (one more above the middle when the count is even)."""
    if not isinstance(param, Float) or not param.log or param.low <= 0:
        raise ValueError(f"the sweep protocol needs a log-scale lr range, got {param}")
    middle = round((math.log10(param.low) + math.log10(param.high)) / 2 * spec.per_decade)
    first = middle - (spec.lr_points - 1) // 2
    return [lr_at(first + i, spec.per_decade) for i in range(spec.lr_points)]


def default_of(name: str, param: Param, kwargs: Mapping[str, Any]) -> Any:
    """The value a searched name takes at the optimizer's defaults (`kwargs`: `bench.space.to_kwargs` of
    its defaults and fixed values): `one_minus_beta1` -> 1 - betas[0]; else the middle of its range."""
    base = name.removeprefix("one_minus_")
    value: Any = kwargs.get(base)
    if value is None and base.startswith("beta") and base[4:].isdigit() and "betas" in kwargs:
        betas, i = kwargs["betas"], int(base[4:]) - 1
        value = betas[i] if isinstance(betas, list | tuple) and i < len(betas) else None
    if value is not None and not isinstance(value, bool) and isinstance(value, int | float):
        value = 1.0 - value if name.startswith("one_minus_") else value
        return int(value) if isinstance(param, Int) else float(value)
    if value is not None and isinstance(param, Categorical) and value in param.choices:
        return value
    if isinstance(param, Categorical):
        return param.choices[0]
    middle = math.sqrt(param.low * param.high) if param.log else (param.low + param.high) / 2
    return int(round(middle)) if isinstance(param, Int) else float(middle)


def centre(space: Mapping[str, Param], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Every searched name at its default (the lr included; the stages replace it)."""
    return {name: default_of(name, p, kwargs) for name, p in space.items()}


def swept_params(spec: SweepSpec, space: Mapping[str, Param]) -> list[str]:
    """The hyperparameters of `space` that get a 1-D sweep: `spec.params` (those this space has), or by
    default every searched name but the lr."""
    names = list(space) if spec.params is None else list(spec.params)
    return [n for n in names if n in space and n != LR]


def lr_point(space: Mapping[str, Param], kwargs: Mapping[str, Any], lr: float) -> Point:
    """A point of the lr axis: this lr, every other hyperparameter at its default."""
    return Point({**centre(space, kwargs), LR: lr}, LR, lr, "log")


def first_stage(space: Mapping[str, Param], kwargs: Mapping[str, Any], spec: SweepSpec) -> list[Point]:
    """The lr grid, every other hyperparameter at its default."""
    return [lr_point(space, kwargs, lr) for lr in lr_grid(space[LR], spec)]


def best_lr(rows: Sequence[tuple[float, float | None]]) -> float | None:
    """The lr of the best point of `(lr, value)` rows, values oriented so that lower is better and None
    for a trial that did not complete; ties go to the smaller lr. None when nothing completed."""
    done = [(v, lr) for lr, v in rows if v is not None and math.isfinite(v)]
    return min(done)[1] if done else None


def extension(rows: Sequence[tuple[float, float | None]], per_decade: int) -> float | None:
    """The next lr to try when the best of the lrs swept so far (`rows` as in `best_lr`, every lr
    point of every stage, failed ones included) sits at an edge of them: one grid step beyond that edge.
    None when the best is inside, or when nothing completed."""
    best = best_lr(rows)
    if best is None:
        return None
    swept = sorted({lr for lr, _ in rows})
    if best == swept[0]:
        return lr_at(lr_index(best, per_decade) - 1, per_decade)
    if best == swept[-1]:
        return lr_at(lr_index(best, per_decade) + 1, per_decade)
    return None


def axis_values(param: Param, default: Any, spec: SweepSpec) -> list[Any]:
    """The values of one hyperparameter's 1-D sweep (see the module docstring), the default left out."""
    if isinstance(param, Categorical) or not param.log:
        return [v for v in grid({"p": param}, spec.points)["p"] if not _same(v, default)]
    below = spec.points // 2
    steps = [*range(-below, 0), *range(1, spec.points - below + 1)]
    values = [float(f"{default * 10 ** (k / spec.per_decade):.6g}") for k in steps]
    values = [v for v in values if param.low * (1 - 1e-9) <= v <= param.high * (1 + 1e-9)]
    if isinstance(param, Int):
        values = sorted({int(round(v)) for v in values} - {default})
    return values


def _same(a: Any, b: Any) -> bool:
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not isinstance(a, int | float)
        or not isinstance(b, int | float)
    ):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def second_stage(
    space: Mapping[str, Param],
    kwargs: Mapping[str, Any],
    spec: SweepSpec,
    lr: float,
    warmup: float | None,
) -> list[Point]:
    """The 1-D sweeps at the best `lr`: each swept hyperparameter's `axis_values`, then each warmup of
    `spec.warmup` (`warmup`: the schedule's own warmup, None for an optimizer without a schedule, which
    gets no warmup sweep). Values equal to the centre are left out: the best lr point is that trial."""
    base = {**centre(space, kwargs), LR: lr}
    points: list[Point] = []
    for name in swept_params(spec, space):
        for value in axis_values(space[name], base[name], spec):
            points.append(Point({**base, name: value}, name, value, scale_of(space[name])))
    if warmup is not None:
        for w in spec.warmup:
            if not _same(w, warmup):
                points.append(Point(dict(base), WARMUP, float(w), "linear", warmup=float(w)))
    return points


def counts(
    space: Mapping[str, Param], kwargs: Mapping[str, Any], spec: SweepSpec, warmup: float | None
) -> tuple[int, int]:
    """(trials every sweep runs, most extra trials its extensions may add) for one study."""
    fixed = spec.lr_points + len(second_stage(space, kwargs, spec, 1.0, warmup))
    return fixed, spec.extend


def trial_space(space: Mapping[str, Param], kwargs: Mapping[str, Any], spec: SweepSpec) -> dict[str, Param]:
    """The search space a sweep's trials are asked for (Optuna records their values in it): each range
    widened to hold its default, and the lr range to hold every grid and extension point."""
    out: dict[str, Param] = {}
    for name, p in space.items():
        if isinstance(p, Categorical):
            out[name] = p
            continue
        values = [default_of(name, p, kwargs)]
        if name == LR:
            grid_lrs = lr_grid(p, spec)
            step = 10 ** (spec.extend / spec.per_decade)
            values += [grid_lrs[0] / step * 0.999, grid_lrs[-1] * step * 1.001]
        low, high = min(p.low, *values), max(p.high, *values)
        out[name] = (
            Int(int(low), int(high), p.log) if isinstance(p, Int) else Float(float(low), float(high), p.log)
        )
    return out
