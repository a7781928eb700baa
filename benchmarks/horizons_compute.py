"""Compute of a horizons run (one WSD trunk + a cooldown per horizon) as a fraction of separate runs.

Two suites train the same task, optimizer, seed and hyperparameters (protocol `defaults`) with the same
WSD schedule (warmup in steps, cooldown a fraction of each run): one with `horizons`, one with a `steps`
scan over the same lengths, each through `bench run` into its own temporary stores. Printed: the
optimizer steps of each (exact, from the plan) and the measured training seconds (sum of the recorded
runs' `time_s`), both as a fraction of the separate runs, and the largest difference between a
horizon's final metric and its separate run's.

    python benchmarks/horizons_compute.py                     # digits_cnn, 800 steps, horizons 1/8 1/4 1/2 1
    python benchmarks/horizons_compute.py --task pydocs_gpt_tiny --steps 400

Hägele et al. 2024 (Fig. 1 and section 4) report the same accounting: one run with cooldowns from
checkpoints costs the longest run plus the cooldowns, instead of the sum of all lengths.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import yaml  # noqa: E402

from bench.engine import run_suite  # noqa: E402
from bench.loader import load_suite  # noqa: E402
from bench.plan import make_plan  # noqa: E402
from bench.track import Tracker  # noqa: E402


def suite_file(directory: Path, name: str, task: dict, schedule: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "name": name,
        "settings": {
            "tracking_uri": f"sqlite:///{directory / 'mlflow.db'}",
            "storage": f"sqlite:///{directory / 'optuna.db'}",
            "leaderboard_dir": str(directory / "boards"),
            "checkpoint_dir": str(directory / "checkpoints"),
        },
        "tasks": [task],
        "optimizers": [{"name": "adamw", "ema": 0.99}],
        "schedule": schedule,
        "tuning": {"protocol": "defaults", "trials": 1, "seeds": 1},
        "trainer": {"accelerator": "cpu", "devices": 1},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="digits_cnn")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--horizons", type=float, nargs="+", default=[0.125, 0.25, 0.5])
    p.add_argument("--cooldown", type=float, default=0.2)
    p.add_argument("--warmup", type=int, default=20)
    args = p.parse_args()

    schedule = {"name": "wsd", "warmup": args.warmup, "cooldown": args.cooldown, "cooldown_shape": "1-sqrt"}
    with tempfile.TemporaryDirectory(prefix="bench-horizons-") as tmp:
        root = Path(tmp)
        base = {"name": args.task, "steps": args.steps, "eval_every": max(1, args.steps // 16)}
        one = load_suite(suite_file(root / "one", "one", base, {**schedule, "horizons": args.horizons}))
        lengths = list(make_plan(one).studies[0].horizons.steps)  # type: ignore[union-attr]
        sep = load_suite(suite_file(root / "sep", "sep", {**base, "scan": {"steps": lengths}}, schedule))
        steps_one, steps_sep = make_plan(one).estimate.steps, make_plan(sep).estimate.steps

        walls = {}
        for suite in (one, sep):
            began = time.perf_counter()
            run_suite(suite, progress=False, leaderboard=False, out=lambda _: None)
            walls[suite.name] = time.perf_counter() - began
        one_t = Tracker(one.settings.tracking_uri, "one").results_table()
        sep_t = Tracker(sep.settings.tracking_uri, "sep").trials_table()
        horizons = one_t[one_t["kind"] == "horizon"].set_index("horizon")["value"]
        separate = sep_t.set_index("steps")["value"]
        trained_one = float(one_t.loc[one_t["kind"] == "tune", "time_s"].sum())  # the whole run's seconds
        trained_sep = float(sep_t["time_s"].sum())
        diff = max(abs(float(horizons[h]) - float(separate[h])) for h in lengths)

    print(
        f"task {args.task}, horizons {lengths} steps, WSD warmup {args.warmup}, cooldown {args.cooldown} (1-sqrt)"
    )
    print(
        f"optimizer steps:   horizons run {steps_one}, separate runs {steps_sep}: {steps_one / steps_sep:.3f}"
    )
    print(f"training seconds:  horizons run {trained_one:.1f}, separate runs {trained_sep:.1f}: "
          f"{trained_one / trained_sep:.3f} (measured in this process, one after the other)")  # fmt: skip
    print(f"bench run seconds: {walls['one']:.1f} vs {walls['sep']:.1f}: {walls['one'] / walls['sep']:.3f} "
          "(with setup, checkpoints and MLflow)")  # fmt: skip
    print(f"largest |horizon - separate run| of the final {one.tasks[0].metric}: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
