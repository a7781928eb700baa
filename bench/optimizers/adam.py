"""Adam and its descendants: one second-moment preconditioner per coordinate (or per factor/layer).

Notation: `g` gradient, `m`/`v` first/second moments, `t` the step, `lr`, `wd` weight decay,
`m^ = m / (1 - b1^t)`, `v^ = v / (1 - b2^t)`. Decoupled weight decay is `p = p (1 - lr wd)`.

- `adam` (torch.optim.Adam): `m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
  p -= lr m^ / (sqrt(v^) + eps)`; weight decay is L2 (added to g). Kingma & Ba 2015.
- `adamw` (torch.optim.AdamW): Adam with decoupled weight decay. Loshchilov & Hutter 2019.
- `nadamw` (torch.optim.NAdam, decoupled_weight_decay=True): Adam with a Nesterov look-ahead,
  `p -= lr ((1 - mu_t) g / (1 - P_t) + mu_{t+1} m / (1 - P_{t+1})) / (sqrt(v^) + eps)` with torch's
  momentum schedule `mu_t = b1 (1 - 0.5 * 0.96^(0.004 t))` and `P_t = mu_1 ... mu_t`; decoupled decay.
  Dozat 2016. (AlgoPerf's NAdamW baseline uses a constant `mu = b1` instead of the schedule.)
- `adafactor` (torch.optim.Adafactor): factored second moment `v ~ r c^T / sum(r)` (row and column
  means of g^2) with `b2_t = 1 - t^-0.8`, no first moment, relative step
  `p -= max(eps2, RMS(p)) min(lr, 1/sqrt(t)) g / sqrt(v)`. Shazeer & Stern 2018.
- `adopt` (pytorch_optimizer.ADOPT): normalise by the *previous* second moment, then take momentum:
  `m = b1 m + (1 - b1) clip(g / max(sqrt(v_{t-1}), eps)); p -= lr m; v = b2 v + (1 - b2) g^2`.
  Taniguchi et al. 2024, ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate.
- `ademamix` (pytorch_optimizer.AdEMAMix): a slow EMA `m2 = b3 m2 + (1 - b3) g` mixed in,
  `p -= lr (m^ + alpha m2) / (sqrt(v^) + eps)`. Pagliardini et al. 2024, The AdEMAMix Optimizer.
- `mars` (pytorch_optimizer.MARS, mars_type='adamw'): variance-reduced gradient
  `c = g_t + gamma b1/(1 - b1) (g_t - g_{t-1})`, clipped to unit norm, fed to AdamW.
  Yuan et al. 2024, MARS: Unleashing the Power of Variance Reduction for Training Large Models.
- `adamp` (pytorch_optimizer.AdamP): AdamW whose update is projected off the radial direction `p`
  for scale-invariant weights. Heo et al. 2021, AdamP: Slowing Down the Slowdown for Momentum Optimizers.
- `diffgrad` (pytorch_optimizer.DiffGrad): Adam with the first moment damped by the friction
  `xi = sigmoid(|g_{t-1} - g_t|)`. Dubey et al. 2019, diffGrad: An Optimization Method for CNNs.
- `adalayer` (bench.optimizers.adalayer.Adalayer): Adam with one second-moment scalar per tensor.
- `laprop` (pytorch_optimizer.LaProp): momentum of the *normalised* gradient,
  `v = b2 v + (1 - b2) g^2; m = b1 m + (1 - b1) g / (sqrt(v^) + eps); p = p (1 - lr wd) - lr m^`.
  Ziyin et al. 2020, LaProp: Separating Momentum and Adaptivity in Adam.
- `cautious_adamw` (heavyball.AdamW, caution=True): AdamW's update `u` masked where it disagrees in
  sign with the gradient, `u = u * 1[u g > 0] / mean(1[u g > 0])`. Liang et al. 2024, Cautious
  Optimizers: Improving Training with One Line of Code.
- `stableadamw` (pytorch_optimizer.StableAdamW): AdamW whose per-tensor step is cut when the second
  moment lags the gradient, `lr_t = lr / max(1, sqrt(mean(g^2 / v)))` (AdaFactor's update clipping).
  Wortsman et al. 2023, Stable and low-precision training for large-scale vision-language models.
"""

from __future__ import annotations

from typing import Any

from bench.optimizers.base import OptimizerEntry, grouped, lazy
from bench.optimizers.matrix import heavyball_class
from bench.space import Float, Param

ADAM_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1}


def adam_space(
    lr: tuple[float, float] = (1e-5, 1e-2), beta2: bool = True, wd: bool = True
) -> dict[str, Param]:
    """The AlgoPerf-style space of an Adam-like method: log lr, log (1 - beta1), log (1 - beta2), log wd."""
    space: dict[str, Param] = {
        "lr": Float(*lr, log=True),
        "one_minus_beta1": Float(0.01, 0.3, log=True),
    }
    if beta2:
        space["one_minus_beta2"] = Float(1e-3, 0.1, log=True)
    if wd:
        space["weight_decay"] = Float(1e-3, 1.0, log=True)
    return space


ENTRIES: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        name="adam",
        source="torch.optim.Adam",
        paper="Kingma & Ba 2015, Adam: A Method for Stochastic Optimization",
        build_fn=grouped(lazy("torch.optim:Adam")),
        defaults={**ADAM_DEFAULTS, "weight_decay": 0.0},
        search_space=adam_space(wd=False),
        flags=frozenset({"fsdp", "fused"}),
    ),
    OptimizerEntry(
        name="adamw",
        source="torch.optim.AdamW",
        paper="Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization",
        build_fn=grouped(lazy("torch.optim:AdamW")),
        defaults={**ADAM_DEFAULTS},
        search_space=adam_space(),
        flags=frozenset({"fsdp", "fused"}),
    ),
    OptimizerEntry(
        name="nadamw",
        source="torch.optim.NAdam(decoupled_weight_decay=True)",
        paper="Dozat 2016, Incorporating Nesterov Momentum into Adam; Loshchilov & Hutter 2019",
        build_fn=grouped(lazy("torch.optim:NAdam"), decoupled_weight_decay=True),
        defaults={**ADAM_DEFAULTS},
        search_space=adam_space(),
        flags=frozenset({"fsdp"}),
    ),
    OptimizerEntry(
        name="adafactor",
        source="torch.optim.Adafactor",
        paper="Shazeer & Stern 2018, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
        build_fn=grouped(lazy("torch.optim:Adafactor")),
        # lr caps the relative step size min(lr, 1/sqrt(t)), which multiplies RMS(p).
        defaults={"lr": 1e-2, "beta2_decay": -0.8, "weight_decay": 0.01},
        search_space={"lr": Float(1e-4, 1e-1, log=True), "weight_decay": Float(1e-4, 0.3, log=True)},
    ),
    OptimizerEntry(
        name="adopt",
        source="pytorch_optimizer.ADOPT",
        paper="Taniguchi et al. 2024, ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate",
        build_fn=grouped(lazy("pytorch_optimizer:ADOPT"), weight_decouple=True),
        defaults={**ADAM_DEFAULTS, "beta2": 0.9999, "eps": 1e-6},
        search_space={**adam_space(), "one_minus_beta2": Float(1e-5, 1e-2, log=True)},
        flags=frozenset({"fsdp"}),
    ),
    OptimizerEntry(
        name="ademamix",
        source="pytorch_optimizer.AdEMAMix",
        paper="Pagliardini et al. 2024, The AdEMAMix Optimizer: Better, Faster, Older",
        build_fn=grouped(lazy("pytorch_optimizer:AdEMAMix"), weight_decouple=True),
        # beta3 0.999 (not the paper's 0.9999): the slow EMA must fit in the short runs we benchmark.
        defaults={**ADAM_DEFAULTS, "beta3": 0.999, "alpha": 5.0},
        search_space={
            **adam_space(),
            "one_minus_beta3": Float(1e-4, 1e-2, log=True),
            "alpha": Float(1.0, 10.0, log=True),
        },
        flags=frozenset({"fsdp"}),
    ),
    OptimizerEntry(
        name="mars",
        source="pytorch_optimizer.MARS(mars_type='adamw')",
        paper="Yuan et al. 2024, MARS: Unleashing the Power of Variance Reduction for Training Large Models",
        # optimize_1d=True: vectors follow the same (scheduled) lr instead of a separate `lr_1d`.
        build_fn=grouped(
            lazy("pytorch_optimizer:MARS"), mars_type="adamw", optimize_1d=True, weight_decouple=True
        ),
        defaults={**ADAM_DEFAULTS, "lr": 3e-3, "beta1": 0.95, "beta2": 0.99, "gamma": 0.025},
        search_space={**adam_space(lr=(1e-4, 3e-2)), "gamma": Float(1e-3, 0.1, log=True)},
    ),
    OptimizerEntry(
        name="adamp",
        source="pytorch_optimizer.AdamP",
        paper="Heo et al. 2021, AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights",
        build_fn=grouped(lazy("pytorch_optimizer:AdamP"), weight_decouple=True),
        defaults={**ADAM_DEFAULTS},
        search_space=adam_space(),
    ),
    OptimizerEntry(
        name="diffgrad",
        source="pytorch_optimizer.DiffGrad",
        paper="Dubey et al. 2019, diffGrad: An Optimization Method for Convolutional Neural Networks",
        build_fn=grouped(lazy("pytorch_optimizer:DiffGrad"), weight_decouple=True),
        defaults={**ADAM_DEFAULTS},
        search_space=adam_space(),
        flags=frozenset({"fsdp"}),
    ),
    OptimizerEntry(
        name="adalayer",
        source="bench.optimizers.adalayer.Adalayer (own implementation)",
        paper="Zhao et al. 2024, Deconstructing What Makes a Good Optimizer for Language Models",
        build_fn=grouped(lazy("bench.optimizers.adalayer:Adalayer")),
        defaults={**ADAM_DEFAULTS},
        search_space=adam_space(),
    ),
    OptimizerEntry(
        name="laprop",
        source="pytorch_optimizer.LaProp",
        paper="Ziyin et al. 2020, LaProp: Separating Momentum and Adaptivity in Adam",
        build_fn=grouped(lazy("pytorch_optimizer:LaProp"), weight_decouple=True),
        defaults={**ADAM_DEFAULTS, "eps": 1e-15},
        search_space=adam_space(),
        flags=frozenset({"fsdp"}),
    ),
    OptimizerEntry(
        name="cautious_adamw",
        source="heavyball.AdamW(caution=True)",
        paper="Liang et al. 2024, Cautious Optimizers: Improving Training with One Line of Code",
        build_fn=heavyball_class("AdamW", caution=True),
        defaults={**ADAM_DEFAULTS},
        search_space=adam_space(),
    ),
    OptimizerEntry(
        name="stableadamw",
        source="pytorch_optimizer.StableAdamW",
        paper="Wortsman et al. 2023, Stable and low-precision training for large-scale vision-language models",
        build_fn=grouped(lazy("pytorch_optimizer:StableAdamW"), weight_decouple=True),
        defaults={**ADAM_DEFAULTS, "beta2": 0.99},
        search_space=adam_space(),
    ),
)
