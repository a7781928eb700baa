"""Shared by the optimizer tests: a tiny model with every kind of parameter the optimizer entries treat differently (an embedding,
hidden matrices, a head, biases, a LayerNorm), a fixed regression problem, and a training helper."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

import bench.optimizers  # noqa: F401  (registers the entries)


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


def make_model(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def loss_of(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor] = DATA) -> torch.Tensor:
    tokens, target = data
    return torch.mean((model(tokens) - target) ** 2)


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    steps: int,
    create_graph: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """Full-batch steps; returns the loss before each step."""
    losses = []
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model)
        loss.backward(create_graph=create_graph)
        opt.step()
        losses.append(loss.item())
        if on_step:
            on_step(i)
    opt.zero_grad(set_to_none=True)  # drop create_graph references
    return losses


def max_param_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def clone(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
