"""The weight-decay filter and the Muon split from declared roles, on models of the shapes bench trains."""

from __future__ import annotations

import pytest
import torch
from optim_helpers import ROLES, make_model
from torch import nn

from bench.optimizers.param_groups import decays, muon_split, param_groups, remember

MATRICES = {"fc1.weight", "fc2.weight", "head.weight"}


def names_in(model: nn.Module, params: list[torch.Tensor]) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_roles_rule():
    """Matrices decay unless they are embeddings; Muon takes the matrices that are neither head nor
    embedding; vectors (biases, norm gains) never decay and always go to AdamW."""
    model = make_model()  # roles declared: head.*, embed.weight
    decayed, rest = param_groups(model, weight_decay=0.1)
    assert decayed["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert names_in(model, decayed["params"]) == MATRICES  # the head decays
    assert names_in(model, rest["params"]) == {
        "embed.weight",
        "fc1.bias",
        "norm.weight",
        "norm.bias",
        "fc2.bias",
        "head.bias",
    }
    hidden, adamw = muon_split(model)
    assert names_in(model, hidden) == {"fc1.weight", "fc2.weight"}  # head and embedding excluded
    assert names_in(model, adamw) == {n for n, _ in model.named_parameters()} - names_in(model, hidden)


def test_recorded_shapes_survive_flattening():
    """What FSDP does before configure_optimizers: every parameter becomes a flat 1-D shard. Shapes and
    roles recorded on the unwrapped model keep both rules right; without them every matrix would lose
    decay and Muon."""
    model, flat = make_model(), make_model(declared=False)
    for m in (model, flat):
        for p in m.parameters():
            p.data = p.data.flatten()
    assert all(p.ndim == 1 for p in model.parameters())
    assert names_in(model, param_groups(model, 0.1)[0]["params"]) == MATRICES
    assert names_in(model, muon_split(model)[0]) == {"fc1.weight", "fc2.weight"}
    remember(model, **ROLES)  # remembering again after flattening keeps the shapes recorded first
    assert names_in(model, muon_split(model)[0]) == {"fc1.weight", "fc2.weight"}
    assert param_groups(flat, 0.1)[0]["weight_decay"] == 0.0  # unrecorded: one no-decay group
    assert muon_split(flat)[0] == []


def test_bare_model_gets_type_based_facts():
    """Nothing remembered: `nn.Embedding` weights are embeddings and there is no head."""
    model = make_model(declared=False)
    assert names_in(model, param_groups(model, 0.1)[0]["params"]) == MATRICES
    assert names_in(model, muon_split(model)[0]) == MATRICES  # the head is a hidden matrix here


def test_declared_roles_are_the_whole_truth():
    """Once remembered, roles come from the declaration alone: any parameter can be an embedding (a
    3-D position table), and an undeclared `nn.Embedding` is a plain matrix. A later `remember`
    replaces the roles."""

    class WithPos(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))  # 3-D, but an embedding
            self.tok = nn.Embedding(10, 8)
            self.proj = nn.Linear(8, 8)

    model = WithPos()
    remember(model, embedding=["pos_embed"])
    decayed, rest = param_groups(model, 0.1)
    assert names_in(model, decayed["params"]) == {"tok.weight", "proj.weight"}
    assert names_in(model, rest["params"]) == {"pos_embed", "proj.bias"}
    assert names_in(model, muon_split(model)[0]) == {"tok.weight", "proj.weight"}
    remember(model, head=["proj.weight"], embedding=["pos_embed", "tok.weight"])
    assert names_in(model, param_groups(model, 0.1)[0]["params"]) == {"proj.weight"}
    assert muon_split(model)[0] == []


def test_unknown_names_are_rejected():
    model = make_model()
    with pytest.raises(ValueError, match=r"head 'head.weigth'\. Did you mean 'head.weight'\?") as info:
        remember(model, head=["head.weigth"], embedding=["embed.weight", "pos"])
    assert "embedding 'pos'" in str(info.value) and "TinyNet" in str(info.value)


def test_no_filter_extra_keys_and_frozen_params():
    model = make_model()
    (group,) = param_groups(model, 0.1, decay_filter=False, lr=0.5)
    assert len(group["params"]) == len(list(model.parameters())) and group["lr"] == 0.5
    model.fc2.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert names_in(model, groups[0]["params"]) == {"fc1.weight", "head.weight"}
    assert not {"fc2.weight", "fc2.bias"} & names_in(model, groups[1]["params"])
    assert names_in(model, muon_split(model)[0]) == {"fc1.weight"}


def test_tied_weights_appear_once():
    """A weight tied between the embedding and the head answers to both names and has both roles."""

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(10, 4)
            self.mlp = nn.Linear(4, 4)
            self.lm_head = nn.Linear(4, 10, bias=False)
            self.lm_head.weight = self.wte.weight

    model = Tied()
    remember(model, head=["lm_head.weight"], embedding=["wte.weight"])
    groups = param_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == 3
    assert names_in(model, groups[0]["params"]) == {"mlp.weight"}
    assert decays(model)[id(model.wte.weight)] is False
    hidden, _ = muon_split(model)
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
            self.lm_head = nn.Linear(8, 50, bias=False)

    model = GPT()
    remember(model, head=["lm_head.weight"], embedding=["wte.weight"])
    hidden, rest = muon_split(model)
    assert names_in(model, hidden) == {f"h.{i}.{n}.weight" for i in (0, 1) for n in ("c_fc", "c_proj")}
    assert {"wte.weight", "lm_head.weight", "h.0.ln.weight", "h.0.c_fc.bias"} <= names_in(model, rest)


def test_conv_filters_are_matrices_and_the_head_is_declared():
    """An `nn.Sequential` classifier: the head is whatever the task names (here index 4)."""
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 10))
    remember(cnn, head=["4.weight", "4.bias"])
    hidden, _ = muon_split(cnn)
    assert {id(p) for p in hidden} == {id(cnn[0].weight), id(cnn[2].weight)}  # conv filters included
    decayed = param_groups(cnn, 0.1)[0]["params"]
    assert {id(p) for p in decayed} == {id(cnn[0].weight), id(cnn[2].weight), id(cnn[4].weight)}
