"""User optimizers given by import path: class, factory, entry; the errors a suite author sees."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from optim_helpers import loss_of, make_model, train

from bench.optimizers.custom import entry_from_import

USER_MODULE = '''
import torch
from bench.optimizers.base import OptimizerEntry, grouped
from bench.space import Float


class PlainSGD(torch.optim.Optimizer):
    """Plain SGD, p -= lr g (a user's optimizer)."""

    bench_flags = {"fsdp"}

    def __init__(self, params, lr=0.1, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad + group["weight_decay"] * p, alpha=-group["lr"])


def make_adamw(params, lr=1e-3, weight_decay=0.0):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def not_an_optimizer(params, lr=1.0):
    return 42


def my_entry():
    return OptimizerEntry(
        name="my_entry", source="user", paper="-", build_fn=grouped(torch.optim.SGD),
        defaults={"lr": 0.05}, search_space={"lr": Float(1e-3, 1.0, log=True)},
    )


class NotOptimizer:
    pass


ready_entry = my_entry()
A_NUMBER = 3
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "bench_user_opts.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "bench_user_opts"


def test_optimizer_class(user_module: str):
    entry = entry_from_import(f"{user_module}:PlainSGD")
    assert entry.defaults == {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
    assert entry.flags == {"fsdp"}
    assert entry.paper.startswith("Plain SGD")
    model = make_model()
    opt = entry.build(model, {"one_minus_beta1": 0.2, "weight_decay": 0.01})
    assert opt.param_groups[0]["betas"] == pytest.approx((0.8, 0.99))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]  # the shared decay filter
    before = loss_of(model).item()
    train(model, opt, 10)
    assert loss_of(model).item() < before


def test_factory_function(user_module: str):
    entry = entry_from_import(f"{user_module}:make_adamw")
    opt = entry.build(make_model(), {"lr": 0.01})
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 0.01


def test_entry_and_entry_factory(user_module: str):
    assert entry_from_import(f"{user_module}:my_entry").name == "my_entry"
    assert entry_from_import(f"{user_module}:ready_entry").defaults == {"lr": 0.05}


@pytest.mark.parametrize(
    "path, error, message",
    [
        ("bench_user_opts.PlainSGD", ValueError, "expected 'package.module:Name'"),
        ("no_such_pkg.mod:Opt", ImportError, "cannot import module 'no_such_pkg.mod'"),
        ("bench_user_opts:PlainSDG", AttributeError, "Did you mean 'PlainSGD'"),
        ("bench_user_opts:NotOptimizer", ValueError, "not a torch.optim.Optimizer subclass"),
        ("bench_user_opts:USER_CONSTANT", AttributeError, "has no attribute 'USER_CONSTANT'"),
        ("bench_user_opts:A_NUMBER", ValueError, "expected an Optimizer subclass, a factory"),
    ],
)
def test_errors(user_module: str, path: str, error: type[Exception], message: str):
    with pytest.raises(error, match=message):
        entry_from_import(path)


def test_factory_must_return_an_optimizer(user_module: str):
    entry = entry_from_import(f"{user_module}:not_an_optimizer")
    with pytest.raises(TypeError, match="returned int, not a torch.optim.Optimizer"):
        entry.build(make_model(), {})
