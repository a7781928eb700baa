"""Schedule-free and learning-rate-free optimizers.

- `schedulefree_adamw` (schedulefree.AdamWScheduleFree, Facebook Research): no lr schedule. With Adam's
  normalised gradient `n = g(y) / (sqrt(v^) + eps) + wd y`, iterate sequences `z` (SGD), `x` (a
  weighted average of `z`, what is evaluated) and `y = (1 - b1) z + b1 x` (where gradients are taken):
  `z -= lr n;  x = (1 - c) x + c z` with `c = w_t / sum w` and `w_t = lr_max^2`.
  The optimizer must be switched with `.train()` before training steps and `.eval()` before
  evaluation (flag `schedule_free`); its built-in warmup is `warmup_steps`.
  Defazio et al. 2024, The Road Less Scheduled.
- `prodigy` (prodigyopt.Prodigy, the authors' package): Adam whose step size is `lr d`, where `d` is an
  online lower bound on the distance to the solution, `d = max(d, sum(<g, x0 - x>-ish) / ||s||_1)`.
  `lr` stays near 1; the authors pair it with a cosine schedule (so it keeps one), and
  `safeguard_warmup=True` because our schedules warm up. Mishchenko & Defazio 2024, Prodigy: An
  Expeditiously Adaptive Parameter-Free Learner.
- `dog` (dog.DoG, package dog-optimizer): SGD with step `eta_t = lr max_i ||x_i - x_0|| /
  sqrt(sum_i ||g_i||^2)` (distance over gradients, per parameter group); `lr` (the paper's c) stays 1
  and no schedule is applied (flag `no_schedule`). Ivgi, Hinder & Carmon 2023, DoG is SGD's Best
  Friend: A Parameter-Free Dynamic Step Size Schedule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.optimizers.base import OptimizerEntry, grouped, lazy
from bench.space import Float

if TYPE_CHECKING:
    import torch
    from torch import nn


def build_schedulefree_adamw(
    model: nn.Module, kwargs: dict[str, Any], decay_filter: bool
) -> torch.optim.Optimizer:
    from schedulefree import AdamWScheduleFree

    opt = grouped(AdamWScheduleFree)(model, kwargs, decay_filter)
    opt.train()  # a fresh model trains first; the runner switches to .eval() around evaluation
    return opt


@functools.cache
def dog_class() -> type[torch.optim.Optimizer]:
    """dog.DoG that tolerates parameters without a gradient (the library indexes every `p.grad`).

    A step where no parameter has a gradient (Lightning skips a batch) changes nothing; parameters
    without one in a step that has others (unused by the forward pass) count as zero gradients, which
    add nothing to DoG's gradient sum and do not move them (without weight decay)."""
    import torch
    from dog import DoG

    class SafeDoG(DoG):
        @torch.no_grad()
        def step(self, closure: Callable[[], Any] | None = None) -> Any:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            params = [p for group in self.param_groups for p in group["params"]]
            if all(p.grad is None for p in params):
                return loss
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            super().step()
            return loss

    return SafeDoG


def build_dog(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
    return grouped(dog_class())(model, kwargs, decay_filter)


ENTRIES: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        name="schedulefree_adamw",
        source="schedulefree.AdamWScheduleFree",
        paper="Defazio et al. 2024, The Road Less Scheduled",
        build_fn=build_schedulefree_adamw,
        defaults={
            "lr": 2.5e-3,
            "beta1": 0.9,
            "beta2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.1,
            "warmup_steps": 0,
        },
        search_space={
            "lr": Float(1e-4, 3e-2, log=True),
            "one_minus_beta1": Float(0.02, 0.3, log=True),
            "one_minus_beta2": Float(1e-3, 0.1, log=True),
            "weight_decay": Float(1e-3, 1.0, log=True),
        },
        flags=frozenset({"schedule_free", "fsdp"}),
    ),
    OptimizerEntry(
        name="prodigy",
        source="prodigyopt.Prodigy",
        paper="Mishchenko & Defazio 2024, Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
        build_fn=grouped(lazy("prodigyopt:Prodigy"), decouple=True, safeguard_warmup=True),
        defaults={"lr": 1.0, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.1, "d_coef": 1.0},
        search_space={"lr": Float(0.3, 3.0, log=True), "weight_decay": Float(1e-3, 1.0, log=True)},
        lr_scaling="none",
    ),
    OptimizerEntry(
        name="dog",
        source="dog.DoG (dog-optimizer)",
        paper="Ivgi, Hinder & Carmon 2023, DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size Schedule",
        build_fn=build_dog,
        # reps_rel sets the first step, reps_rel (1 + ||x_0||); weight decay is L2 (added to g).
        defaults={"lr": 1.0, "reps_rel": 1e-6, "weight_decay": 0.0},
        search_space={"lr": Float(0.3, 3.0, log=True), "reps_rel": Float(1e-8, 1e-3, log=True)},
        flags=frozenset({"no_schedule"}),
        lr_scaling="none",
    ),
)
