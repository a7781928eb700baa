"""Matrix-aware optimizers: Muon, SOAP, Shampoo and PSGD-Kron precondition or orthogonalise whole
weight matrices instead of single coordinates.

`G` is a matrix gradient (m x n), `M` its momentum, `lr` the learning rate.

- `muon` (pytorch_optimizer.Muon): for hidden matrices `M = mu M + G`, Nesterov `U = G + mu M`,
  `p = p (1 - lr wd) - lr sqrt(max(1, m/n)) NS5(U)` where NS5 is five quintic Newton-Schulz iterations
  towards the nearest semi-orthogonal matrix `U V^T` of `U = U S V^T`. Embeddings, the head, biases and
  norms take AdamW (`adamw_lr`, `betas`, `eps`) in the same optimizer. Newton-Schulz runs in
  bfloat16 on CUDA and float32 on CPU (`ns_dtype`). Jordan et al. 2024, Muon: An
  optimizer for hidden layers in neural networks; Liu et al. 2025, Muon is Scalable for LLM Training.
- `soap` (pytorch_optimizer.SOAP): Adam run in the eigenbasis of Shampoo's preconditioner:
  `L = b L + (1 - b) G G^T`, `R = b R + (1 - b) G^T G`, eigenvectors `Q_L, Q_R` refreshed every
  `precondition_frequency` steps; Adam on `Q_L^T G Q_R`, update rotated back. Vyas et al. 2024, SOAP:
  Improving and Stabilizing Shampoo using Adam.
- `shampoo` (pytorch_optimizer.ScalableShampoo): blockwise `L += G G^T`, `R += G^T G` (EMA with beta2),
  direction `L^-1/4 G R^-1/4` (roots recomputed every `preconditioning_compute_steps`), grafted onto the
  per-layer norm of an RMSProp update, with Nesterov momentum. Gupta et al. 2018, Shampoo; Anil et al.
  2020, Scalable Second Order Optimization for Deep Learning.
- `psgd_kron` (heavyball.PSGDKron): `p -= lr Q^T Q m` with a Kronecker-factored `Q` fitted online so that
  `Q^T Q` whitens gradient perturbations. Li 2015/2018, Preconditioned Stochastic Gradient Descent.
- `kron` (pytorch_optimizer.Kron): the same PSGD-Kron rule in pytorch-optimizer's port of Evan Walters'
  `kron_torch`, beside heavyball's: the preconditioner is updated with a probability annealed from 1 to
  0.03 over the first steps (heavyball: its own schedule), momentum feeds the preconditioner fit, and
  dimensions above 8192 get diagonal factors. Both are kept because they differ in these choices.
- `soap_heavyball` (heavyball.SOAP): SOAP as heavyball implements it, beside pytorch-optimizer's
  `soap`: preconditioner refresh on a schedule (every step at first, then less often) and heavyball's
  fused kernels. Same rule, other engineering choices, so both are benchmarked.
- `adamuon` (pytorch_optimizer.AdaMuon): Muon with a second moment of the orthogonalised momentum:
  `M = b1 M + (1 - b1) G; O = NS5(M); v = b2 v + (1 - b2) O^2; U = O / (sqrt(v^) + eps)`, `U` rescaled
  to norm `sqrt(min(m, n))` and stepped with Moonlight's shape-adjusted lr (`0.2 sqrt(max(m, n)) lr`,
  so AdamW-sized learning rates transfer); the rest takes AdamW. Si et al. 2025, AdaMuon: Adaptive
  Muon Optimizer.
- `normuon` (pytorch_optimizer.NorMuon): Muon whose orthogonalised update `O = NS5(nesterov(M))` is
  normalised per row by a running second moment, `v_i = b2 v_i + (1 - b2) mean_j O_ij^2;
  U = O / sqrt(v)`, rescaled to keep the norm of `O`; the rest takes AdamW. Li et al. 2025, NorMuon:
  Making Muon more efficient and scalable.
- `scion` (pytorch_optimizer.SCION, unconstrained): momentum `d = (1 - a) d + a G` and a step along the
  linear minimisation oracle of a norm chosen per layer, `p -= lr s lmo(d)`: spectral (`lmo = -U V^T`,
  scaled by `sqrt(d_out/d_in)`) on hidden matrices with radius `s = scale`, sign (`-sign(d)/d_in`) on
  the head and embeddings with radius `60 scale`, RMS-normalised on vectors. Pethick et al. 2025,
  Training Deep Learning Models with Norm-Constrained LMOs.
- `splus` (pytorch_optimizer.SPlus): Shampoo-style whitening with stable steps: side covariances
  `L = b2 L + (1 - b2) G G^T`, `R` likewise; eigenbases refreshed every `inverse_steps` steps; the update is
  the *sign* of the momentum in that eigenbasis rotated back, scaled by `2 / (m + n)`; evaluation uses an
  EMA of the weights (`.eval()`), so the entry is flagged `schedule_free` (constant lr, no schedule).
  Frans, Levine & Abbeel 2025, A Stable Whitening Optimizer for Efficient Neural Network Training.

heavyball compiles its kernels with `torch.compile` by default; on CPU we switch that off
(`heavyball.utils.compile_mode = None`) because compilation costs more than it saves on small runs.

The Muon family (muon, adamuon, normuon) and Scion build their own groups: the hidden matrices of
`bench.optimizers.param_groups.split_groups` take the matrix rule, everything else AdamW (or, for
Scion, another norm), with `adamw_lr` as its learning rate.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.optimizers.base import OptimizerEntry, grouped, lazy
from bench.registry import Lazy
from bench.space import Float

if TYPE_CHECKING:
    import torch
    from torch import nn


@functools.cache
def muon_class() -> type[torch.optim.Optimizer]:
    """pytorch_optimizer.Muon whose Newton-Schulz dtype is a group option, `ns_dtype`.

    The library iterates in bfloat16, right for GPUs; CPUs without bf16 matmul units run it ~30x
    slower than float32 (15 s per step for a 2.6M-parameter model), so `ns_dtype: auto` picks float32
    off CUDA.
    """
    import torch
    from pytorch_optimizer import Muon
    from pytorch_optimizer.optimizer.utils.matrix import zero_power_via_newton_schulz_5

    class MuonNS(Muon):
        @staticmethod
        def _orthogonalize(group: dict[str, Any], updates: list[torch.Tensor]) -> list[torch.Tensor]:
            dtype = getattr(torch, group.get("ns_dtype", "bfloat16"))
            if dtype == torch.bfloat16 or group.get("ns_method") != "newton_schulz":
                return Muon._orthogonalize(group, updates)
            return [
                zero_power_via_newton_schulz_5(
                    u.reshape(u.size(0), -1),
                    num_steps=group["ns_steps"],
                    weights=group["ns_coeffs"],
                    dtype=dtype,
                )
                for u in updates
            ]

    return MuonNS


def build_muon(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
    """One Muon over both sides: `use_muon=True` for the hidden matrices, AdamW groups (decayed / not
    decayed) for everything else."""
    from bench.optimizers.param_groups import split_groups

    kwargs = dict(kwargs)
    wd = kwargs.pop("weight_decay", 0.0)
    ns_dtype = kwargs.pop("ns_dtype", "auto")
    if ns_dtype == "auto":
        ns_dtype = "bfloat16" if any(p.is_cuda for p in model.parameters()) else "float32"
    adamw = {
        "lr": kwargs.pop("adamw_lr"),
        "betas": kwargs.pop("betas"),
        "eps": kwargs.pop("eps"),
        "use_muon": False,
    }
    groups = split_groups(
        model, wd, decay_filter, hidden={"use_muon": True, "ns_dtype": ns_dtype}, rest=adamw
    )
    return muon_class()(groups, **kwargs)


def heavyball_compile_for(model: nn.Module) -> None:
    """torch.compile heavyball's kernels on CUDA only (the library's default mode there)."""
    import heavyball.utils

    on_cuda = any(p.is_cuda for p in model.parameters())
    heavyball.utils.compile_mode = "max-autotune-no-cudagraphs" if on_cuda else None


def build_shampoo(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
    """ScalableShampoo with RMSProp grafting and decoupled weight decay. Roots every 10 steps from
    step 10: the library's 1000/25 suit runs 100x longer than ours."""
    from pytorch_optimizer import ScalableShampoo
    from pytorch_optimizer.optimizer.utils.graft import LayerWiseGrafting

    return grouped(
        ScalableShampoo,
        graft_type=LayerWiseGrafting.RMSPROP,
        decoupled_weight_decay=True,
        start_preconditioning_step=10,
        preconditioning_compute_steps=10,
    )(model, kwargs, decay_filter)


def heavyball_class(
    name: str, **fixed: Any
) -> Callable[[nn.Module, dict[str, Any], bool], torch.optim.Optimizer]:
    """A `build_fn` for `heavyball.<name>(groups, **fixed, ...)` over the shared groups, compiled on
    CUDA only."""

    def build(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
        import heavyball

        heavyball_compile_for(model)
        return grouped(getattr(heavyball, name), **fixed)(model, kwargs, decay_filter)

    return build


def muon_like(
    target: str, *, adamw_betas: tuple[float, float] = (0.9, 0.95), adamw_eps: float = 1e-8
) -> Callable[[nn.Module, dict[str, Any], bool], torch.optim.Optimizer]:
    """A `build_fn` for a Muon-family class taking `use_muon` groups: the hidden matrices use the
    class's rule, the rest AdamW at `adamw_lr` (a searched hyperparameter)."""

    def build(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
        from bench.optimizers.param_groups import split_groups

        kwargs = dict(kwargs)
        wd = kwargs.pop("weight_decay", 0.0)
        adamw = {"lr": kwargs.pop("adamw_lr"), "betas": adamw_betas, "eps": adamw_eps, "use_muon": False}
        groups = split_groups(model, wd, decay_filter, hidden={"use_muon": True}, rest=adamw)
        return Lazy(target)(groups, **kwargs)

    return build


def build_scion(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
    """SCION with a norm per role: spectral on hidden matrices, sign on the head and embeddings (radius
    x60, the authors' GPT setting), RMS on vectors."""
    from pytorch_optimizer.optimizer.scion import SCION, LMONorm

    from bench.optimizers.param_groups import recorded, split_groups

    kwargs = dict(kwargs)
    wd, scale = kwargs.pop("weight_decay", 0.0), kwargs.pop("scale")
    groups = []
    for group in split_groups(
        model, wd, decay_filter, hidden={"norm_type": LMONorm.SPECTRAL, "scale": scale}
    ):
        if "norm_type" in group:
            groups.append(group)
            continue
        facts = recorded(model)
        for norm, params in (
            (LMONorm.SIGN, [p for p in group["params"] if len(facts[id(p)].shape) >= 2]),
            (LMONorm.BIAS, [p for p in group["params"] if len(facts[id(p)].shape) < 2]),
        ):
            if params:
                radius = 60.0 * scale if norm == LMONorm.SIGN else scale
                groups.append({**group, "params": params, "norm_type": norm, "scale": radius})
    return SCION(groups, **kwargs)


def build_splus(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
    opt = grouped(lazy("pytorch_optimizer:SPlus"))(model, kwargs, decay_filter)
    opt.train()  # the runner switches to .eval() (the EMA weights) around evaluation
    return opt


ENTRIES: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        name="muon",
        source="pytorch_optimizer.Muon (AdamW groups for embeddings, head, vectors)",
        paper="Jordan et al. 2024, Muon: An optimizer for hidden layers in neural networks",
        build_fn=build_muon,
        defaults={
            "lr": 0.02,
            "momentum": 0.95,
            "nesterov": True,
            "ns_steps": 5,
            "ns_dtype": "auto",  # bfloat16 on CUDA, float32 elsewhere
            "weight_decay": 0.01,
            "adamw_lr": 1e-3,
            "beta1": 0.9,
            "beta2": 0.95,
            "eps": 1e-8,
        },
        search_space={
            "lr": Float(1e-3, 0.2, log=True),
            "adamw_lr": Float(1e-4, 1e-2, log=True),
            "weight_decay": Float(1e-4, 0.3, log=True),
        },
        lr_scaling="sqrt",
    ),
    OptimizerEntry(
        name="soap",
        source="pytorch_optimizer.SOAP",
        paper="Vyas et al. 2024, SOAP: Improving and Stabilizing Shampoo using Adam",
        build_fn=grouped(lazy("pytorch_optimizer:SOAP")),
        defaults={
            "lr": 3e-3,
            "beta1": 0.95,
            "beta2": 0.95,
            "eps": 1e-8,
            "weight_decay": 0.01,
            "precondition_frequency": 10,
        },
        search_space={
            "lr": Float(1e-4, 3e-2, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "one_minus_beta2": Float(1e-3, 0.1, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
    ),
    OptimizerEntry(
        name="shampoo",
        source="pytorch_optimizer.ScalableShampoo (RMSProp grafting)",
        paper="Gupta et al. 2018, Shampoo; Anil et al. 2020, Scalable Second Order Optimization for Deep Learning",
        build_fn=build_shampoo,
        defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.01, "block_size": 512},
        search_space={
            "lr": Float(1e-5, 1e-2, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "one_minus_beta2": Float(1e-3, 0.1, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
    ),
    OptimizerEntry(
        name="psgd_kron",
        source="heavyball.PSGDKron",
        paper="Li 2018, Preconditioned Stochastic Gradient Descent (Kronecker-factored preconditioners)",
        build_fn=heavyball_class("PSGDKron"),
        defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.01},
        search_space={
            "lr": Float(1e-5, 1e-2, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
    ),
    OptimizerEntry(
        name="kron",
        source="pytorch_optimizer.Kron",
        paper="Li 2018, Preconditioned Stochastic Gradient Descent (Kronecker-factored preconditioners)",
        build_fn=grouped(lazy("pytorch_optimizer:Kron")),
        defaults={"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.01},
        search_space={
            "lr": Float(1e-5, 1e-2, log=True),
            "one_minus_momentum": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
    ),
    OptimizerEntry(
        name="soap_heavyball",
        source="heavyball.SOAP",
        paper="Vyas et al. 2024, SOAP: Improving and Stabilizing Shampoo using Adam",
        build_fn=heavyball_class("SOAP"),
        defaults={"lr": 3e-3, "beta1": 0.95, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.01},
        search_space={
            "lr": Float(1e-4, 3e-2, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "one_minus_beta2": Float(1e-3, 0.1, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
    ),
    OptimizerEntry(
        name="adamuon",
        source="pytorch_optimizer.AdaMuon (AdamW groups for embeddings, head, vectors)",
        paper="Si et al. 2025, AdaMuon: Adaptive Muon Optimizer",
        build_fn=muon_like("pytorch_optimizer:AdaMuon"),
        # use_adjusted_lr: updates at RMS 0.2 x lr, so the lr is AdamW-sized, not Muon-sized.
        defaults={"lr": 2e-3, "beta1": 0.9, "beta2": 0.95, "weight_decay": 0.01, "adamw_lr": 1e-3},
        search_space={
            "lr": Float(1e-4, 3e-2, log=True),
            "adamw_lr": Float(1e-4, 1e-2, log=True),
            "weight_decay": Float(1e-4, 0.3, log=True),
        },
    ),
    OptimizerEntry(
        name="normuon",
        source="pytorch_optimizer.NorMuon (AdamW groups for embeddings, head, vectors)",
        paper="Li et al. 2025, NorMuon: Making Muon more efficient and scalable",
        build_fn=muon_like("pytorch_optimizer:NorMuon"),
        defaults={"lr": 0.02, "momentum": 0.95, "weight_decay": 0.01, "adamw_lr": 1e-3},
        search_space={
            "lr": Float(1e-3, 0.2, log=True),
            "adamw_lr": Float(1e-4, 1e-2, log=True),
            "weight_decay": Float(1e-4, 0.3, log=True),
        },
    ),
    OptimizerEntry(
        name="scion",
        source="pytorch_optimizer.SCION (spectral / sign / RMS norms by role)",
        paper="Pethick et al. 2025, Training Deep Learning Models with Norm-Constrained LMOs",
        build_fn=build_scion,
        # lr 2^-12 and radius 50: the authors' nanoGPT setting; momentum is the weight of the new gradient.
        defaults={"lr": 2.5e-4, "momentum": 0.1, "scale": 50.0, "weight_decay": 0.0},
        search_space={
            "lr": Float(1e-5, 3e-3, log=True),
            "momentum": Float(0.01, 0.5, log=True),
        },
    ),
    OptimizerEntry(
        name="splus",
        source="pytorch_optimizer.SPlus",
        paper="Frans, Levine & Abbeel 2025, A Stable Whitening Optimizer for Efficient Neural Network Training",
        build_fn=build_splus,
        # inverse_steps 10 (library: 100): our runs are ~100x shorter than the paper's.
        defaults={"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.01, "inverse_steps": 10},
        search_space={
            "lr": Float(1e-3, 1.0, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
        flags=frozenset({"schedule_free"}),
    ),
)
