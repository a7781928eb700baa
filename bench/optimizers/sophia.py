"""Sophia-H: a clipped diagonal second-order method with a Hutchinson estimate of the Hessian diagonal.

`sophia` (pytorch_optimizer.SophiaH). Every `update_period` steps the optimizer draws `u ~ N(0, I)` and
estimates `h^ = u * (H u)` with a Hessian-vector product through the gradient graph, so the runner must
call `loss.backward(create_graph=True)` (flag `create_graph`). Then, with `rho` the clip threshold
(`p` in the library):

    m = b1 m + (1 - b1) g
    h = b2 h + (1 - b2) h^                       (on Hessian steps only)
    p = p (1 - lr wd) - lr clip(m / max(h, eps), -rho, rho)

The largest step per coordinate is `lr rho` (6e-4 at the defaults), sign-descent-like where the
curvature is small. Liu et al. 2024, Sophia: A Scalable Stochastic Second-order Optimizer for Language
Model Pre-training.

This lr is ~100x the paper's (whose clip threshold is folded differently), so the decoupled weight decay
`lr wd` needs a ~100x smaller `wd` than AdamW's: the default 1e-3 gives 6e-5 per step.
"""

from __future__ import annotations

from bench.optimizers.base import OptimizerEntry, grouped, lazy
from bench.space import Float

ENTRIES: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        name="sophia",
        source="pytorch_optimizer.SophiaH",
        paper="Liu et al. 2024, Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training",
        build_fn=grouped(lazy("pytorch_optimizer:SophiaH"), weight_decouple=True),
        defaults={
            "lr": 0.06,
            "beta1": 0.96,
            "beta2": 0.99,
            "weight_decay": 1e-3,
            "p": 0.01,
            "update_period": 10,
        },
        search_space={
            "lr": Float(3e-3, 0.3, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-5, 3e-2, log=True),
        },
        flags=frozenset({"create_graph"}),
    ),
)
