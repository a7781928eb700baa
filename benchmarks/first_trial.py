"""How much the first trial of a fresh `bench run` costs against the later ones.

Starts a fresh Python process that, like the `bench` command (it imports `bench.cli` first), runs
through the real engine the quickstart's first study
(`pydocs_gpt_tiny` at its quickstart budget, 150 steps, evaluation every 50) with `--trials` trials
and fresh stores, as `bench run suites/quickstart.yaml` would, and records when each trial line
appears, in wall time and in the process's CPU time (`time.process_time`: the work done, whatever
else the machine runs). Printed: the first trial's cost counted from the process start (imports,
the stores' creation, then the trial) and from the suite's start, against the median of the later
trials, in both clocks. The CPU-time ratio says whether the first trial does extra work; the
wall-time ratio also carries the machine's load.

    python benchmarks/first_trial.py                 # target: first / later < 1.5
    OMP_NUM_THREADS=1 python benchmarks/first_trial.py --trials 3 --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.5


def child(steps: int, trials: int, directory: Path) -> None:
    """In the fresh process: run the study, print one JSON line of (wall, cpu) stamps."""
    stamps = {"start": (time.time(), time.process_time())}
    import yaml

    import bench.cli  # noqa: F401  first, as the `bench` command: it sets the OpenMP environment
    from bench.engine import run_suite
    from bench.loader import load_suite

    stamps["imported"] = (time.time(), time.process_time())
    suite = {
        "name": "first",
        "include": [
            str(Path(__file__).parents[1] / "suites" / "common" / "base.yaml"),
            str(Path(__file__).parents[1] / "suites" / "common" / "cpu.yaml"),
        ],  # fmt: skip
        "settings": {
            "tracking_uri": f"sqlite:///{directory / 'mlflow.db'}",
            "storage": f"sqlite:///{directory / 'optuna.db'}",
            "leaderboard_dir": str(directory / "leaderboards"),
        },
        "tasks": [{"name": "pydocs_gpt_tiny", "steps": steps, "eval_every": 50}],
        "optimizers": ["adamw"],
        "tuning": {"trials": trials, "seeds": 1},
    }
    path = directory / "first.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    lines: list[tuple[float, float]] = []

    def out(line: str) -> None:
        if line.startswith("["):
            lines.append((time.time(), time.process_time()))

    loaded = load_suite(path)
    stamps["suite"] = (time.time(), time.process_time())
    run_suite(loaded, leaderboard=False, out=out)
    print(json.dumps({"stamps": stamps, "trials": lines}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.steps, args.trials, args.child)
        return 0

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        launched = time.time()
        command = [
            sys.executable,
            __file__,
            "--child",
            tmp,
            "--steps",
            str(args.steps),
            "--trials",
            str(args.trials),
        ]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    stamps, trials = report["stamps"], report["trials"]
    wall = [trials[0][0] - stamps["suite"][0]] + [
        b[0] - a[0] for a, b in zip(trials, trials[1:], strict=False)
    ]
    cpu = [trials[0][1] - stamps["suite"][1]] + [
        b[1] - a[1] for a, b in zip(trials, trials[1:], strict=False)
    ]
    later_wall, later_cpu = statistics.median(wall[1:]), statistics.median(cpu[1:])
    from_launch = trials[0][0] - launched
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"pydocs_gpt_tiny, AdamW, {args.steps} steps, {args.trials} trials, OMP_NUM_THREADS={threads}")
    print(f"process start to imports done: {stamps['imported'][0] - launched:.1f}s wall, "
          f"{stamps['imported'][1]:.1f}s CPU")  # fmt: skip
    print(
        f"trials (wall): {', '.join(f'{w:.1f}' for w in wall)} s;  (CPU): {', '.join(f'{c:.1f}' for c in cpu)} s"
    )
    print(f"first trial from the suite's start / median later: wall {wall[0] / later_wall:.2f}, "
          f"CPU {cpu[0] / later_cpu:.2f}")  # fmt: skip
    print(f"first trial from the process start / median later: wall {from_launch / later_wall:.2f}"
          f"   target < {TARGET} (from the suite's start)")  # fmt: skip
    return 0 if wall[0] / later_wall < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
