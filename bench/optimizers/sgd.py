"""SGD-like optimizers: momentum SGD, sign methods (Signum, Lion) and SGD-SaI.

`g` is the gradient, `m` the momentum buffer, `lr` the learning rate, `wd` the weight decay.

- `sgd` (torch.optim.SGD): `m = mu m + g + wd p; p -= lr m` (Nesterov: `p -= lr (g + mu m)`).
  Robbins & Monro 1951; Polyak 1964; Sutskever et al. 2013.
- `signum` (pytorch_optimizer.SignSGD): `m = beta m + (1 - beta) g; p = p (1 - lr wd) - lr sign(m)`.
  Bernstein et al. 2018, signSGD: Compressed Optimisation for Non-Convex Problems.
- `lion` (pytorch_optimizer.Lion): `u = sign(beta1 m + (1 - beta1) g); m = beta2 m + (1 - beta2) g;
  p = p (1 - lr wd) - lr u`. Chen et al. 2023, Symbolic Discovery of Optimization Algorithms.
- `sgd_sai` (pytorch_optimizer.SGDSaI): per tensor, once at the first step, the gradient
  signal-to-noise ratio `s = ||g_0|| / std(g_0)` (`||g_0||` for vectors); then
  `m = mu m + (1 - mu) g; p = p (1 - lr wd) - lr s m`. Xu et al. 2024, No More Adam: Learning Rate
  Scaling at Initialization is All You Need.
"""

from __future__ import annotations

from bench.optimizers.base import OptimizerEntry, grouped, lazy
from bench.space import Float

ENTRIES: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        name="sgd",
        source="torch.optim.SGD",
        paper="Robbins & Monro 1951; Polyak 1964 (momentum); Sutskever et al. 2013 (Nesterov)",
        build_fn=grouped(lazy("torch.optim:SGD")),
        defaults={"lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4},
        search_space={
            "lr": Float(1e-3, 1.0, log=True),
            "one_minus_momentum": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-5, 1e-2, log=True),
        },
        flags=frozenset({"fsdp", "fused"}),
        lr_scaling="linear",
    ),
    OptimizerEntry(
        name="signum",
        source="pytorch_optimizer.SignSGD",
        paper="Bernstein et al. 2018, signSGD: Compressed Optimisation for Non-Convex Problems",
        build_fn=grouped(lazy("pytorch_optimizer:SignSGD"), weight_decouple=True),
        defaults={"lr": 3e-4, "momentum": 0.9, "weight_decay": 0.1},
        search_space={
            "lr": Float(1e-5, 1e-2, log=True),
            "one_minus_momentum": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
        flags=frozenset({"fsdp"}),
        lr_scaling="sqrt",
    ),
    OptimizerEntry(
        name="lion",
        source="pytorch_optimizer.Lion",
        paper="Chen et al. 2023, Symbolic Discovery of Optimization Algorithms",
        build_fn=grouped(lazy("pytorch_optimizer:Lion"), weight_decouple=True),
        # The paper's advice: an lr 3-10x smaller and a weight decay 3-10x larger than AdamW's.
        defaults={"lr": 3e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1},
        search_space={
            "lr": Float(1e-5, 3e-3, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "one_minus_beta2": Float(1e-3, 0.1, log=True),
            "weight_decay": Float(1e-2, 3.0, log=True),
        },
        flags=frozenset({"fsdp"}),
        lr_scaling="sqrt",
    ),
    OptimizerEntry(
        name="sgd_sai",
        source="pytorch_optimizer.SGDSaI",
        paper="Xu et al. 2024, No More Adam: Learning Rate Scaling at Initialization is All You Need",
        build_fn=grouped(lazy("pytorch_optimizer:SGDSaI"), weight_decouple=True),
        defaults={"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.01, "eps": 1e-8},
        search_space={
            "lr": Float(1e-5, 1e-1, log=True),
            "one_minus_momentum": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-4, 0.5, log=True),
        },
        lr_scaling="linear",
    ),
)
