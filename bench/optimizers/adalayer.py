"""Adalayer: Adam with a single second-moment scalar per layer (here: per parameter tensor).

Zhao, Morwani, Brandfonbrener, Vyas & Kakade 2024, *Deconstructing What Makes a Good Optimizer for
Language Models* (ICLR 2025). It isolates how much of Adam's benefit comes from per-coordinate
preconditioning: each tensor keeps Adam's first moment but shares one second moment, the running mean of
its squared gradient entries. No library ships it, so it lives here.

For each tensor `p` with gradient `g` (`d` entries), step `t`, decoupled weight decay `wd`:

    m = b1 m + (1 - b1) g                       (a tensor, like Adam)
    v = b2 v + (1 - b2) mean(g^2)               (a scalar: sum(g^2) / d)
    p = p (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Using the *mean* (not the sum) of g^2 keeps the per-coordinate update scale of Adam, so AdamW's learning
rates transfer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class Adalayer(torch.optim.Optimizer):
    """Adam with one second-moment scalar per tensor (see the module docstring for the update)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)  # one scalar
                state["step"] += 1
                t = state["step"]
                g = p.grad
                state["exp_avg"].lerp_(g, 1 - beta1)
                state["exp_avg_sq"].lerp_(g.square().mean(), 1 - beta2)
                if wd:
                    p.mul_(1 - lr * wd)
                denom = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt() + eps
                p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**t))
        return loss
