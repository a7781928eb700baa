"""How often `bench check` cries wolf, and how often it catches a regression of a stated size: measured.

A tiny suite (digits_cnn, 60 steps, each optimizer at its defaults on `--seeds` seeds: the tuning run
and its reruns) compares torch's AdamW, the reference, with a stand-in "library" optimizer (`gatelib`,
an AdamW subclass at lr 3e-3 written to a temporary directory). The suite runs many times in this one
process, each run on fresh seeds (`tuning.first_seed = 1000 r`):

- U_r, r = 0..N: unchanged code. U_0 is the pinned baseline.
- L_r, r = 1..N: the library with a learning-rate bug: its update uses `--lr-bug` times the lr.
- T_r, r = 1..N: the library `--slowdown` slower: after each update it sleeps that fraction of the
  time since its previous step began (so each step takes that much longer).
- M_r, r = 1..`--memory-reps`: the library keeps one extra buffer per parameter (+50% state).

and `bench.check.compare` (the same code `bench check` runs) judges pairs of runs:

- false alarms: U_r against U_0 (fresh seeds, so the quality tests are unpaired Welch tests);
- detection, unpaired: L_r, T_r and M_r against U_0 (a baseline pinned on other seeds);
- detection, paired: L_r against U_r (the same seeds: the way a CI rerun meets its baseline);
- the `beat` gate: how often the library is shown better than AdamW in U_r (it is: lr 3e-3 vs 1e-3 at 60
  steps) and in L_r.

Paired reruns of unchanged code on this CPU are bit-identical, so their quality false-alarm rate is 0 by
construction (p = 1); that is stated, not measured. Speed is measured on whatever else the machine is
doing: run it on the load you want the rates for (the numbers in docs/ci.md say which).

    OMP_NUM_THREADS=1 flock /tmp/bench-heavy.lock python benchmarks/gate_quality.py --reps 20 --out gq.json

About 12 s per run on one core of this project's machine: --reps 20 (71 runs) takes ~15-20 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml
from scipy import stats as sps

LIBRARY = '''\
"""A stand-in optimizer library with switchable, known regressions (set by benchmarks/gate_quality.py)."""
import os
import time

import torch


class LibAdamW(torch.optim.AdamW):
    def __init__(self, params, lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self._entered, self._slept = None, 0.0

    def step(self, closure=None):
        now = time.perf_counter()
        slowdown = float(os.environ.get("GATELIB_SLOWDOWN", "0"))
        interval = None if self._entered is None else now - self._entered - self._slept
        self._entered, self._slept = now, 0.0
        scale = float(os.environ.get("GATELIB_LR_SCALE", "1"))
        saved = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:  # the bug: the update sees a scaled learning rate
            g["lr"] = g["lr"] * scale
        loss = super().step(closure)
        for g, lr in zip(self.param_groups, saved):
            g["lr"] = lr
        if os.environ.get("GATELIB_EXTRA_STATE") == "1":
            for group in self.param_groups:
                for p in group["params"]:
                    if p in self.state and "spare" not in self.state[p]:
                        self.state[p]["spare"] = torch.zeros_like(p)
        if slowdown and interval is not None:
            self._slept = slowdown * interval
            time.sleep(self._slept)
        return loss
'''

INJECTIONS: dict[str, dict[str, str]] = {
    "U": {},
    "L": {"GATELIB_LR_SCALE": "{lr_bug}"},
    "T": {"GATELIB_SLOWDOWN": "{slowdown}"},
    "M": {"GATELIB_EXTRA_STATE": "1"},
}
STEP_TOLS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.5)


def suite_file(root: Path, seeds: int) -> Path:
    suite = {
        "name": "gq",
        "settings": {
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "storage": f"sqlite:///{root / 'optuna.db'}",
            "leaderboard_dir": str(root / "boards"),
        },
        "tasks": [{"name": "digits_cnn", "steps": 60, "eval_every": 60}],
        "optimizers": ["adamw", {"name": "gatelib:LibAdamW", "label": "lib"}],
        "tuning": {"protocol": "defaults", "seeds": seeds},
        "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true"},
        "leaderboard": {"ks": [1], "reference": "adamw"},
    }
    path = root / "gq.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def run_once(path: Path, tag: str, first_seed: int, env: dict[str, str]) -> dict[str, Any]:
    """Run the suite as `gq_<tag>` on seeds from `first_seed` with `env` set; its leaderboard dict."""
    from bench import report, score
    from bench.engine import run_suite
    from bench.loader import load_suite
    from bench.track import Tracker

    suite = load_suite(path, {"name": f"gq_{tag}", "tuning.first_seed": first_seed})
    os.environ.update(env)
    try:
        run_suite(suite, leaderboard=False, out=lambda line: None)
    finally:
        for key in env:
            os.environ.pop(key, None)
    table = Tracker(suite.settings.tracking_uri, suite.name).trials_table()
    return report.leaderboard_dict(score.leaderboard(table, suite.leaderboard), suite.name)


def rate(k: int, n: int) -> dict[str, Any]:
    """k of n with a 95% Clopper-Pearson interval."""
    ci = sps.binomtest(k, n).proportion_ci(0.95) if n else None
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": None if ci is None else [ci.low, ci.high]}


def verdicts(current: dict, baseline: dict | None, spec: Any) -> dict[str, bool]:
    """Which gates fail (quality, step time, memory) and whether `lib` was shown to beat adamw."""
    from bench.check import compare

    r = compare(current, baseline, spec)
    return {
        "quality": any(x.failed for x in r.rows),
        "step": any(x.failed for x in r.costs if x.measure == "step time"),
        "memory": any(x.failed for x in r.costs if x.measure == "optimizer state"),
        "beats": bool(r.beats) and all(b.status == "beats" for b in r.beats),
    }


def evaluate(boards: dict[str, dict], reps: int, memory_reps: int) -> dict[str, Any]:
    from bench.schema import CheckSpec

    spec = CheckSpec(update_time_tol=None, beat="adamw")
    out: dict[str, Any] = {"settings": spec.model_dump(), "rates": {}, "step_tol_sweep": {}}

    def count(pairs: list[tuple[str, str | None]], gate: str, s: Any = spec) -> dict[str, Any]:
        hits = [verdicts(boards[c], boards[b] if b else None, s)[gate] for c, b in pairs if c in boards]
        return rate(sum(hits), len(hits))

    us = [(f"U{r}", "U0") for r in range(1, reps + 1)]
    rates = out["rates"]
    rates["false alarm: quality (unpaired, fresh seeds)"] = count(us, "quality")
    rates["false alarm: step time"] = count(us, "step")
    rates["false alarm: memory"] = count(us, "memory")
    rates["false alarm: any gate"] = rate(
        sum(
            any(verdicts(boards[c], boards[b], spec)[g] for g in ("quality", "step", "memory")) for c, b in us
        ),
        len(us),
    )
    rates["lr bug caught: quality, unpaired vs U0"] = count(
        [(f"L{r}", "U0") for r in range(1, reps + 1)], "quality"
    )
    rates["lr bug caught: quality, paired vs U_r"] = count(
        [(f"L{r}", f"U{r}") for r in range(1, reps + 1)], "quality"
    )
    rates["slowdown caught: step time vs U0"] = count([(f"T{r}", "U0") for r in range(1, reps + 1)], "step")
    rates["extra state caught: memory vs U0"] = count(
        [(f"M{r}", "U0") for r in range(1, memory_reps + 1)], "memory"
    )
    rates["lib shown to beat adamw (unchanged)"] = count(
        [(f"U{r}", None) for r in range(0, reps + 1)], "beats"
    )
    rates["lib shown to beat adamw (lr bug)"] = count([(f"L{r}", None) for r in range(1, reps + 1)], "beats")
    for tol in STEP_TOLS:
        s = CheckSpec(step_time_tol=tol, update_time_tol=None)
        out["step_tol_sweep"][f"{tol:g}"] = {
            "false alarm": count(us, "step", s),
            "slowdown caught": count([(f"T{r}", "U0") for r in range(1, reps + 1)], "step", s),
        }
    out["effect"] = effects(boards, reps)
    return out


def effects(boards: dict[str, dict], reps: int) -> dict[str, Any]:
    """Sizes of what was injected, as measured: val/error of lib (seed means) and its step-time ratio."""

    def lib(tag: str) -> dict:
        return boards[tag]["tasks"]["digits_cnn"]["optimizers"]["lib"]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    u = [lib(f"U{r}")["seed_mean"] for r in range(reps + 1) if f"U{r}" in boards]
    ell = [lib(f"L{r}")["seed_mean"] for r in range(1, reps + 1) if f"L{r}" in boards]
    ratio_u = [lib(f"U{r}")["cost"]["step_time_s_ratio"] for r in range(reps + 1) if f"U{r}" in boards]
    ratio_t = [lib(f"T{r}")["cost"]["step_time_s_ratio"] for r in range(1, reps + 1) if f"T{r}" in boards]
    ref = [
        boards[f"U{r}"]["tasks"]["digits_cnn"]["optimizers"]["adamw"]["seed_mean"]
        for r in range(reps + 1)
        if f"U{r}" in boards
    ]
    return {
        "lib val/error, unchanged (mean of seed means)": mean(u),
        "lib val/error, lr bug": mean(ell),
        "adamw val/error": mean(ref),
        "lib seed std (mean over runs)": mean(
            [
                lib(f"U{r}")["seed_std"]
                for r in range(reps + 1)
                if f"U{r}" in boards and lib(f"U{r}")["seed_std"]
            ]
        ),
        "lib/adamw step-time ratio, unchanged": {
            "mean": mean(ratio_u),
            "min": min(ratio_u),
            "max": max(ratio_u),
        },
        "lib/adamw step-time ratio, slowed": {
            "mean": mean(ratio_t),
            "min": min(ratio_t, default=None),
            "max": max(ratio_t, default=None),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    def fmt(r: dict) -> str:
        lo, hi = r["ci95"] or (float("nan"), float("nan"))
        return f"{r['k']}/{r['n']} = {r['rate']:.0%} (95% CI {lo:.0%}-{hi:.0%})"

    lines = ["| what | rate |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in result["rates"].items()]
    lines += ["", "| step_time_tol | false alarm | +slowdown caught |", "|---|---|---|"]
    for tol, v in result["step_tol_sweep"].items():
        lines.append(f"| {tol} | {fmt(v['false alarm'])} | {fmt(v['slowdown caught'])} |")
    lines += ["", "```", json.dumps(result["effect"], indent=1), "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=20, help="reruns of each kind (default 20)")
    p.add_argument("--memory-reps", type=int, default=3, help="runs with the extra state (deterministic)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per run: the tuning run and its reruns")
    p.add_argument("--lr-bug", type=float, default=0.5, help="the buggy update's lr multiplier")
    p.add_argument("--slowdown", type=float, default=0.2, help="extra fraction of step time")
    p.add_argument("--out", type=Path, help="write the runs' leaderboards and the rates here (JSON)")
    p.add_argument("--from", dest="from_", type=Path, help="re-evaluate the leaderboards of an earlier --out")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if args.from_:
        saved = json.loads(args.from_.read_text())
        boards, meta = saved["boards"], saved["meta"]
    else:
        root = Path(tempfile.mkdtemp(prefix="gate-quality-"))
        (root / "gatelib.py").write_text(textwrap.dedent(LIBRARY))
        sys.path.insert(0, str(root))
        path = suite_file(root, args.seeds)
        plan = [("U", r) for r in range(args.reps + 1)]
        plan += [(k, r) for r in range(1, args.reps + 1) for k in ("L", "T")]
        plan += [("M", r) for r in range(1, args.memory_reps + 1)]
        boards = {}
        started, load = time.perf_counter(), os.getloadavg()
        for i, (kind, r) in enumerate(plan):
            env = {
                k: v.format(lr_bug=args.lr_bug, slowdown=args.slowdown) for k, v in INJECTIONS[kind].items()
            }
            boards[f"{kind}{r}"] = run_once(path, f"{kind}{r}", 1000 * r, env)
            elapsed = time.perf_counter() - started
            print(
                f"[{i + 1}/{len(plan)}] {kind}{r} done, {elapsed / 60:.1f} min", file=sys.stderr, flush=True
            )
        meta = {
            "reps": args.reps, "memory_reps": args.memory_reps, "seeds": args.seeds, "lr_bug": args.lr_bug,
            "slowdown": args.slowdown, "minutes": (time.perf_counter() - started) / 60,
            "load_at_start": load, "load_at_end": os.getloadavg(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
        }  # fmt: skip
        if args.out:  # the runs are the expensive part: keep them whatever the evaluation does
            args.out.write_text(json.dumps({"meta": meta, "boards": boards}, indent=1))
    result = evaluate(boards, meta["reps"], meta["memory_reps"])
    result["meta"] = meta
    print(markdown(result))
    print(json.dumps(meta))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "result": result, "boards": boards}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
