"""A task's scan points, what one optimizer step of a point costs, and how a tuned lr transfers between
points. Pure and instant (no torch): the resolver checks every point with it, the plan makes a study of
each.

    tasks:
      - name: digits_cnn
        scan: {batch_size: [32, 64, 128], options: {width: [8, 16]}, lr: transfer}

stands for the 6 points `digits_cnn@bs32-width8`, `digits_cnn@bs32-width16`, ... (the product of the
axes in the order batch_size, options (as written), steps or tokens; each axis's values as written).
A point is the task's `TaskSpec` with the point's values filled in (`points`); a `tokens` axis becomes
steps through the task's tokens per step at the point's batch size and context length.

`lr: transfer` tunes the first point only; every other point runs the first point's best configuration
once with the lr multiplied by `transfer_factor`: the optimizer's declared rule (`lr_scaling`: linear,
sqrt or none; `bench.optimizers.scaling.scale_lr`) for the ratio of the points' global batch sizes.
Other axes (model size, length) keep the lr: bench declares no rule for them.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping
from typing import Any

from bench.optimizers.scaling import scale_lr
from bench.schema import FrozenMap
from bench.space import to_kwargs
from bench.spec import TaskSpec


def step_scale(task: TaskSpec, accumulate_grad_batches: int = 1) -> float:
    """How much bigger one optimizer step is than the task's declared default (batch x accumulation x
    context length, for tasks with a `block_size` option)."""
    scale = task.batch_size / task.entry.batch_size * accumulate_grad_batches
    block, default_block = task.options.get("block_size"), task.entry.default_options.get("block_size")
    if block and default_block:
        scale *= block / default_block
    return scale


def tokens_per_step(task: TaskSpec, accumulate_grad_batches: int = 1) -> float | None:
    """Tokens one optimizer step consumes with the suite's batch size, accumulation and context."""
    per_step = task.entry.tokens_per_step
    return None if per_step is None else per_step * step_scale(task, accumulate_grad_batches)


def _compact(x: float) -> str:
    """1e6 -> '1M', 2.5e9 -> '2500M', 300 -> '300': no dots, so labels stay one word."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if x >= factor and float(x / factor).is_integer():
            return f"{int(x / factor)}{suffix}"
    return f"{x:g}".replace(".", "p").replace("+", "")


def _value_label(value: Any) -> str:
    text = _compact(value) if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text.replace(".", "p"))


def axis_label(axis: str, value: Any) -> str:
    """`batch_size` 256 -> 'bs256', `steps` 400 -> 's400', `tokens` 1e6 -> 't1M', `options.width` 32 ->
    'width32'."""
    if axis == "batch_size":
        return f"bs{value}"
    if axis == "steps":
        return f"s{value}"
    if axis == "tokens":
        return f"t{_compact(float(value))}"
    return f"{axis.removeprefix('options.')}{_value_label(value)}"


def points(task: TaskSpec, accumulate_grad_batches: int = 1) -> tuple[TaskSpec, ...]:
    """The task's scan points in product order (the task itself when it has no scan)."""
    if task.scan is None:
        return (task,)
    axes = task.scan.axes
    out = []
    for combo in itertools.product(*(values for _, values in axes)):
        batch, steps, options, tokens = task.batch_size, task.steps, dict(task.options), None
        for (axis, _), value in zip(axes, combo, strict=True):
            if axis == "batch_size":
                batch = value
            elif axis == "steps":
                steps = value
            elif axis == "tokens":
                tokens = value
            else:
                options[axis.removeprefix("options.")] = value
        point = dataclasses.replace(
            task,
            batch_size=batch,
            steps=steps,
            options=FrozenMap(options),
            scan=None,
            point="-".join(axis_label(a, v) for (a, _), v in zip(axes, combo, strict=True)),
            axes=FrozenMap({a: v for (a, _), v in zip(axes, combo, strict=True)}),
        )
        if tokens is not None:
            per_step = tokens_per_step(point, accumulate_grad_batches) or 1.0
            point = dataclasses.replace(point, steps=max(1, round(tokens / per_step)))
        out.append(point)
    return tuple(out)


def transfer_factor(rule: str, source: TaskSpec, point: TaskSpec, accumulate_grad_batches: int = 1) -> float:
    """What the source point's tuned lr is multiplied by at `point` (`lr_scaling` rule on the global
    batch sizes)."""
    return scale_lr(
        1.0, rule, source.batch_size * accumulate_grad_batches, point.batch_size * accumulate_grad_batches
    )


def transferred_hparams(
    best: Mapping[str, Any], defaults: Mapping[str, Any], fixed: Mapping[str, Any], factor: float
) -> dict[str, Any]:
    """The source point's best hyperparameters (search names) with the lr multiplied by `factor`; an lr
    that was not searched (fixed, or the entry's default) is scaled all the same."""
    out = dict(best)
    if "lr" in out:
        out["lr"] = out["lr"] * factor
        return out
    lr = to_kwargs(defaults, {**fixed, **best}).get("lr")
    if isinstance(lr, int | float) and not isinstance(lr, bool):
        out["lr"] = lr * factor
    return out
