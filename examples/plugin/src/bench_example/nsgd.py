"""Normalised SGD with momentum, per tensor:

    m = mu m + (1 - mu) g;   p = p (1 - lr wd) - lr sqrt(numel(p)) m / (||m|| + eps)

so every tensor moves by `lr` in RMS per step whatever its gradient's scale. Cutkosky & Mehta 2020,
Momentum Improves Normalized SGD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class NormalizedSGD(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
    ):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("momentum", torch.zeros_like(p))
                m.lerp_(p.grad, 1 - mu)
                p.mul_(1 - lr * group["weight_decay"])
                p.sub_(m * (lr * p.numel() ** 0.5 / (m.norm() + group["eps"])))
        return loss
