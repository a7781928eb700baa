"""The optimizer entry contract as pytest checks: subclass `OptimizerContract`, list the entries.

    # tests/test_bench_contract.py of a plugin package
    from bench.catalog import OPTIMIZERS
    from bench.testing import OptimizerContract, plugin_entries

    class TestMyOptimizers(OptimizerContract):
        entries = plugin_entries(OPTIMIZERS, "my-plugin")     # or [MY_ENTRY, ...]

Every `test_*` method below runs once per entry, on `bench.testing.models.TinyNet` (an embedding,
hidden matrices, a LayerNorm, biases and a head, with declared roles). bench runs the same class over
its whole registry (`tests/optimizers/test_optimizers.py`), so a plugin entry meets the bar of a
built-in one: it builds a `torch.optim.Optimizer` holding every parameter once, declares a source, a
paper, known flags, a scaling rule and a log-scale `lr` in its search space, builds and steps at both
corners of that space, lowers the loss at its defaults, survives a state_dict round trip, leaves
missing gradients alone, follows the weight-decay filter and lets a schedule scale every group.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
import torch

from bench.optimizers import schedules
from bench.optimizers.base import FLAGS, OptimizerEntry
from bench.optimizers.schedules import lr_lambda, needs_schedule
from bench.space import Categorical, Float, Int
from bench.spec import ScheduleSpec
from bench.testing.models import clone, loss_of, make_model, max_param_diff, step, train


def fit(entry: OptimizerEntry, steps: int, sampled: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """(model, optimizer, losses) after `steps` full-batch steps of `entry` on a fresh TinyNet."""
    model = make_model(seed)
    opt = entry.build(model, sampled or {})
    losses = train(model, opt, steps, flags=entry.flags)
    return model, opt, losses


def linear_decay() -> ScheduleSpec:
    """bench's linear schedule (from the peak to 0 over the run), no warmup."""
    (linear,) = [s for s in schedules.ENTRIES if s.name == "linear"]
    return ScheduleSpec(linear)


class OptimizerContract:
    """Shared checks over `entries` (a class attribute: a sequence of `OptimizerEntry`)."""

    entries: ClassVar[Sequence[OptimizerEntry]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "entry" in metafunc.fixturenames:
            entries = list(self.entries)
            metafunc.parametrize("entry", entries, ids=[e.name for e in entries])

    @pytest.fixture(autouse=True)
    def _one_thread(self) -> Iterator[None]:
        """Tiny tensors, where thread hand-offs cost more than the math (20x on a busy 2-core machine)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)

    def test_builds_on_a_small_model(self, entry: OptimizerEntry) -> None:
        """Every trainable parameter lands in exactly one group of a `torch.optim.Optimizer`."""
        model = make_model()
        opt = entry.build(model, {})
        assert isinstance(opt, torch.optim.Optimizer)
        grouped = [id(p) for g in opt.param_groups for p in g["params"]]
        assert sorted(grouped) == sorted(id(p) for p in model.parameters())

    def test_entry_metadata(self, entry: OptimizerEntry) -> None:
        assert entry.source and entry.paper
        assert set(entry.flags) <= FLAGS, f"unknown flags {set(entry.flags) - FLAGS}"
        assert entry.lr_scaling in ("linear", "sqrt", "none")
        assert "lr" in entry.defaults and "lr" in entry.search_space
        assert isinstance(entry.search_space["lr"], Float) and entry.search_space["lr"].log

    def test_search_space_matches_defaults(self, entry: OptimizerEntry) -> None:
        """Every searched name maps onto a default hyperparameter, and each default lies in its range."""
        for key, param in entry.search_space.items():
            base = key.removeprefix("one_minus_")
            assert base in entry.defaults, f"{entry.name}: searched {key!r} has no default {base!r}"
            if isinstance(param, Float | Int):
                value = entry.defaults[base]
                value = 1.0 - value if key.startswith("one_minus_") else value
                assert param.low <= value <= param.high, (
                    f"{entry.name}: default {key}={value} outside {param}"
                )
            else:
                assert isinstance(param, Categorical)

    @pytest.mark.parametrize("corner", ["low", "high"])
    def test_search_space_corners_build_and_step(self, entry: OptimizerEntry, corner: str) -> None:
        sampled = {
            k: getattr(p, corner) if not isinstance(p, Categorical) else p.choices[0]
            for k, p in entry.search_space.items()
        }
        _, _, losses = fit(entry, 2, sampled)
        assert all(math.isfinite(x) for x in losses)

    def test_lowers_the_loss_at_default_hyperparameters(self, entry: OptimizerEntry) -> None:
        model, opt, losses = fit(entry, 40)
        if "schedule_free" in entry.flags:
            opt.eval()  # evaluate the averaged iterate
        final = loss_of(model).item()
        assert math.isfinite(final)
        assert final < 0.9 * losses[0], f"{entry.name}: {losses[0]:.3f} -> {final:.3f}"

    def test_state_dict_round_trip(self, entry: OptimizerEntry) -> None:
        """Save after k steps, load into a fresh optimizer on a copy of the model: the next steps match."""
        model, opt, _ = fit(entry, 5)
        saved = copy.deepcopy(opt.state_dict())
        twin = clone(model)
        twin_opt = entry.build(twin, {})
        twin_opt.load_state_dict(saved)
        for m, o in ((model, opt), (twin, twin_opt)):
            torch.manual_seed(1)  # the same random draws (Hutchinson probes, PSGD's update coin) for both
            train(m, o, 3, flags=entry.flags)
        # Not bit-exact for every library (heavyball re-derives cached preconditioner products), but a
        # lost or misloaded state shows up at the size of an update (~1e-3).
        assert max_param_diff(model, twin) < 1e-6

    def test_missing_gradients_are_left_alone(self, entry: OptimizerEntry) -> None:
        """A step without any gradient (a skipped batch) changes nothing; a parameter the forward pass
        does not use keeps its value while the others train."""
        model = make_model()
        model.unused = torch.nn.Linear(2, 2, bias=False)
        opt = entry.build(model, {"weight_decay": 0.0})
        train(model, opt, 2, flags=entry.flags)
        before = copy.deepcopy(model)
        opt.zero_grad(set_to_none=True)
        if "closure" in entry.flags:
            opt.step(lambda: opt.zero_grad(set_to_none=True))  # a closure that yields no gradient either
        else:
            opt.step()
        assert max_param_diff(model, before) == 0.0
        step(model, opt, entry.flags)
        assert torch.equal(model.unused.weight, before.unused.weight)
        assert max_param_diff(model, before) > 0.0

    def test_decay_filter(self, entry: OptimizerEntry) -> None:
        """With the filter, weight decay reaches hidden matrices and the head, never biases, norms or
        the declared embedding; without it, every parameter decays."""
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

    def test_lr_schedule_scales_every_group(self, entry: OptimizerEntry) -> None:
        model = make_model()
        opt = entry.build(model, {})
        peaks = [g["lr"] for g in opt.param_groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(linear_decay(), total_steps=4))
        train(model, opt, 1, flags=entry.flags)
        scheduler.step()
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.75 * lr for lr in peaks])
        assert needs_schedule(entry) == (not {"schedule_free", "no_schedule"} & set(entry.flags))
