"""The fixed cost of one trial: what a trial pays before its first step and after its last.

Runs two small suites through the real engine (`bench.engine.run_suite`: Optuna slots, an MLflow run
per trial, `train_trial` with its Lightning Trainer), both on `digits_cnn` with AdamW, one at 1 step
per trial and one at `--steps` steps, `--trials` trials each, in one process, with fresh stores in a
temporary directory. Each trial's cost is the time between consecutive trial lines of the engine, so
it includes everything the engine does per trial. With t(s) the median cost of an s-step trial:

    per step    = (t(steps) - t(1)) / (steps - 1)
    fixed cost  = t(1) - per step          (the intercept of cost against steps)

and the fixed cost is split by where it is spent, with timers around the real calls: tracking
(`Tracker.open_trial`, `log_dict`, the metrics flush, `close_trial`), the runner (`train_trial`
minus its steps: model, data, Trainer construction, fit set-up and tear-down, the final validation)
and the rest (Optuna: popping the slot, sampling, user attributes, telling the result).

    OMP_NUM_THREADS=1 python benchmarks/trial_cost.py                  # target: fixed cost <= 0.2 s
    OMP_NUM_THREADS=1 python benchmarks/trial_cost.py --trials 30 --steps 41
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import yaml  # noqa: E402

from bench import engine, track  # noqa: E402
from bench.loader import load_suite  # noqa: E402

TARGET_S = 0.2
Timers = dict[str, list[float]]


def timed(owner: Any, name: str, timers: Timers, key: str) -> None:
    """Wrap `owner.name` so that every call's wall time is appended to `timers[key]`."""
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timers[key].append(time.perf_counter() - started)

    setattr(owner, name, wrapper)


def suite_file(directory: Path, name: str, steps: int, trials: int) -> Path:
    suite = {
        "name": name,
        "settings": {
            "tracking_uri": f"sqlite:///{directory / 'mlflow.db'}",
            "storage": f"sqlite:///{directory / 'optuna.db'}",
            "leaderboard_dir": str(directory / "leaderboards"),
        },
        "tasks": [{"name": "digits_cnn", "steps": steps, "eval_every": steps}],
        "optimizers": ["adamw"],
        "tuning": {"protocol": "random", "trials": trials, "seeds": 1, "pruner": "none"},
        "trainer": {"accelerator": "cpu", "devices": 1},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def run(directory: Path, name: str, steps: int, trials: int, timers: Timers) -> list[float]:
    """Run the suite; the seconds between consecutive trial lines (the first trial's is left out:
    it also pays for opening the study)."""
    stamps: list[float] = []

    def out(line: str) -> None:
        if line.startswith("["):  # a trial line: "[3/20] suite.task.optimizer ..."
            stamps.append(time.perf_counter())

    for series in timers.values():
        series.clear()
    engine.run_suite(load_suite(suite_file(directory, name, steps, trials)), leaderboard=False, out=out)
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20, help="trials per suite")
    p.add_argument("--steps", type=int, default=41, help="steps per trial of the longer suite")
    args = p.parse_args()

    timers: Timers = defaultdict(list)
    for method in ("open_trial", "log_dict", "close_trial"):
        timed(track.Tracker, method, timers, f"tracking.{method}")
    timed(track.MetricsWriter, "flush", timers, "tracking.flush")
    timed(engine, "train_trial", timers, "runner")

    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), "warmup", 1, 3, timers)  # imports, the stores' tables, torch's first kernels
        short = run(Path(tmp), "short", 1, args.trials, timers)
        short_split = {k: statistics.median(v) for k, v in timers.items()}
        long = run(Path(tmp), "long", args.steps, args.trials, timers)
        long_runner = statistics.median(timers["runner"])

    t1, ts = statistics.median(short), statistics.median(long)
    per_step = max(0.0, (long_runner - short_split["runner"]) / (args.steps - 1))
    fixed = t1 - per_step
    runner = short_split["runner"] - per_step
    tracking = sum(v for k, v in short_split.items() if k.startswith("tracking."))
    rest = fixed - runner - tracking
    print(f"digits_cnn, AdamW, {args.trials} trials per suite, torch threads {_threads()}, one process")
    print(f"median cost of a trial: 1 step {t1:.3f}s, {args.steps} steps {ts:.3f}s")
    print(f"per step {per_step * 1e3:.2f} ms (from the runner's time)")
    print(f"fixed cost per trial: {fixed:.3f}s   target <= {TARGET_S}s")
    print(f"  runner   {runner:.3f}s  (model, data, Trainer, fit set-up/tear-down, final validation)")
    print(f"  tracking {tracking:.3f}s  (MLflow: open run, resolved suite, metrics, close run)")
    print(f"  tuning   {rest:.3f}s  (Optuna: pop the slot, sample, attributes, tell; engine glue)")
    return 0 if fixed <= TARGET_S else 1


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
