"""The weight-decay filter and the Muon split, on models of the shapes bench trains."""

from __future__ import annotations

import torch
from optim_helpers import make_model
from torch import nn

from bench.optimizers.param_groups import head_param_ids, muon_split, param_groups, remember_shapes


def names_in(model: nn.Module, params: list[torch.Tensor]) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_decay_on_matrices_only():
    model = make_model()
    decayed, rest = param_groups(model, weight_decay=0.1)
    assert decayed["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert names_in(model, decayed["params"]) == {"fc1.weight", "fc2.weight", "head.weight"}
    assert "embed.weight" in names_in(model, rest["params"])


def test_recorded_shapes_survive_flattening():
    """What FSDP does before configure_optimizers: every parameter becomes a flat 1-D shard. Shapes
    recorded on the unwrapped model keep the filter right; without them every matrix would lose decay."""
    model, flat = make_model(), make_model()
    remember_shapes(model)
    for m in (model, flat):
        for p in m.parameters():
            p.data = p.data.flatten()
    assert names_in(model, param_groups(model, 0.1)[0]["params"]) == {
        "fc1.weight",
        "fc2.weight",
        "head.weight",
    }
    assert param_groups(flat, 0.1)[0]["weight_decay"] == 0.0  # unrecorded: one no-decay group
    hidden, _ = muon_split(model)
    assert names_in(model, hidden) == {"fc1.weight", "fc2.weight"}


def test_no_filter_and_extra_keys():
    model = make_model()
    (group,) = param_groups(model, 0.1, decay_filter=False, lr=0.5)
    assert len(group["params"]) == len(list(model.parameters())) and group["lr"] == 0.5


def test_frozen_params_and_no_weight_decay_names():
    class WithPos(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))  # 3-D, but an embedding
            self.proj = nn.Linear(8, 8)
            self.frozen = nn.Linear(8, 8).requires_grad_(False)

        def no_weight_decay(self) -> set[str]:
            return {"pos_embed"}

    model = WithPos()
    decayed, rest = param_groups(model, 0.1)
    assert names_in(model, decayed["params"]) == {"proj.weight"}
    assert names_in(model, rest["params"]) == {"pos_embed", "proj.bias"}


def test_tied_weights_appear_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(10, 4)
            self.mlp = nn.Linear(4, 4)
            self.lm_head = nn.Linear(4, 10, bias=False)
            self.lm_head.weight = self.wte.weight

    model = Tied()
    groups = param_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == 3
    hidden, rest = muon_split(model)
    assert names_in(model, hidden) == {"mlp.weight"}


def test_muon_split_gpt_like():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(8)
            self.c_fc = nn.Linear(8, 32)
            self.c_proj = nn.Linear(32, 8)

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(50, 8)
            self.h = nn.ModuleList([Block(), Block()])
            self.lm_head = nn.Linear(8, 50, bias=False)  # registered last

    model = GPT()
    hidden, rest = muon_split(model)
    assert names_in(model, hidden) == {f"h.{i}.{n}.weight" for i in (0, 1) for n in ("c_fc", "c_proj")}
    assert {"wte.weight", "lm_head.weight", "h.0.ln.weight", "h.0.c_fc.bias"} <= names_in(model, rest)


def test_head_by_name_or_last_linear():
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 10))
    assert head_param_ids(cnn) == {id(p) for p in cnn[4].parameters()}
    hidden, _ = muon_split(cnn)
    assert {id(p) for p in hidden} == {id(cnn[0].weight), id(cnn[2].weight)}  # conv filters included

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(8, 3)
            self.trunk = nn.Linear(8, 8)  # registered after the head

    named = Named()
    assert head_param_ids(named) == {id(p) for p in named.classifier.parameters()}
