"""How long scoring and reporting take on a large trials table.

Builds a synthetic table of `--trials` trials (tasks x optimizers, tune trials plus seed reruns, every
outcome represented, a quadratic loss-vs-log-lr valley per optimizer), then times `score.leaderboard()`
and `report.write_leaderboard()` separately:

    python benchmarks/leaderboard_scale.py --trials 10000 --out /tmp/leaderboard_scale

Target: 10,000 trials scored in well under 10 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import report, score


def synthetic_trials(
    n_trials: int = 10_000, n_tasks: int = 8, n_optimizers: int = 6, n_seeds: int = 3, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, dict[str, list[tuple[int, float]]]]]:
    """A trials table shaped like track.py's and loss curves for the best-looking trials.

    Each optimizer has an optimal log10(lr) and a floor; value = floor + curvature * (log lr - opt)^2 +
    noise; trials far from the optimum diverge, a few are pruned, time out, run out of memory or error.
    Task i alternates mode min (a loss) and max (an accuracy, 1 - loss). Targets are reachable by some.
    """
    rng = np.random.default_rng(seed)
    tasks = [f"task{i}_{'loss' if i % 2 == 0 else 'acc'}" for i in range(n_tasks)]
    opts = ["adamw", *[f"opt{j}" for j in range(1, n_optimizers)]]
    n_studies = n_tasks * n_optimizers
    per_study = max(1, n_trials // n_studies - n_seeds)
    steps = 1000
    frames, curves = [], {}
    for ti, task in enumerate(tasks):
        mode = "min" if ti % 2 == 0 else "max"
        target = 0.35
        for oi, opt in enumerate(opts):
            center = rng.uniform(-3.5, -2.0)
            floor = 0.2 + 0.05 * oi * rng.uniform(0.5, 1.5)
            log_lr = rng.uniform(-5.0, -0.5, per_study)
            loss = floor + 0.08 * (log_lr - center) ** 2 + rng.normal(0, 0.01, per_study)
            outcome = np.where(log_lr - center > 1.5, "diverged", "completed").astype(object)
            u = rng.uniform(size=per_study)
            outcome[(u < 0.05) & (outcome == "completed")] = "pruned"
            outcome[(u > 0.99) & (outcome == "completed")] = "timeout"
            outcome[(u > 0.985) & (u <= 0.99) & (outcome == "completed")] = "oom"
            outcome[(u > 0.98) & (u <= 0.985) & (outcome == "completed")] = "error"
            value = np.where(outcome == "completed", loss, np.nan)
            value = np.where(outcome == "pruned", loss + 0.3, value)
            reached = (outcome != "pruned") & (loss <= target)
            stt = np.where(reached, steps * np.clip(loss / target, 0.2, 1.0), np.nan).round()
            best_lr = 10 ** log_lr[np.nanargmin(np.where(outcome == "completed", loss, np.inf))]
            seed_loss = loss.min() + np.abs(rng.normal(0, 0.01, n_seeds))
            seed_stt = np.where(
                seed_loss <= target, steps * np.clip(seed_loss / target, 0.2, 1.0), np.nan
            ).round()
            study = f"{task}/{opt}"
            n = per_study + n_seeds
            all_loss = np.concatenate([value, seed_loss])
            frames.append(
                pd.DataFrame(
                    {
                        "suite": "scale",
                        "task": task,
                        "optimizer": opt,
                        "study": study,
                        "trial_id": [f"{study}/{i}" for i in range(n)],
                        "number": np.arange(n),
                        "kind": ["tune"] * per_study + ["seed"] * n_seeds,
                        "seed": np.concatenate([np.zeros(per_study, int), np.arange(1, n_seeds + 1)]),
                        "outcome": np.concatenate([outcome, ["completed"] * n_seeds]),
                        "value": all_loss if mode == "min" else 1.0 - all_loss,
                        "mode": mode,
                        "target": target if mode == "min" else 1.0 - target,
                        "metric": "val/loss" if mode == "min" else "val/accuracy",
                        "lr": np.concatenate([10**log_lr, np.full(n_seeds, best_lr)]),
                        "params": [{}] * n,
                        "steps": steps,
                        "time_s": steps * 0.01 * (1 + 0.1 * oi),
                        "steps_to_target": np.concatenate([stt, seed_stt]),
                        "tokens_to_target": np.concatenate([stt, seed_stt]) * 4096,
                        "seconds_to_target": np.concatenate([stt, seed_stt]) * 0.01 * (1 + 0.1 * oi),
                        "tokens_per_step": 4096.0,
                    }
                )
            )
            best = int(np.nanargmin(np.where(outcome == "completed", loss, np.inf)))
            xs = np.arange(0, steps + 1, 50)
            decay = loss[best] + (2.5 - loss[best]) * np.exp(-xs / 200)
            val = decay if mode == "min" else 1.0 - decay
            curves[f"{study}/{best}"] = {
                "val": list(zip(xs.tolist(), val.tolist(), strict=True)),
                "train": list(zip(xs.tolist(), (decay * 0.95).tolist(), strict=True)),
            }
    return pd.concat(frames, ignore_index=True), curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--optimizers", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None, help="report directory (default: a temp dir)")
    args = parser.parse_args()
    from bench.schema import LeaderboardSpec

    df, curves = synthetic_trials(args.trials, args.tasks, args.optimizers)
    spec = LeaderboardSpec(ks=(1, 4, 16))
    # CPU seconds beside wall seconds: on a shared machine the wall clock also measures the neighbours
    t0, c0 = time.perf_counter(), time.process_time()
    board = score.leaderboard(df, spec)
    t1, c1 = time.perf_counter(), time.process_time()
    out = args.out or Path(tempfile.mkdtemp(prefix="leaderboard_scale_"))
    paths = report.write_leaderboard(board, df, curves, out, "scale")
    t2, c2 = time.perf_counter(), time.process_time()
    print(f"trials: {len(df)} ({args.tasks} tasks x {args.optimizers} optimizers)")
    print(f"leaderboard():       {t1 - t0:6.2f} s wall {c1 - c0:6.2f} s cpu")
    print(f"write_leaderboard(): {t2 - t1:6.2f} s wall {c2 - c1:6.2f} s cpu ({len(paths)} files in {out})")
    print(f"total:               {t2 - t0:6.2f} s wall {c2 - c0:6.2f} s cpu")


if __name__ == "__main__":
    main()
