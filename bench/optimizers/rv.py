"""Rotational variants (RV) of AdamW, SGD with momentum and Lion: bench's own implementation.

Kosson, Messmer & Jaggi 2024, Rotational Equilibrium: How Weight Decay Balances Learning Across Neural
Networks (ICML 2024), Algorithm 1. No package ships these; the authors' research code was read to
settle the details below, and `tests/optimizers/test_references.py` checks this implementation
against the rule written out row by row.

Weight decay and a scale-invariant weight reach an *equilibrium* in which every neuron's weight
vector keeps a constant norm and rotates by an expected angle `eta_r` per step. The rotational variant
enforces that equilibrium from the first step instead of waiting for it. For every *rotational* tensor
(two or more dimensions with weight decay > 0: matrices and conv filters under the decay filter) and
for each of its neurons `w` (a row of the tensor viewed as `(out, -1)`):

    once:  w <- w - mean(w)  (at construction, with zero_mean);  n = ||w||  (kept fixed)
    step:  u = inner update of the base optimizer, without lr and weight decay
           u <- u - (<u, w> / n^2) w                      (only the rotation of w is kept)
           nu <- b nu + (1 - b) ||u||^2;  nu^ = nu / (1 - b^t)   (b = update_norm_decay)
           w <- w - eta_r n u / (sqrt(nu^) + eps_r)
           w <- w - mean(w)  (with zero_mean);  w <- n w / ||w||

so each neuron turns by about `eta_r` radians per step. `eta_r` is the base optimizer's equilibrium
angular update (the paper's Table 1, as in the authors' code), with `lr`, `wd` the group's values:

    AdamW:             eta_r = sqrt(2 lr wd (1 - b1) / (1 + b1))
    SGD with momentum: eta_r = sqrt(2 lr wd / (1 + mu))
    Lion:              eta_r = sqrt(pi / 2) sqrt(2 lr wd) sqrt((1 - b1)^2 + b1^2 (1 - b2) / (1 + b2))

The inner updates: AdamW `u = m^ / (sqrt(v^) + eps)`; SGD `m = mu m + g, u = m`; Lion `u = sign(b1 m +
(1 - b1) g), m = b2 m + (1 - b2) g`. Every other tensor (vectors, embeddings and anything without weight
decay) takes the plain base optimizer step `p = p (1 - lr wd) - lr u`. A learning-rate schedule scales
`eta_r` through `lr`. A neuron of norm 0 stays 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


class Rotational(torch.optim.Optimizer):
    """The rotational wrapper around an inner update; subclasses give `inner` and `eta_r`."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        super().__init__(params, defaults)
        if any(g["zero_mean"] for g in self.param_groups):
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        if group["zero_mean"] and self.rotational(p, group):
                            rows = _rows(p)
                            rows.sub_(rows.mean(dim=1, keepdim=True))

    @staticmethod
    def rotational(p: torch.Tensor, group: dict[str, Any]) -> bool:
        return p.ndim >= 2 and group["weight_decay"] != 0

    def inner(
        self, p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> torch.Tensor:
        """The base optimizer's update direction (no lr, no weight decay); updates its state."""
        raise NotImplementedError

    def eta_r(self, group: dict[str, Any]) -> float:
        """The expected equilibrium angular update per step, in radians."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                u = self.inner(p, p.grad, state, group)
                if not self.rotational(p, group):
                    p.mul_(1 - lr * wd).add_(u, alpha=-lr)
                    continue
                self._rotate(p, u, state, group)
        return loss

    def _rotate(self, p: torch.Tensor, u: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        w, u = _rows(p), _rows(u)
        if "norm" not in state:
            centred = w - w.mean(dim=1, keepdim=True) if group["zero_mean"] else w
            state["norm"] = centred.norm(dim=1, keepdim=True)
            state["update_norm_sq"] = torch.zeros_like(state["norm"])
        norm = state["norm"]
        tiny = torch.finfo(w.dtype).tiny
        u = u - w * ((u * w).sum(dim=1, keepdim=True) / norm.square().clamp_min(tiny))
        b = group["update_norm_decay"]
        state["update_norm_sq"].mul_(b).add_(u.square().sum(dim=1, keepdim=True), alpha=1 - b)
        avg = (state["update_norm_sq"] / (1 - b ** state["step"])).sqrt()
        w_new = w - self.eta_r(group) * norm * u / (avg + group["rotational_eps"])
        if group["zero_mean"]:
            w_new = w_new - w_new.mean(dim=1, keepdim=True)
        w_new = w_new * (norm / w_new.norm(dim=1, keepdim=True).clamp_min(tiny))
        p.copy_(w_new.view_as(p))


def _rotational_defaults(update_norm_decay: float, zero_mean: bool, rotational_eps: float) -> dict[str, Any]:
    return {"update_norm_decay": update_norm_decay, "zero_mean": zero_mean, "rotational_eps": rotational_eps}


class RotationalAdamW(Rotational):
    """AdamW's rotational variant (see the module docstring for the rule)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        update_norm_decay: float = 0.9,
        zero_mean: bool = True,
        rotational_eps: float = 1e-8,
    ):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(
            params, {**defaults, **_rotational_defaults(update_norm_decay, zero_mean, rotational_eps)}
        )

    def inner(
        self, p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> torch.Tensor:
        b1, b2 = group["betas"]
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        return (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])

    def eta_r(self, group: dict[str, Any]) -> float:
        b1 = group["betas"][0]
        return math.sqrt(2 * group["lr"] * group["weight_decay"] * (1 - b1) / (1 + b1))


class RotationalSGD(Rotational):
    """SGD with momentum's rotational variant (see the module docstring for the rule)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        update_norm_decay: float = 0.9,
        zero_mean: bool = True,
        rotational_eps: float = 1e-8,
    ):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(
            params, {**defaults, **_rotational_defaults(update_norm_decay, zero_mean, rotational_eps)}
        )

    def inner(
        self, p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> torch.Tensor:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        return state["momentum_buffer"].mul_(group["momentum"]).add_(g)

    def eta_r(self, group: dict[str, Any]) -> float:
        return math.sqrt(2 * group["lr"] * group["weight_decay"] / (1 + group["momentum"]))


class RotationalLion(Rotational):
    """Lion's rotational variant (see the module docstring for the rule)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.1,
        update_norm_decay: float = 0.9,
        zero_mean: bool = True,
        rotational_eps: float = 1e-8,
    ):
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay}
        super().__init__(
            params, {**defaults, **_rotational_defaults(update_norm_decay, zero_mean, rotational_eps)}
        )

    def inner(
        self, p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> torch.Tensor:
        b1, b2 = group["betas"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p)
        m = state["exp_avg"]
        u = (b1 * m + (1 - b1) * g).sign()
        m.lerp_(g, 1 - b2)
        return u

    def eta_r(self, group: dict[str, Any]) -> float:
        b1, b2 = group["betas"]
        spread = (1 - b1) ** 2 + b1**2 * (1 - b2) / (1 + b2)
        return math.sqrt(math.pi / 2) * math.sqrt(2 * group["lr"] * group["weight_decay"]) * math.sqrt(spread)
