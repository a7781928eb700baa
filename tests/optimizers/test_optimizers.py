"""Shared tests over every registered optimizer: a new entry is picked up automatically.

The per-entry checks are `bench.testing.OptimizerContract`, the class plugin authors run over their
own entries; here it runs over the whole registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from optim_helpers import make_model

from bench.catalog import OPTIMIZERS
from bench.optimizers import adam, free, lowrank, matrix, rotational, sam, sgd, sophia
from bench.optimizers.base import on_gpu
from bench.space import to_kwargs
from bench.testing import OptimizerContract

MODULES = (sgd, adam, matrix, free, sophia, lowrank, rotational, sam)
DECLARED = [e for module in MODULES for e in module.ENTRIES]
NAMES = OPTIMIZERS.names()


class TestEveryOptimizer(OptimizerContract):
    entries = [entry for _, entry in OPTIMIZERS.items()]


def test_the_zoo_is_complete():
    expected = {
        "sgd", "adam", "adamw", "nadamw", "adafactor", "lion", "signum", "soap", "shampoo", "muon",
        "prodigy", "schedulefree_adamw", "adopt", "ademamix", "mars", "sophia", "dog", "adamp",
        "diffgrad", "adalayer", "sgd_sai",
        # issue 16: the rest of the work bench is built on, and what people now ask about
        "apollo", "rotational_adamw", "rotational_sgd", "rotational_lion", "scion", "adamuon", "normuon",
        "adam_mini", "galore", "splus", "laprop", "cautious_adamw", "stableadamw", "soap_heavyball",
        "kron", "sam",
    }  # fmt: skip
    assert expected <= set(OPTIMIZERS.names())
    assert len(OPTIMIZERS) >= 32


def test_every_entry_is_named_once():
    """Each built-in entry is declared once, under its own name, and registered as it is declared."""
    names = [e.name for e in DECLARED]
    assert len(names) == len(set(names))
    for entry in DECLARED:
        assert OPTIMIZERS.get(entry.name) is entry and OPTIMIZERS.origin(entry.name) == "bench"


def test_declarations_import_no_torch():
    """Describing the zoo (`bench validate`, `plan`, `ls`) must not pay for torch or the libraries."""
    modules = ", ".join(
        f"bench.optimizers.{m}"
        for m in (
            "base",
            "sgd",
            "adam",
            "matrix",
            "free",
            "sophia",
            "lowrank",
            "rotational",
            "sam",
            "schedules",
        )
    )
    heavy = (
        "torch",
        "pytorch_optimizer",
        "heavyball",
        "schedulefree",
        "prodigyopt",
        "dog",
        "lightning",
        "adam_mini",
    )
    code = f"import sys, {modules}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


def test_sampled_names_reach_the_optimizer():
    """one_minus_beta1 / beta2 become betas; unknown keys reach the constructor (and fail loudly)."""
    opt = OPTIMIZERS.get("adamw").build(make_model(), {"one_minus_beta1": 0.05, "beta2": 0.95, "lr": 0.01})
    assert opt.param_groups[0]["betas"] == pytest.approx((0.95, 0.95))
    assert opt.param_groups[0]["lr"] == 0.01
    assert to_kwargs({"beta1": 0.9, "beta2": 0.99, "beta3": 0.999}, {})["betas"] == (0.9, 0.99, 0.999)
    with pytest.raises(TypeError):
        OPTIMIZERS.get("adamw").build(make_model(), {"momentum": 0.9})


def test_the_zoo_suite_trains_every_built_in_optimizer():
    """`suites/zoo.yaml` (and so its committed leaderboard) covers the whole built-in registry."""
    import yaml

    suite = yaml.safe_load((Path(__file__).parents[2] / "suites" / "zoo.yaml").read_text())
    assert sorted(suite["optimizers"]) == sorted(e.name for e in DECLARED)


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
