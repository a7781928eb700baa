"""Parameter groups shared by every optimizer entry: the weight-decay filter and the Muon split.

The weight-decay rule (timm's `param_groups_weight_decay`, nanoGPT's `configure_optimizers`) is one
visible line: a parameter decays unless it is a vector or scalar (`ndim < 2`: biases, norm gains) or
an embedding (the weight of an `nn.Embedding`, or a name the model lists in `no_weight_decay()`, the
timm convention for `pos_embed`, `cls_token`, ...).

Muon orthogonalises the *hidden* matrices only. `muon_split` puts embeddings, the output head,
biases and norms on the AdamW side. The head is every `nn.Linear` whose attribute name is one of
`HEAD_NAMES` (`lm_head`, `head`, `fc`, `classifier`, `output`); a model with none of those names has
its last registered `nn.Linear` as head (the classifier of an `nn.Sequential`, whatever its index).

    groups = param_groups(model, weight_decay=0.1)          # decayed group first, then the rest
    opt = torch.optim.AdamW(groups, lr=1e-3)

FSDP hands the optimizer each parameter as a flat 1-D shard, so `ndim` can't be read off it then.
`remember_shapes(model)`, called on the unwrapped model (BenchModule does), records every parameter's
shape; the rules above read the recorded shape when there is one (FSDP keeps the Parameter objects).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

HEAD_NAMES = frozenset({"lm_head", "head", "fc", "classifier", "output"})


_SHAPES = WeakIdKeyDictionary()  # parameter -> shape as built (keyed by identity, not tensor ==)


def remember_shapes(model: nn.Module) -> None:
    """Record each parameter's shape now, before a sharding wrapper flattens it."""
    for p in model.parameters():
        _SHAPES.setdefault(p, p.shape)


def ndim(p: torch.Tensor) -> int:
    """The parameter's number of dimensions as built (see `remember_shapes`)."""
    shape = _SHAPES.get(p)
    return p.ndim if shape is None else len(shape)


def embedding_param_ids(model: nn.Module) -> set[int]:
    """ids of embedding parameters: `nn.Embedding` weights and names in `model.no_weight_decay()`."""
    ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    named = getattr(model, "no_weight_decay", None)
    if callable(named):
        names = set(named())
        ids |= {id(p) for n, p in model.named_parameters() if n in names}
    return ids


def decays(model: nn.Module) -> dict[int, bool]:
    """id(param) -> whether the param gets weight decay under the filter."""
    embeddings = embedding_param_ids(model)
    return {id(p): ndim(p) >= 2 and id(p) not in embeddings for p in model.parameters()}


def param_groups(
    model: nn.Module, weight_decay: float, decay_filter: bool = True, **extra: Any
) -> list[dict[str, Any]]:
    """Trainable parameters in at most two groups: `weight_decay` on matrices, 0 on the rest.

    With `decay_filter=False` every parameter decays (one group). `extra` keys go into every group.
    Empty groups are left out; parameters shared between modules appear once.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not decay_filter:
        return [{"params": params, "weight_decay": weight_decay, **extra}]
    decay = decays(model)
    groups = [
        {"params": [p for p in params if decay[id(p)]], "weight_decay": weight_decay, **extra},
        {"params": [p for p in params if not decay[id(p)]], "weight_decay": 0.0, **extra},
    ]
    return [g for g in groups if g["params"]]


def head_param_ids(model: nn.Module) -> set[int]:
    """ids of the output head's parameters (see the module docstring for the rule)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    heads = [m for name, m in linears if name.rsplit(".", 1)[-1] in HEAD_NAMES] or [
        m for _, m in linears[-1:]
    ]
    return {id(p) for m in heads for p in m.parameters()}


def muon_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden matrices for Muon, everything else for AdamW). Conv filters count as matrices
    (flattened to out_channels x rest by the Muon implementation)."""
    excluded = embedding_param_ids(model) | head_param_ids(model)
    hidden, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (hidden if ndim(p) >= 2 and id(p) not in excluded else rest).append(p)
    return hidden, rest
