"""Sharpness-aware minimisation: a second forward-backward at perturbed weights (flag `closure`).

`sam` (pytorch_optimizer.SAM around torch.optim.AdamW). With the batch's gradient `g` already computed,
`step(closure)` perturbs the weights towards higher loss, `e = rho g / ||g||` (global norm), calls the
closure for the gradient at `p + e`, restores `p` and lets AdamW step with that gradient:

    g_sam = grad L(p + rho g / ||g||);   p = AdamW(p, g_sam)

Each step costs two forward-backward passes. The runner trains closure optimizers with Lightning's
manual optimization (see `bench.run`); gradient accumulation is refused for them. Foret et al. 2021,
Sharpness-Aware Minimization for Efficiently Improving Generalization.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.optimizers.adam import ADAM_DEFAULTS, adam_space
from bench.optimizers.base import OptimizerEntry, grouped
from bench.space import Float

if TYPE_CHECKING:
    import torch


def sam_adamw(params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """pytorch_optimizer.SAM with torch.optim.AdamW as its base optimizer."""
    import torch
    from pytorch_optimizer import SAM

    return SAM(params, base_optimizer=torch.optim.AdamW, **kwargs)


ENTRIES: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        name="sam",
        source="pytorch_optimizer.SAM(base_optimizer=torch.optim.AdamW)",
        paper="Foret et al. 2021, Sharpness-Aware Minimization for Efficiently Improving Generalization",
        build_fn=grouped(sam_adamw),
        defaults={**ADAM_DEFAULTS, "rho": 0.05},
        search_space={**adam_space(), "rho": Float(0.005, 0.5, log=True)},
        flags=frozenset({"closure"}),
    ),
)
