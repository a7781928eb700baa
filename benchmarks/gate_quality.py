"""How often `bench check` cries wolf, and how often it catches a regression of a stated size: measured.

A tiny suite (digits_cnn, 60 steps, each optimizer at its defaults on `--seeds` seeds: the tuning run
and its reruns) compares torch's AdamW, the reference, with a stand-in "library" optimizer (`gatelib`,
an AdamW subclass at lr 3e-3 written to a temporary directory). The suite runs many times in this one
process, each run on fresh seeds (`tuning.first_seed = 1000 r`):

- U_r, r = 0..N: unchanged code. U_0 is the pinned baseline.
- L_r, r = 1..N, for each of `--lr-bugs`: the library with a learning-rate bug, its update uses that
  multiple of the lr.
- T_r, r = 1..N: the library `--slowdown` slower: after each update it spins for that fraction of the
  time its previous step took (so each step takes that much longer).
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
        self._entered, self._extra = None, 0.0

    def step(self, closure=None):
        now = time.perf_counter()
        slowdown = float(os.environ.get("GATELIB_SLOWDOWN", "0"))
        interval = None if self._entered is None else now - self._entered - self._extra
        self._entered, self._extra = now, 0.0
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
        if slowdown and interval is not None:  # extra work, as a slower kernel would do (not a sleep,
            self._extra = slowdown * interval  # whose wake-up on a busy machine takes milliseconds)
            until = time.perf_counter() + self._extra
            while time.perf_counter() < until:
                pass
        return loss
'''

STEP_TOLS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.5)
QUALITY_VARIANTS: dict[str, dict[str, Any]] = {  # the quality gate under other settings (same runs)
    "defaults (alpha 0.05, Holm, margin 2%)": {},
    "noise_floor 0.005": {"noise_floor": {"digits_cnn": 0.005}},
    "correction bh": {"correction": "bh"},
    "alpha 0.01": {"alpha": 0.01},
    "method tolerance (the older rule)": {"method": "tolerance"},
}


def injection(kind: str, slowdown: float) -> dict[str, str]:
    """The environment that switches on run kind's regression in the stand-in library."""
    if kind.startswith("L"):
        return {"GATELIB_LR_SCALE": kind[1:]}
    return {"U": {}, "T": {"GATELIB_SLOWDOWN": str(slowdown)}, "M": {"GATELIB_EXTRA_STATE": "1"}}[kind]


def key(kind: str, r: int) -> str:
    return f"{kind}#{r}"


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


def evaluate(boards: dict[str, dict], meta: dict[str, Any]) -> dict[str, Any]:
    from bench.schema import CheckSpec

    reps, memory_reps, bugs = meta["reps"], meta["memory_reps"], [f"L{x:g}" for x in meta["lr_bugs"]]
    spec = CheckSpec(update_time_tol=None, beat="adamw")
    out: dict[str, Any] = {
        "settings": spec.model_dump(),
        "rates": {},
        "step_tol_sweep": {},
        "quality_variants": {},
    }

    def count(pairs: list[tuple[str, str | None]], gate: str, s: Any = spec) -> dict[str, Any]:
        hits = [verdicts(boards[c], boards[b] if b else None, s)[gate] for c, b in pairs if c in boards]
        return rate(sum(hits), len(hits))

    def against(
        kind: str, base: str | None, first: int = 1, last: int = reps
    ) -> list[tuple[str, str | None]]:
        """(run of `kind`, its baseline) for r in first..last: base "U0" (pinned), "Ur" (same seeds), None."""
        ref = {"U0": lambda r: key("U", 0), "Ur": lambda r: key("U", r), None: lambda r: None}[base]
        return [(key(kind, r), ref(r)) for r in range(first, last + 1)]

    unchanged = against("U", "U0")
    rates = out["rates"]
    rates["false alarm: quality (unpaired, fresh seeds)"] = count(unchanged, "quality")
    rates["false alarm: step time"] = count(unchanged, "step")
    rates["false alarm: memory"] = count(unchanged, "memory")
    rates["false alarm: any gate"] = rate(
        sum(
            any(verdicts(boards[c], boards[b], spec)[g] for g in ("quality", "step", "memory"))
            for c, b in unchanged
        ),
        len(unchanged),
    )
    for bug in bugs:
        rates[f"lr x {bug[1:]} caught: quality, unpaired vs U0"] = count(against(bug, "U0"), "quality")
        rates[f"lr x {bug[1:]} caught: quality, paired vs U_r"] = count(against(bug, "Ur"), "quality")
    rates["+slowdown caught: step time vs U0"] = count(against("T", "U0"), "step")
    rates["+50% state caught: memory vs U0"] = count(against("M", "U0", last=memory_reps), "memory")
    rates["lib shown to beat adamw (unchanged)"] = count(against("U", None, first=0), "beats")
    for bug in bugs:
        rates[f"lib shown to beat adamw (lr x {bug[1:]})"] = count(against(bug, None), "beats")
    for tol in STEP_TOLS:
        s = CheckSpec(step_time_tol=tol, update_time_tol=None)
        out["step_tol_sweep"][f"{tol:g}"] = {
            "false alarm": count(unchanged, "step", s),
            "+slowdown caught": count(against("T", "U0"), "step", s),
        }
    for name, variant in QUALITY_VARIANTS.items():
        s = CheckSpec(**variant)
        row = {"false alarm (unpaired)": count(unchanged, "quality", s)}
        for bug in bugs:
            row[f"lr x {bug[1:]} caught (unpaired)"] = count(against(bug, "U0"), "quality", s)
            row[f"lr x {bug[1:]} caught (paired)"] = count(against(bug, "Ur"), "quality", s)
        out["quality_variants"][name] = row
    out["effect"] = effects(boards)
    return out


def effects(boards: dict[str, dict]) -> dict[str, Any]:
    """What each kind of run measured, as mean and sd over its runs: the library's and AdamW's val/error
    (means over their seeds), the library's seed std, and its step-time ratio to AdamW."""
    import numpy as np

    kinds = sorted({k.split("#")[0] for k in boards})
    out: dict[str, Any] = {}
    for kind in kinds:
        runs = [b["tasks"]["digits_cnn"]["optimizers"] for k, b in boards.items() if k.split("#")[0] == kind]
        cols = {
            "lib val/error": [r["lib"]["seed_mean"] for r in runs],
            "adamw val/error": [r["adamw"]["seed_mean"] for r in runs],
            "lib seed std": [r["lib"]["seed_std"] for r in runs if r["lib"]["seed_std"] is not None],
            "lib/adamw step time": [r["lib"]["cost"]["step_time_s_ratio"] for r in runs],
            "lib/adamw state bytes": [r["lib"]["cost"]["state_bytes_ratio"] for r in runs],
        }
        out[kind] = {
            name: {
                "mean": float(np.mean(v)),
                "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                "n": len(v),
            }
            for name, v in cols.items()
            if v
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    def fmt(r: dict) -> str:
        lo, hi = r["ci95"] or (float("nan"), float("nan"))
        return f"{r['k']}/{r['n']} = {r['rate']:.0%} (95% CI {lo:.0%}-{hi:.0%})"

    lines = ["| what | rate |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in result["rates"].items()]
    lines += ["", "| step_time_tol | false alarm | +slowdown caught |", "|---|---|---|"]
    for tol, v in result["step_tol_sweep"].items():
        lines.append(f"| {tol} | {fmt(v['false alarm'])} | {fmt(v['+slowdown caught'])} |")
    columns = list(next(iter(result["quality_variants"].values())))
    lines += ["", "| quality gate | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, v in result["quality_variants"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(x) for x in v.values()) + " |")
    lines += ["", "```", json.dumps(result["effect"], indent=1), "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=40, help="reruns of each kind (default 40)")
    p.add_argument("--memory-reps", type=int, default=3, help="runs with the extra state (deterministic)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per run: the tuning run and its reruns")
    p.add_argument("--lr-bugs", type=float, nargs="+", default=[0.5, 0.8], help="lr multipliers of the bugs")
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
        kinds = [f"L{x:g}" for x in args.lr_bugs] + ["T"]
        plan = [("U", r) for r in range(args.reps + 1)]
        plan += [(k, r) for r in range(1, args.reps + 1) for k in kinds]
        plan += [("M", r) for r in range(1, args.memory_reps + 1)]
        boards = {}
        started, load = time.perf_counter(), os.getloadavg()
        for i, (kind, r) in enumerate(plan):
            boards[key(kind, r)] = run_once(
                path, f"{kind.replace('.', '_')}_{r}", 1000 * r, injection(kind, args.slowdown)
            )
            minutes = (time.perf_counter() - started) / 60
            print(
                f"[{i + 1}/{len(plan)}] {key(kind, r)} done, {minutes:.1f} min", file=sys.stderr, flush=True
            )
        meta = {
            "reps": args.reps, "memory_reps": args.memory_reps, "seeds": args.seeds, "lr_bugs": args.lr_bugs,
            "slowdown": args.slowdown, "minutes": (time.perf_counter() - started) / 60,
            "load_at_start": load, "load_at_end": os.getloadavg(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
        }  # fmt: skip
        if args.out:  # the runs are the expensive part: keep them whatever the evaluation does
            args.out.write_text(json.dumps({"meta": meta, "boards": boards}, indent=1))
    result = evaluate(boards, meta)
    result["meta"] = meta
    print(markdown(result))
    print(json.dumps(meta))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "result": result, "boards": boards}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
