"""Memory-efficient Adam variants: low-rank gradient projections (GaLore, APOLLO) and one learning
rate per block of parameters (Adam-mini).

`G` is a hidden matrix's gradient (m x n), `P` an r x m projection (r the `rank`), refreshed every
`update_proj_gap` steps. Embeddings, the head and vectors are not projected: they take plain AdamW in
the same optimizer (the groups of `bench.optimizers.param_groups.split_groups`).

- `galore` (pytorch_optimizer.GaLore): Adam on the projected gradient `R = P G` (P from the top-r
  singular vectors of G), projected back and scaled: `p = p (1 - lr wd) - lr scale P^T Adam(R)`.
  Zhao et al. 2024, GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection.
- `apollo` (pytorch_optimizer.APOLLO): Adam moments only in a *random* projection `R = P G`; their
  ratio sets a per-channel scale `s_j = ||Adam(R)_:j|| / ||R_:j||` applied to the raw gradient,
  `p = p (1 - lr wd) - lr scale G s` (norm-growth limited to 1.01x per step): SGD-like memory.
  Zhu et al. 2024, APOLLO: SGD-like Memory, AdamW-level Performance.
- `adam_mini` (adam_mini.Adam_mini, the authors' package, v1.1): Adam whose second moment is one
  scalar per block, `v_b = b2 v_b + (1 - b2) mean_{i in b} g_i^2`. Blocks follow the paper's Hessian
  argument, by the roles a task declares (not by parameter names, as the package does): each output
  neuron (row) of the embeddings, the head and every hidden matrix is a block; vectors keep Adam's
  per-coordinate `v`. A fused query-key-value matrix gets per-row blocks (finer than the paper's
  per-head blocks for Q and K); conv filters get one block per output channel and kernel position.
  Zhang et al. 2024, Adam-mini: Use Fewer Learning Rates To Gain More.

The ranks default to 32 (a quarter of the tiny GPT's width; the papers use 128-512 on 60M-7B models)
and projections are refreshed every 50 steps (the papers: 200) because our runs are short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.optimizers.adam import ADAM_DEFAULTS, adam_space
from bench.optimizers.base import OptimizerEntry
from bench.registry import Lazy
from bench.space import Float

if TYPE_CHECKING:
    import torch
    from torch import nn

PROJECTION = ("rank", "update_proj_gap", "scale", "projection_type")


def projected(target: str, **fixed: Any) -> Any:
    """A `build_fn` for a GaLore-style class: the projection keys go to the hidden-matrix group only."""

    def build(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
        from bench.optimizers.param_groups import split_groups

        kwargs = {**fixed, **kwargs}
        wd = kwargs.pop("weight_decay", 0.0)
        hidden = {k: kwargs.pop(k) for k in PROJECTION if k in kwargs}
        return Lazy(target)(split_groups(model, wd, decay_filter, hidden=hidden), **kwargs)

    return build


def build_adam_mini(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
    """Adam_mini over parameters renamed by declared role (the package partitions by name), with the
    weight decay of the shared filter."""
    from adam_mini import Adam_mini

    from bench.optimizers.param_groups import decays, recorded

    kwargs = dict(kwargs)
    wd = kwargs.pop("weight_decay", 0.0)
    facts = recorded(model)
    named = []
    for i, (_, p) in enumerate(model.named_parameters()):
        if not p.requires_grad:
            continue
        fact = facts[id(p)]
        # the package's keys: "bias" -> Adam per coordinate; "embd", "output", "mlp" -> one v per row
        role = (
            "bias" if len(fact.shape) < 2 else "embd" if fact.embedding else "output" if fact.head else "mlp"
        )
        named.append((f"{role}.{i}", p))
    opt = Adam_mini(named, weight_decay=wd, verbose=False, **kwargs)
    decay = decays(model)
    for group in opt.param_groups:
        (p,) = group["params"]
        group["weight_decay"] = wd if (decay[id(p)] or not decay_filter) else 0.0
    return opt


ENTRIES: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        name="galore",
        source="pytorch_optimizer.GaLore (rank-32 projection of hidden matrices)",
        paper="Zhao et al. 2024, GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection",
        build_fn=projected("pytorch_optimizer:GaLore", projection_type="std"),
        defaults={**ADAM_DEFAULTS, "lr": 3e-3, "rank": 32, "update_proj_gap": 50, "scale": 0.25},
        search_space={**adam_space(lr=(1e-4, 3e-2)), "scale": Float(0.05, 1.0, log=True)},
    ),
    OptimizerEntry(
        name="apollo",
        source="pytorch_optimizer.APOLLO (channel-wise scaling, rank-32 random projection)",
        paper="Zhu et al. 2024, APOLLO: SGD-like Memory, AdamW-level Performance",
        build_fn=projected("pytorch_optimizer:APOLLO", projection_type="std", scale_type="channel"),
        defaults={**ADAM_DEFAULTS, "lr": 3e-3, "rank": 32, "update_proj_gap": 50, "scale": 1.0},
        search_space={**adam_space(lr=(1e-4, 3e-2)), "scale": Float(0.1, 10.0, log=True)},
    ),
    OptimizerEntry(
        name="adam_mini",
        source="adam_mini.Adam_mini (blocks by declared role)",
        paper="Zhang et al. 2024, Adam-mini: Use Fewer Learning Rates To Gain More",
        build_fn=build_adam_mini,
        defaults={**ADAM_DEFAULTS},
        search_space=adam_space(),
    ),
)
