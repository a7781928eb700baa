"""What each optimizer costs beside AdamW: step time and optimizer-state memory, on one model, in one run.

    python benchmarks/optimizer_cost.py                       # every registered optimizer, CPU
    python benchmarks/optimizer_cost.py --only adamw muon soap --device cuda --steps 50

The model is a GPT-ish token model of ~2.6M parameters (embedding, MLP blocks with LayerNorm, a head),
so every entry's parameter-group logic is exercised. For each optimizer: build at its default
hyperparameters on its own copy of the model; all optimizers step in interleaved rounds (one step each
per round, so a busy machine slows all alike), `--warmup` rounds untimed, then `--steps` timed.
`step ms` is the mean time of `optimizer.step()` alone (amortising periodic work: SOAP and Shampoo
refresh preconditioners every 10 steps, Sophia estimates the Hessian every 10), `train ms` of
forward + backward + step. `state MB` counts every tensor the optimizer holds (in `state`, in
`param_groups` and in objects it keeps there), excluding the parameters themselves. Prints a Markdown
table sorted by step time. Use `--threads 1` on a shared machine: tiny kernels lose more to thread
hand-offs than they gain.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bench.catalog import OPTIMIZERS
from bench.optimizers.param_groups import remember


class MLPBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.fc_in = nn.Linear(dim, 4 * dim)
        self.fc_out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc_out(F.gelu(self.fc_in(self.ln(x))))


class TokenMLP(nn.Module):
    """tokens (B, T) -> wte + wpe (B, T, dim) -> blocks -> LayerNorm -> lm_head (B, T, vocab)"""

    ROLES = {
        "head": ("lm_head.weight",),
        "embedding": ("wte.weight", "wpe.weight"),
    }  # as a task declares them

    def __init__(self, vocab: int = 1024, dim: int = 256, depth: int = 4, context: int = 64):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(MLPBlock(dim) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def tensor_bytes(obj: Any, skip: set[int], seen: set[int], depth: int = 0) -> int:
    """Bytes of the distinct tensors reachable from `obj` (dicts, sequences, plain objects)."""
    if depth > 6:
        return 0
    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr() if obj.numel() else id(obj)
        if id(obj) in skip or key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, skip, seen, depth + 1) for v in obj.values())
    if isinstance(obj, list | tuple | set):
        return sum(tensor_bytes(v, skip, seen, depth + 1) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type | nn.Module):
        return tensor_bytes(vars(obj), skip, seen, depth + 1)
    return 0


def state_bytes(opt: torch.optim.Optimizer, model: nn.Module) -> int:
    params = list(model.parameters())
    seen = {p.untyped_storage().data_ptr() for p in params}
    skip = {id(p) for p in params}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return tensor_bytes(dict(opt.state), skip, seen) + tensor_bytes(groups, skip, seen)


class Run:
    """One optimizer training its own copy of the model (same init, same batches as the others)."""

    def __init__(self, name: str, batch: int, device: torch.device):
        self.entry = OPTIMIZERS.get(name)
        torch.manual_seed(0)
        self.model = TokenMLP().to(device)
        remember(self.model, **TokenMLP.ROLES)
        self.opt = self.entry.build(self.model, {})
        self.create_graph = "create_graph" in self.entry.flags
        g = torch.Generator().manual_seed(0)
        self.batches = [torch.randint(0, 1024, (batch, 64), generator=g).to(device) for _ in range(4)]
        self.device = device
        self.step_s: list[float] = []
        self.train_s: list[float] = []

    def step(self, i: int, record: bool) -> None:
        tokens = self.batches[i % len(self.batches)]
        sync(self.device)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward(create_graph=self.create_graph)
        sync(self.device)
        t1 = time.perf_counter()
        self.opt.step()
        sync(self.device)
        t2 = time.perf_counter()
        if record:
            self.step_s.append(t2 - t1)
            self.train_s.append(t2 - t0)
        if self.create_graph:
            self.opt.zero_grad(set_to_none=True)  # release the graph kept by create_graph

    def row(self) -> dict[str, float]:
        return {
            "step_ms": 1e3 * statistics.fmean(self.step_s),
            "train_ms": 1e3 * statistics.fmean(self.train_s),
            "state_mb": state_bytes(self.opt, self.model) / 2**20,
        }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", help="optimizer names (default: all registered)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    names = args.only or OPTIMIZERS.names()
    names = ["adamw", *[n for n in names if n != "adamw"]]  # the reference first
    n_params = sum(p.numel() for p in TokenMLP().parameters())
    runs = {name: Run(name, args.batch, device) for name in names}
    # Interleaved rounds: one step of every optimizer per round, so that a busy machine slows all alike.
    for i in range(args.warmup + args.steps):
        for run in runs.values():
            run.step(i, record=i >= args.warmup)
        print(f"# round {i + 1}/{args.warmup + args.steps}", flush=True)
    rows = {name: run.row() for name, run in runs.items()}
    ref = rows["adamw"]
    print(
        f"\nOptimizer cost on TokenMLP ({n_params / 1e6:.1f}M params, batch {args.batch}x64 tokens, "
        f"{device.type}, {torch.get_num_threads()} threads, mean of {args.steps} steps)\n"
    )
    print("| optimizer | step ms | step vs adamw | train step ms | state MB | state vs adamw | source |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in sorted(rows.items(), key=lambda kv: kv[1]["step_ms"]):
        print(
            f"| {name} | {r['step_ms']:.2f} | {r['step_ms'] / ref['step_ms']:.2f}x | {r['train_ms']:.1f} "
            f"| {r['state_mb']:.1f} | {r['state_mb'] / ref['state_mb']:.2f}x | {OPTIMIZERS.get(name).source} |"
        )


if __name__ == "__main__":
    main()
