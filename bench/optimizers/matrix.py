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

heavyball compiles its kernels with `torch.compile` by default; on CPU we switch that off
(`heavyball.utils.compile_mode = None`) because compilation costs more than it saves on small runs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from bench.optimizers.base import OptimizerEntry, grouped, lazy
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
    from bench.optimizers.param_groups import decays, muon_split

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
    hidden, rest = muon_split(model)
    decay = decays(model) if decay_filter else {id(p): True for p in rest}
    groups = [
        {"params": hidden, "use_muon": True, "weight_decay": wd, "ns_dtype": ns_dtype},
        {"params": [p for p in rest if decay[id(p)]], "weight_decay": wd, **adamw},
        {"params": [p for p in rest if not decay[id(p)]], "weight_decay": 0.0, **adamw},
    ]
    return muon_class()([g for g in groups if g["params"]], **kwargs)


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


def build_psgd_kron(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
    import heavyball

    heavyball_compile_for(model)
    return grouped(heavyball.PSGDKron)(model, kwargs, decay_filter)


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
        build_fn=build_psgd_kron,
        defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.01},
        search_space={
            "lr": Float(1e-5, 1e-2, log=True),
            "one_minus_beta1": Float(0.01, 0.3, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
    ),
)
