"""Parameter groups shared by every optimizer entry: the weight-decay filter and the Muon split.

Roles are declared, never guessed from names. The task that built a model says which parameters form
its output layer and which are lookup tables (`bench.tasks.base.ParamRoles`, by parameter name); the
runner records them, with every parameter's shape, before anything wraps the model:

    remember(model, head=roles.head, embedding=roles.embedding)
    groups = param_groups(model, weight_decay=0.1)          # decayed group first, then the rest
    opt = torch.optim.AdamW(groups, lr=1e-3)

The rule, in one place (nanoGPT's `configure_optimizers`, timm's `param_groups_weight_decay`), with
`ndim` the parameter's number of dimensions as built:

    decays(p) = ndim >= 2 and not embedding(p)                  matrices and conv filters decay;
                                                                biases, norm gains, embeddings don't
    muon(p)   = ndim >= 2 and not embedding(p) and not head(p)  Muon takes the hidden matrices (conv
                                                                filters flattened); AdamW the rest

A model nothing was remembered for (a bare model in a test or a user's script) gets type-based facts
only: the weight of an `nn.Embedding` is an embedding, and there is no head. A remembered model's
declared roles are the whole truth: an `nn.Embedding` the task did not declare is a plain matrix.

Roles and shapes are recorded per parameter *object*, not per name: FSDP hands the optimizer each
parameter as a flat 1-D shard under a prefixed name, but keeps the Parameter objects, so the rule
still reads the shape and role recorded on the unwrapped model. A second `remember` replaces the
roles and keeps the shapes recorded first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from bench.registry import did_you_mean


@dataclass(frozen=True)
class Recorded:
    """What `remember` knows about one parameter."""

    shape: torch.Size  # as built, before any wrapper flattened it
    head: bool = False
    embedding: bool = False


_RECORDED = WeakIdKeyDictionary()  # parameter -> Recorded (keyed by identity, not tensor ==)


def remember(model: nn.Module, *, head: Iterable[str] = (), embedding: Iterable[str] = ()) -> None:
    """Record every parameter's shape and role now, before a sharding wrapper flattens them.

    `head` and `embedding` are names of `model.named_parameters()` (a tied weight answers to each of
    its names); an unknown name raises ValueError naming it.
    """
    roles = {"head": frozenset(head), "embedding": frozenset(embedding)}
    named = dict(model.named_parameters(remove_duplicate=False))
    unknown = [
        f"{role} '{n}'.{did_you_mean(n, named)}"
        for role, names in roles.items()
        for n in sorted(names - named.keys())
    ]
    if unknown:
        raise ValueError(f"{type(model).__name__} has no parameter named as declared: {' '.join(unknown)}")
    ids = {role: {id(named[n]) for n in names} for role, names in roles.items()}
    for p in model.parameters():
        before = _RECORDED.get(p)
        _RECORDED[p] = Recorded(
            shape=p.shape if before is None else before.shape,
            head=id(p) in ids["head"],
            embedding=id(p) in ids["embedding"],
        )


def recorded(model: nn.Module) -> dict[int, Recorded]:
    """id(param) -> its facts: those `remember` recorded, else the type-based ones (see the docstring)."""
    by_type = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    facts = {}
    for p in model.parameters():
        known = _RECORDED.get(p)
        facts[id(p)] = known if known is not None else Recorded(p.shape, embedding=id(p) in by_type)
    return facts


def decays(model: nn.Module) -> dict[int, bool]:
    """id(param) -> whether the param gets weight decay under the filter."""
    return {i: len(r.shape) >= 2 and not r.embedding for i, r in recorded(model).items()}


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


def muon_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden matrices for Muon, everything else for AdamW), trainable parameters only."""
    facts = recorded(model)
    hidden, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            r = facts[id(p)]
            (hidden if len(r.shape) >= 2 and not (r.head or r.embedding) else rest).append(p)
    return hidden, rest


def split_groups(
    model: nn.Module,
    weight_decay: float,
    decay_filter: bool = True,
    *,
    hidden: Mapping[str, Any] | None = None,
    rest: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The groups of an optimizer that treats hidden matrices apart (Muon, Scion, GaLore, APOLLO...):
    the hidden matrices of `muon_split` with the keys of `hidden`, then the rest, decayed and not (by
    the filter), with the keys of `rest`. Hidden matrices always decay. Empty groups are left out."""
    hidden_params, others = muon_split(model)
    decay = decays(model) if decay_filter else {id(p): True for p in others}
    groups = [
        {"params": hidden_params, "weight_decay": weight_decay, **(hidden or {})},
        {"params": [p for p in others if decay[id(p)]], "weight_decay": weight_decay, **(rest or {})},
        {"params": [p for p in others if not decay[id(p)]], "weight_decay": 0.0, **(rest or {})},
    ]
    return [g for g in groups if g["params"]]
