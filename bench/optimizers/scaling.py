"""Transfer a tuned learning rate to another batch size.

    scale_lr(3e-4, "sqrt", from_batch=64, to_batch=256)    # 6e-4

`linear` (lr proportional to the batch: Goyal et al. 2017) suits SGD-like methods, `sqrt` (lr
proportional to the square root of the batch: Krizhevsky 2014; Malladi et al. 2022, On the SDEs and
Scaling Rules for Adaptive Gradient Algorithms) suits Adam-like ones, `none` keeps the lr (parameter-free
methods). Each entry's rule is `OptimizerEntry.lr_scaling`.
"""

from __future__ import annotations

import math


def scale_lr(lr: float, rule: str, from_batch: int, to_batch: int) -> float:
    """`lr` tuned at `from_batch`, rescaled for `to_batch` by `rule` (linear, sqrt or none)."""
    if from_batch <= 0 or to_batch <= 0:
        raise ValueError(f"batch sizes must be positive, got {from_batch} and {to_batch}")
    ratio = to_batch / from_batch
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    if rule == "none":
        return lr
    raise ValueError(f"unknown lr scaling rule {rule!r}; expected linear, sqrt or none")
