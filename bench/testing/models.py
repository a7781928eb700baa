"""A tiny model and problem for optimizer checks, and a training loop that honours the entry flags.

`TinyNet` has every kind of parameter the optimizer entries treat differently (an embedding, hidden
matrices, a head, biases, a LayerNorm); `make_model` records its roles as the runner does; `train`
takes full-batch steps the way the runner would for an entry with these flags.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection

import torch
from torch import nn

from bench.optimizers.param_groups import remember


class TinyNet(nn.Module):
    """tokens (B, T) -> embed (B, T, 8) -> mean over T -> Linear 8x32 -> LayerNorm -> tanh
    -> Linear 32x32 -> tanh -> head 32x1 -> (B,)"""

    def __init__(self, vocab: int = 16, dim: int = 8, hidden: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens).mean(dim=1)
        h = torch.tanh(self.norm(self.fc1(h)))
        return self.head(torch.tanh(self.fc2(h))).squeeze(-1)


def make_data(seed: int = 0, n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 16, (n, 4), generator=g)
    target = torch.sin(tokens.float().sum(dim=1) / 6.0)  # a smooth function of the tokens
    return tokens, target


DATA = make_data()

# What a task would declare for TinyNet (`ParamRoles`): the output layer and the lookup table.
ROLES = {"head": ("head.weight", "head.bias"), "embedding": ("embed.weight",)}


def make_model(seed: int = 0, *, declared: bool = True) -> TinyNet:
    """A TinyNet whose roles are remembered as the runner does (`declared=False`: a bare model)."""
    torch.manual_seed(seed)
    model = TinyNet()
    if declared:
        remember(model, **ROLES)
    return model


def loss_of(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor] = DATA) -> torch.Tensor:
    tokens, target = data
    return torch.mean((model(tokens) - target) ** 2)


def step(model: nn.Module, opt: torch.optim.Optimizer, flags: Collection[str] = ()) -> float:
    """One full-batch optimizer step as the runner takes it for an entry with `flags`; returns the
    loss before the step. `create_graph`: a backward through which the optimizer can differentiate;
    `closure`: the gradient first, then `step(closure)` with a closure that recomputes both."""
    opt.zero_grad(set_to_none=True)
    loss = loss_of(model)
    loss.backward(create_graph="create_graph" in flags)
    if "closure" in flags:

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            again = loss_of(model)
            again.backward()
            return again

        opt.step(closure)
    else:
        opt.step()
    return loss.item()


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    steps: int,
    create_graph: bool = False,
    on_step: Callable[[int], None] | None = None,
    flags: Collection[str] = (),
) -> list[float]:
    """Full-batch steps; returns the loss before each step."""
    flags = {*flags, *(("create_graph",) if create_graph else ())}
    losses = []
    for i in range(steps):
        losses.append(step(model, opt, flags))
        if on_step:
            on_step(i)
    opt.zero_grad(set_to_none=True)  # drop create_graph references
    return losses


def max_param_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def clone(model: nn.Module) -> nn.Module:
    """A copy with the same declared roles (a deep copy has new Parameter objects, nothing recorded)."""
    twin = copy.deepcopy(model)
    remember(twin, **ROLES)
    return twin
