"""Wrappers against references (facebookresearch/optimizers' approach): train the same tiny model on the
same data with the entry and with a reference -- another installed implementation, or the update rule
written out here from the paper -- and assert the same weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from optim_helpers import loss_of, make_model, max_param_diff, train
from torch import nn

from bench.catalog import OPTIMIZERS
from bench.optimizers.param_groups import decays, muon_split, param_groups

Update = Callable[[torch.Tensor, torch.Tensor, dict[str, Any], dict[str, Any]], None]


class Rule(torch.optim.Optimizer):
    """Applies `update(p, grad, state, group)` to every parameter; `state["t"]` is the 1-based step."""

    def __init__(self, groups: list[dict[str, Any]], update: Update, **defaults: Any):
        super().__init__(groups, defaults)
        self.update = update

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["t"] = state.get("t", 0) + 1
                self.update(p, p.grad, state, group)


class Both(torch.optim.Optimizer):
    """Two optimizers stepped together (only for references here; the zoo builds single optimizers)."""

    def __init__(self, *opts: torch.optim.Optimizer):
        self.opts = opts
        super().__init__([g for o in opts for g in o.param_groups], {})

    def step(self, closure: None = None) -> None:
        for o in self.opts:
            o.step()


def same_training(
    name: str,
    reference: Callable[[nn.Module], torch.optim.Optimizer],
    sampled: dict | None = None,
    steps: int = 12,
) -> float:
    """Max |weight difference| after `steps` full-batch steps of the entry and of the reference."""
    model, ref_model = make_model(), make_model()
    train(model, OPTIMIZERS.get(name).build(model, sampled or {}), steps)
    train(ref_model, reference(ref_model), steps)
    return max_param_diff(model, ref_model)


def test_nadamw_is_torch_nadam_decoupled():
    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.NAdam(param_groups(m, 0.1), lr=1e-3, decoupled_weight_decay=True)

    assert same_training("nadamw", ref) == 0.0


@pytest.mark.skipif(
    not hasattr(torch.optim, "Muon"), reason="the reference, torch.optim.Muon, needs torch>=2.9"
)
def test_muon_is_torch_muon_on_hidden_matrices_plus_adamw():
    def ref(m: nn.Module) -> torch.optim.Optimizer:
        hidden, rest = muon_split(m)
        decay = decays(m)
        adamw = torch.optim.AdamW(
            [
                {"params": [p for p in rest if decay[id(p)]], "weight_decay": 0.01},
                {"params": [p for p in rest if not decay[id(p)]], "weight_decay": 0.0},
            ],
            lr=1e-3,
            betas=(0.9, 0.95),
            eps=1e-8,
        )
        return Both(torch.optim.Muon(hidden, lr=0.02, weight_decay=0.01, momentum=0.95, nesterov=True), adamw)

    assert same_training("muon", ref, {"ns_dtype": "bfloat16"}) < 1e-6  # torch iterates in bfloat16
    assert 1e-6 < same_training("muon", ref) < 0.05  # float32 on CPU: bf16 rounding apart, not equal


def lion_rule(p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
    m = state.setdefault("m", torch.zeros_like(p))
    (b1, b2), lr, wd = group["betas"], group["lr"], group["weight_decay"]
    update = (b1 * m + (1 - b1) * g).sign()
    p.mul_(1 - lr * wd).sub_(lr * update)
    m.mul_(b2).add_((1 - b2) * g)


def test_lion_follows_the_paper_rule():
    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return Rule(param_groups(m, 0.1), lion_rule, lr=3e-4, betas=(0.9, 0.99))

    assert same_training("lion", ref) < 1e-6


def test_signum_follows_the_paper_rule():
    def rule(p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        m = state.setdefault("m", torch.zeros_like(p))
        m.mul_(group["momentum"]).add_((1 - group["momentum"]) * g)
        p.mul_(1 - group["lr"] * group["weight_decay"]).sub_(group["lr"] * m.sign())

    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return Rule(param_groups(m, 0.1), rule, lr=3e-4, momentum=0.9)

    assert same_training("signum", ref) < 1e-6


def test_adopt_follows_the_paper_rule():
    """Step 1 only sets v = g^2; then m = b1 m + (1 - b1) clip(g / max(sqrt(v), eps), t^0.25);
    p -= lr m; v = b2 v + (1 - b2) g^2 (the previous v normalises: the paper's point). The clip bound
    counts the initialising step, as the authors' code does."""

    def rule(p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        (b1, b2), t = group["betas"], state["t"]
        if t == 1:
            state["v"], state["m"] = g * g, torch.zeros_like(p)
            return
        clip = t**0.25
        normed = (g / state["v"].sqrt().clamp(min=group["eps"])).clamp(-clip, clip)
        state["m"].mul_(b1).add_((1 - b1) * normed)
        p.sub_(group["lr"] * state["m"])
        state["v"].mul_(b2).add_((1 - b2) * g * g)

    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return Rule(param_groups(m, 0.0), rule, lr=1e-3, betas=(0.9, 0.9999), eps=1e-6)

    assert same_training("adopt", ref, {"weight_decay": 0.0}) < 1e-6


def test_ademamix_matches_heavyball():
    import heavyball

    heavyball.utils.compile_mode = None

    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return heavyball.AdEMAMix(param_groups(m, 0.0), lr=1e-3, betas=(0.9, 0.999, 0.999), alpha=5.0)

    assert same_training("ademamix", ref, {"weight_decay": 0.0}) < 1e-5


def test_prodigy_matches_pytorch_optimizer_prodigy():
    from pytorch_optimizer import Prodigy

    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return Prodigy(param_groups(m, 0.1), lr=1.0, weight_decouple=True, safeguard_warmup=True)

    # Two implementations of the d estimate; float summation order differs (weights move ~1e-2).
    assert same_training("prodigy", ref) < 1e-4


def test_schedulefree_adamw_matches_the_reference_implementation():
    """AdamWScheduleFree (the fast in-place y/z form) against AdamWScheduleFreeReference (which keeps x
    explicitly), in train mode and after .eval() (which swaps in the averaged iterate x)."""
    from schedulefree import AdamWScheduleFreeReference

    model, ref_model = make_model(), make_model()
    opt = OPTIMIZERS.get("schedulefree_adamw").build(model, {})
    ref = AdamWScheduleFreeReference(param_groups(ref_model, 0.1), lr=2.5e-3)
    ref.train()
    train(model, opt, 12)
    train(ref_model, ref, 12)
    assert max_param_diff(model, ref_model) < 1e-6
    y = [p.clone() for p in model.parameters()]
    opt.eval()
    ref.eval()
    assert max_param_diff(model, ref_model) < 1e-6
    assert max(float((p - q).abs().max()) for p, q in zip(model.parameters(), y, strict=True)) > 1e-4
    opt.train()
    assert max(float((p - q).abs().max()) for p, q in zip(model.parameters(), y, strict=True)) < 1e-6


def test_adalayer_follows_its_rule():
    def rule(p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        (b1, b2), lr, t = group["betas"], group["lr"], state["t"]
        state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * (g**2).sum() / g.numel()  # one scalar
        m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)
        p.mul_(1 - lr * group["weight_decay"]).sub_(lr * m_hat / (v_hat.sqrt() + group["eps"]))

    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return Rule(param_groups(m, 0.1), rule, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    assert same_training("adalayer", ref) < 1e-6
    opt = OPTIMIZERS.get("adalayer").build(model := make_model(), {})
    train(model, opt, 1)
    assert all(s["exp_avg_sq"].numel() == 1 for s in opt.state.values())


def test_adalayer_differs_from_adam():
    assert same_training("adalayer", lambda m: torch.optim.AdamW(param_groups(m, 0.1), lr=1e-3)) > 1e-4


def test_sgd_sai_follows_its_rule():
    """gsnr = ||g_1|| / (std(g_1) + eps) per matrix (||g_1|| for vectors), fixed at step 1;
    m = mu m + (1 - mu) g; p = p (1 - lr wd) - lr gsnr m."""

    def rule(p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        if state["t"] == 1:
            sigma = g.std() if g.ndim > 1 and g.shape[0] != 1 else torch.tensor(0.0)
            state["gsnr"] = g.norm() / (sigma + group["eps"]) if sigma != 0 else g.norm()
            state["m"] = torch.zeros_like(p)
        mu, lr = group["momentum"], group["lr"]
        state["m"].mul_(mu).add_((1 - mu) * g)
        p.mul_(1 - lr * group["weight_decay"]).sub_(lr * state["gsnr"] * state["m"])

    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return Rule(param_groups(m, 0.01), rule, lr=1e-3, momentum=0.9, eps=1e-8)

    assert same_training("sgd_sai", ref) < 1e-6


def test_sophia_needs_create_graph():
    model = make_model()
    opt = OPTIMIZERS.get("sophia").build(model, {})
    loss_of(model).backward()  # no graph of the gradient: no Hessian-vector product
    with pytest.raises(RuntimeError):
        opt.step()
    assert "create_graph" in OPTIMIZERS.get("sophia").flags


# --------------------------------------------------------------------------------------------------
# Rotational variants (Kosson, Messmer & Jaggi 2024, Algorithm 1), written out neuron by neuron.
# --------------------------------------------------------------------------------------------------


def adamw_direction(g: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
    (b1, b2), t = group["betas"], state["t"]
    state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
    state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
    return (state["m"] / (1 - b1**t)) / ((state["v"] / (1 - b2**t)).sqrt() + group["eps"])


def sgdm_direction(g: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
    state["m"] = group["momentum"] * state.get("m", 0.0) + g
    return state["m"]


def lion_direction(g: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
    b1, b2 = group["betas"]
    m = state.get("m", torch.zeros_like(g))
    u = torch.sign(b1 * m + (1 - b1) * g)
    state["m"] = b2 * m + (1 - b2) * g
    return u


# The paper's Table 1: the expected angular update per step at equilibrium.
ETA_R = {
    "rotational_adamw": lambda lr, wd, g: math.sqrt(2 * lr * wd * (1 - g["betas"][0]) / (1 + g["betas"][0])),
    "rotational_sgd": lambda lr, wd, g: math.sqrt(2 * lr * wd / (1 + g["momentum"])),
    "rotational_lion": lambda lr, wd, g: (
        math.sqrt(math.pi / 2 * 2 * lr * wd)
        * math.sqrt((1 - g["betas"][0]) ** 2 + g["betas"][0] ** 2 * (1 - g["betas"][1]) / (1 + g["betas"][1]))
    ),
}
DIRECTION = {
    "rotational_adamw": adamw_direction,
    "rotational_sgd": sgdm_direction,
    "rotational_lion": lion_direction,
}


def rotational_rule(name: str) -> Update:
    """Algorithm 1 for one tensor: each row (neuron) w keeps its initial (centred) norm n and moves by
    eta_r n u / rms(u), u the base direction with its radial part removed; b = 0.9 averages ||u||^2.
    Tensors without weight decay, and vectors, take the base optimizer's plain decoupled step."""

    def update(p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        lr, wd, t, b = group["lr"], group["weight_decay"], state["t"], 0.9
        u = DIRECTION[name](g, state, group)
        if p.ndim < 2 or wd == 0:
            p.mul_(1 - lr * wd).sub_(lr * u)
            return
        eta_r = ETA_R[name](lr, wd, group)
        for i in range(p.shape[0]):  # neuron by neuron
            w, ui = p[i].flatten(), u[i].flatten()
            n = state.setdefault(f"n{i}", float(w.norm()))
            ui = ui - (ui @ w) / n**2 * w
            state[f"nu{i}"] = b * state.get(f"nu{i}", 0.0) + (1 - b) * float(ui @ ui)
            w = w - eta_r * n * ui / (math.sqrt(state[f"nu{i}"] / (1 - b**t)) + 1e-8)
            w = w - w.mean()
            p[i] = (n * w / w.norm()).view_as(p[i])

    return update


def centred(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Algorithm 1's initialisation: every rotational neuron's weights centred to mean 0."""
    with torch.no_grad():
        for group in groups:
            for p in group["params"]:
                if p.ndim >= 2 and group["weight_decay"] != 0:
                    p.sub_(p.reshape(p.shape[0], -1).mean(dim=1).view(-1, *[1] * (p.ndim - 1)))
    return groups


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("rotational_adamw", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}),
        ("rotational_sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}),
        ("rotational_lion", {"lr": 3e-4, "betas": (0.9, 0.99), "weight_decay": 0.1}),
    ],
)
def test_rotational_variants_follow_the_paper_rule(name: str, hyper: dict[str, Any]) -> None:
    wd = hyper.pop("weight_decay")

    def ref(m: nn.Module) -> torch.optim.Optimizer:
        return Rule(centred(param_groups(m, wd)), rotational_rule(name), **hyper)

    assert same_training(name, ref, steps=12) < 1e-5


@pytest.mark.parametrize("name", ["rotational_adamw", "rotational_sgd", "rotational_lion"])
def test_rotational_variants_keep_norms_and_rotate_at_eta_r(name: str) -> None:
    """What the rule is for: every neuron of a decayed matrix keeps its (centred) norm, and turns by
    about eta_r per step once the update-norm average has settled."""
    model = make_model()
    entry = OPTIMIZERS.get(name)
    opt = entry.build(model, {})
    w0 = model.fc2.weight.detach().clone()
    assert torch.allclose(w0.mean(dim=1), torch.zeros(32), atol=1e-6)  # centred at construction
    angles = []

    def record(_: int) -> None:
        w = model.fc2.weight.detach()
        cos = (w * prev[0]).sum(1) / (w.norm(dim=1) * prev[0].norm(dim=1))
        angles.append(float(torch.arccos(cos.clamp(-1, 1)).mean()))
        prev[0] = w.clone()

    prev = [w0]
    train(model, opt, 20, on_step=record)
    assert torch.allclose(model.fc2.weight.norm(dim=1), w0.norm(dim=1), rtol=1e-5)
    group = next(g for g in opt.param_groups if g["weight_decay"] > 0)
    eta_r = opt.eta_r(group)
    assert eta_r == pytest.approx(ETA_R[name](group["lr"], group["weight_decay"], group))
    assert sum(angles[5:]) / len(angles[5:]) == pytest.approx(eta_r, rel=0.2)
