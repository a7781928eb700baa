"""Rotational variants of AdamW, SGD with momentum and Lion (declarations; torch-free).

Each neuron's weight vector keeps its norm and turns by the angle the base optimizer with weight decay
would reach at equilibrium, `eta_r` per step, from the first step on; vectors, embeddings and anything
without weight decay take the base optimizer's plain step. The rule and the three `eta_r` are in
`bench.optimizers.rv` (bench's own implementation: no package ships them). Kosson, Messmer & Jaggi
2024, Rotational Equilibrium: How Weight Decay Balances Learning Across Neural Networks.

- `rotational_adamw`: `eta_r = sqrt(2 lr wd (1 - b1) / (1 + b1))`
- `rotational_sgd`:   `eta_r = sqrt(2 lr wd / (1 + mu))`
- `rotational_lion`:  `eta_r = sqrt(pi/2) sqrt(2 lr wd) sqrt((1 - b1)^2 + b1^2 (1 - b2) / (1 + b2))`

The defaults are those of `adamw`, `sgd` and `lion`, so a suite compares each pair at equal settings;
`lr` and `weight_decay` matter through their product.
"""

from __future__ import annotations

from bench.optimizers.adam import ADAM_DEFAULTS, adam_space
from bench.optimizers.base import OptimizerEntry, grouped, lazy
from bench.space import Float

PAPER = "Kosson, Messmer & Jaggi 2024, Rotational Equilibrium: How Weight Decay Balances Learning Across Neural Networks"
RV = {"update_norm_decay": 0.9}  # the authors' default: the running update norm's decay

ENTRIES: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        name="rotational_adamw",
        source="bench.optimizers.rv.RotationalAdamW (own implementation)",
        paper=PAPER,
        build_fn=grouped(lazy("bench.optimizers.rv:RotationalAdamW")),
        defaults={**ADAM_DEFAULTS, **RV},
        search_space=adam_space(),
    ),
    OptimizerEntry(
        name="rotational_sgd",
        source="bench.optimizers.rv.RotationalSGD (own implementation)",
        paper=PAPER,
        build_fn=grouped(lazy("bench.optimizers.rv:RotationalSGD")),
        defaults={"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, **RV},
        search_space={
            "lr": Float(1e-3, 1.0, log=True),
            "one_minus_momentum": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-5, 1e-2, log=True),
        },
        lr_scaling="linear",
    ),
    OptimizerEntry(
        name="rotational_lion",
        source="bench.optimizers.rv.RotationalLion (own implementation)",
        paper=PAPER,
        build_fn=grouped(lazy("bench.optimizers.rv:RotationalLion")),
        defaults={"lr": 3e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, **RV},
        search_space={
            "lr": Float(1e-5, 3e-3, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "one_minus_beta2": Float(1e-3, 0.1, log=True),
            "weight_decay": Float(1e-2, 3.0, log=True),
        },
    ),
)
