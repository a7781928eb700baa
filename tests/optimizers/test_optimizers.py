"""Shared tests over every registered optimizer: a new entry is picked up automatically."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from optim_helpers import clone, loss_of, make_model, max_param_diff, schedule, train

from bench.catalog import OPTIMIZERS
from bench.optimizers import adam, free, matrix, sgd, sophia
from bench.optimizers.base import FLAGS, OptimizerEntry, on_gpu
from bench.optimizers.schedules import lr_lambda, needs_schedule
from bench.space import Categorical, Float, Int, to_kwargs

NAMES = OPTIMIZERS.names()
DECLARED = [e for module in (sgd, adam, matrix, free, sophia) for e in module.ENTRIES]


def fit(entry: OptimizerEntry, steps: int, sampled: dict | None = None, seed: int = 0):
    model = make_model(seed)
    opt = entry.build(model, sampled or {})
    losses = train(model, opt, steps, create_graph="create_graph" in entry.flags)
    return model, opt, losses


def test_the_zoo_is_complete():
    expected = {
        "sgd", "adam", "adamw", "nadamw", "adafactor", "lion", "signum", "soap", "shampoo", "muon",
        "prodigy", "schedulefree_adamw", "adopt", "ademamix", "mars", "sophia", "dog", "adamp",
        "diffgrad", "adalayer", "sgd_sai",
    }  # fmt: skip
    assert expected <= set(NAMES)


def test_every_entry_is_named_once():
    """Each built-in entry is declared once, under its own name, and registered as it is declared."""
    names = [e.name for e in DECLARED]
    assert len(names) == len(set(names))
    for entry in DECLARED:
        assert OPTIMIZERS.get(entry.name) is entry and OPTIMIZERS.origin(entry.name) == "bench"


@pytest.mark.parametrize("name", NAMES)
def test_builds_on_a_small_model(name: str):
    """Every trainable parameter lands in exactly one group of a `torch.optim.Optimizer`."""
    model = make_model()
    opt = OPTIMIZERS.get(name).build(model, {})
    assert isinstance(opt, torch.optim.Optimizer)
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_declarations_import_no_torch():
    """Describing the zoo (`bench validate`, `plan`, `ls`) must not pay for torch or the libraries."""
    modules = ", ".join(
        f"bench.optimizers.{m}" for m in ("base", "sgd", "adam", "matrix", "free", "sophia", "schedules")
    )
    heavy = ("torch", "pytorch_optimizer", "heavyball", "schedulefree", "prodigyopt", "dog", "lightning")
    code = f"import sys, {modules}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", NAMES)
def test_entry_metadata(name: str):
    entry = OPTIMIZERS.get(name)
    assert entry.name == name
    assert entry.source and entry.paper
    assert set(entry.flags) <= FLAGS
    assert entry.lr_scaling in ("linear", "sqrt", "none")
    assert "lr" in entry.defaults and "lr" in entry.search_space
    assert isinstance(entry.search_space["lr"], Float) and entry.search_space["lr"].log


@pytest.mark.parametrize("name", NAMES)
def test_search_space_matches_defaults(name: str):
    """Every searched name maps onto a default hyperparameter, and each default lies in its range."""
    entry = OPTIMIZERS.get(name)
    for key, param in entry.search_space.items():
        base = key.removeprefix("one_minus_")
        assert base in entry.defaults, f"{name}: searched {key!r} has no default {base!r}"
        if isinstance(param, Float | Int):
            value = entry.defaults[base]
            value = 1.0 - value if key.startswith("one_minus_") else value
            assert param.low <= value <= param.high, f"{name}: default {key}={value} outside {param}"
        else:
            assert isinstance(param, Categorical)


@pytest.mark.parametrize("corner", ["low", "high"])
@pytest.mark.parametrize("name", NAMES)
def test_search_space_corners_build_and_step(name: str, corner: str):
    entry = OPTIMIZERS.get(name)
    sampled = {
        k: getattr(p, corner) if not isinstance(p, Categorical) else p.choices[0]
        for k, p in entry.search_space.items()
    }
    _, _, losses = fit(entry, 2, sampled)
    assert all(math.isfinite(x) for x in losses)


@pytest.mark.parametrize("name", NAMES)
def test_lowers_the_loss_at_default_hyperparameters(name: str):
    entry = OPTIMIZERS.get(name)
    model, opt, losses = fit(entry, 40)
    if "schedule_free" in entry.flags:
        opt.eval()  # evaluate the averaged iterate x
    final = loss_of(model).item()
    assert math.isfinite(final)
    assert final < 0.9 * losses[0], f"{name}: {losses[0]:.3f} -> {final:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str):
    """Save after k steps, load into a fresh optimizer on a copy of the model: the next steps match."""
    entry = OPTIMIZERS.get(name)
    create_graph = "create_graph" in entry.flags
    model, opt, _ = fit(entry, 5)
    saved = copy.deepcopy(opt.state_dict())
    twin = clone(model)
    twin_opt = entry.build(twin, {})
    twin_opt.load_state_dict(saved)
    for m, o in ((model, opt), (twin, twin_opt)):
        torch.manual_seed(1)  # the same random draws (Hutchinson probes, PSGD's update coin) for both
        train(m, o, 3, create_graph=create_graph)
    # Not bit-exact for every library (heavyball re-derives cached preconditioner products), but a
    # lost or misloaded state shows up at the size of an update (~1e-3).
    assert max_param_diff(model, twin) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_missing_gradients_are_left_alone(name: str):
    """A step without any gradient (a skipped batch) changes nothing; a parameter the forward pass does
    not use keeps its value while the others train."""
    entry = OPTIMIZERS.get(name)
    model = make_model()
    model.unused = torch.nn.Linear(2, 2, bias=False)
    opt = entry.build(model, {"weight_decay": 0.0})
    train(model, opt, 2, create_graph="create_graph" in entry.flags)
    before = copy.deepcopy(model)
    opt.zero_grad(set_to_none=True)
    opt.step()
    assert max_param_diff(model, before) == 0.0
    train(model, opt, 1, create_graph="create_graph" in entry.flags)
    assert torch.equal(model.unused.weight, before.unused.weight)
    assert max_param_diff(model, before) > 0.0


@pytest.mark.parametrize("name", NAMES)
def test_decay_filter(name: str):
    """With the filter, weight decay reaches hidden matrices and the head, never biases, norms or
    the declared embedding; without it, every parameter decays."""
    entry = OPTIMIZERS.get(name)
    model = make_model()
    wd_of = {}
    for group in entry.build(model, {"weight_decay": 0.05}).param_groups:
        for p in group["params"]:
            wd_of[id(p)] = group["weight_decay"]
    assert len(wd_of) == len(list(model.parameters()))
    for pname, p in model.named_parameters():
        decayed = pname in ("fc1.weight", "fc2.weight", "head.weight")
        assert wd_of[id(p)] == (0.05 if decayed else 0.0), pname
    unfiltered = entry.build(make_model(), {"weight_decay": 0.05}, decay_filter=False)
    assert {g["weight_decay"] for g in unfiltered.param_groups} == {0.05}


@pytest.mark.parametrize("name", NAMES)
def test_lr_schedule_scales_every_group(name: str):
    entry = OPTIMIZERS.get(name)
    model = make_model()
    opt = entry.build(model, {})
    peaks = [g["lr"] for g in opt.param_groups]
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(schedule("linear"), total_steps=4))
    train(model, opt, 1, create_graph="create_graph" in entry.flags)
    scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.75 * lr for lr in peaks])
    assert needs_schedule(entry) == (not {"schedule_free", "no_schedule"} & set(entry.flags))


def test_sampled_names_reach_the_optimizer():
    """one_minus_beta1 / beta2 become betas; unknown keys reach the constructor (and fail loudly)."""
    opt = OPTIMIZERS.get("adamw").build(make_model(), {"one_minus_beta1": 0.05, "beta2": 0.95, "lr": 0.01})
    assert opt.param_groups[0]["betas"] == pytest.approx((0.95, 0.95))
    assert opt.param_groups[0]["lr"] == 0.01
    assert to_kwargs({"beta1": 0.9, "beta2": 0.99, "beta3": 0.999}, {})["betas"] == (0.9, 0.99, 0.999)
    with pytest.raises(TypeError):
        OPTIMIZERS.get("adamw").build(make_model(), {"momentum": 0.9})


FUSED = sorted(n for n in NAMES if "fused" in OPTIMIZERS.get(n).flags)


def test_torch_optimizers_with_a_fused_kernel_are_flagged():
    assert FUSED == ["adam", "adamw", "sgd"]


@pytest.mark.parametrize("name", FUSED)
def test_fused_kernel_only_on_gpu_parameters(name: str):
    """On a CPU the flagged entries build exactly what they did (no `fused`); the class takes
    `fused=True`, which `build` passes when every parameter is on a GPU."""
    entry, model = OPTIMIZERS.get(name), make_model()
    assert not on_gpu(model)
    assert not entry.build(model, {}).param_groups[0]["fused"]
    assert entry.build(model, {"fused": True}).param_groups[0]["fused"] is True
    assert entry.build(model, {"foreach": True}).param_groups[0]["foreach"] is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", FUSED)
def test_fused_kernel_on_gpu(name: str):
    model = make_model().cuda()
    assert on_gpu(model)
    assert OPTIMIZERS.get(name).build(model, {}).param_groups[0]["fused"] is True
    assert not OPTIMIZERS.get(name).build(model, {"foreach": True}).param_groups[0]["fused"]
