"""How long scoring and reporting take on a large trials table, sweeps included.

Builds a synthetic table of `--trials` trials (tasks x optimizers, tune trials plus seed reruns, every
outcome represented, a quadratic loss-vs-log-lr valley per optimizer; the tasks alternate between random
search over lr and weight decay and the sweep protocol: an lr grid, then 1-D sweeps of the weight decay
and the warmup at the best lr), then times `score.leaderboard()` (without and with hyperparameter
importance, Optuna's fANOVA on every random-search study) and `report.write_leaderboard()` separately:

    python benchmarks/leaderboard_scale.py --trials 10000 --out /tmp/leaderboard_scale

Target: 10,000 trials scored in under 10 s (the scores, without importance).
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
    a weight-decay term + noise; trials far from the optimum diverge, a few are pruned, time out, run out
    of memory or error. Task i alternates mode min (a loss) and max (an accuracy, 1 - loss), and every
    other pair of tasks is a sweep. Targets are reachable by some. Failures cost 1.0 (the loss at init).
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
            sweep = (ti // 2) % 2 == 1
            axis, axis_value, log_wd, warmup = _points(rng, per_study, center, sweep)
            log_lr = np.where(axis == "lr", axis_value, center).astype(float) if sweep else axis_value
            loss = floor + 0.08 * (log_lr - center) ** 2 + 0.02 * (log_wd + 1.5) ** 2
            loss = loss + 0.3 * (warmup - 0.05) ** 2 + rng.normal(0, 0.01, per_study)
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
                        "steps": steps,
                        "time_s": steps * 0.01 * (1 + 0.1 * oi),
                        "steps_to_target": np.concatenate([stt, seed_stt]),
                        "tokens_to_target": np.concatenate([stt, seed_stt]) * 4096,
                        "seconds_to_target": np.concatenate([stt, seed_stt]) * 0.01 * (1 + 0.1 * oi),
                        "tokens_per_step": 4096.0,
                        "protocol": "sweep" if sweep else "random",
                        "failure_value": 1.0 if mode == "min" else 0.0,
                        "params": [
                            {"lr": 10**a, "weight_decay": 10**w} for a, w in zip(log_lr, log_wd, strict=True)
                        ]
                        + [{"lr": best_lr, "weight_decay": 10**-1.5}] * n_seeds,
                        "axis": np.concatenate([axis, [""] * n_seeds]) if sweep else "",
                        "axis_value": np.concatenate([_values(axis, axis_value), [np.nan] * n_seeds])
                        if sweep
                        else np.nan,
                        "axis_scale": np.concatenate([_scales(axis), [""] * n_seeds]) if sweep else "",
                        "warmup": np.concatenate([warmup, [0.05] * n_seeds]),
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


def _points(
    rng: np.random.Generator, n: int, center: float, sweep: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(axis, axis position: log10 lr or log10 weight decay or warmup, log10 weight decay, warmup) of n
    trials: random draws, or a sweep (half lr grid at 8 per decade, then weight decay and warmup)."""
    if not sweep:
        return np.full(n, ""), rng.uniform(-5.0, -0.5, n), rng.uniform(-4, 0, n), np.full(n, 0.05)
    n_lr = n // 2
    n_wd = (n - n_lr) // 2
    n_wu = n - n_lr - n_wd
    lr = np.round(np.linspace(center - n_lr / 16, center + n_lr / 16, n_lr) * 8) / 8  # 8 per decade
    wd = np.linspace(-4, 0, n_wd)
    wu = np.linspace(0.0, 0.3, n_wu)
    axis = np.array(["lr"] * n_lr + ["weight_decay"] * n_wd + ["warmup"] * n_wu)
    log_wd = np.concatenate([np.full(n_lr, -1.5), wd, np.full(n_wu, -1.5)])
    warmup = np.concatenate([np.full(n_lr + n_wd, 0.05), wu])
    return axis, np.concatenate([lr, wd, wu]), log_wd, warmup


def _values(axis: np.ndarray, position: np.ndarray) -> np.ndarray:
    return np.where(axis == "warmup", position, 10.0**position)


def _scales(axis: np.ndarray) -> np.ndarray:
    return np.where(axis == "warmup", "linear", "log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--optimizers", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None, help="report directory (default: a temp dir)")
    args = parser.parse_args()
    from bench import search
    from bench.schema import LeaderboardSpec
    from bench.space import Float

    df, curves = synthetic_trials(args.trials, args.tasks, args.optimizers)
    spec = LeaderboardSpec(ks=(1, 4, 16))
    space = {"lr": Float(1e-5, 0.3, log=True), "weight_decay": Float(1e-4, 1.0, log=True)}
    spaces = {o: space for o in df["optimizer"].unique()}
    # CPU seconds beside wall seconds: on a shared machine the wall clock also measures the neighbours
    t0, c0 = time.perf_counter(), time.process_time()
    score.leaderboard(df, spec)
    t1, c1 = time.perf_counter(), time.process_time()
    timed = {}
    for evaluator in ("ped_anova", "fanova"):
        start, cpu = time.perf_counter(), time.process_time()
        board = score.leaderboard(
            df, spec, importance=lambda c, v, sp, e=evaluator: search.importances(c, v, sp, e), spaces=spaces
        )
        timed[evaluator] = (time.perf_counter() - start, time.process_time() - cpu)
    t2, c2 = time.perf_counter(), time.process_time()
    out = args.out or Path(tempfile.mkdtemp(prefix="leaderboard_scale_"))
    paths = report.write_leaderboard(board, df, curves, out, "scale")
    t3, c3 = time.perf_counter(), time.process_time()
    sweeps = df[(df["protocol"] == "sweep") & (df["kind"] == "tune")]
    n_random = int((board.rows["protocol"] == "random").sum())
    print(
        f"trials: {len(df)} ({args.tasks} tasks x {args.optimizers} optimizers; {len(sweeps)} sweep points)"
    )
    print(
        f"leaderboard():                 {t1 - t0:6.2f} s wall {c1 - c0:6.2f} s cpu   (the scores; target < 10 s)"
    )
    for evaluator, (wall, cpu) in timed.items():
        print(
            f"  with importance, {evaluator:9s}  {wall:6.2f} s wall {cpu:6.2f} s cpu   ({n_random} random-search studies)"
        )
    print(
        f"write_leaderboard():           {t3 - t2:6.2f} s wall {c3 - c2:6.2f} s cpu   ({len(paths)} files in {out})"
    )


if __name__ == "__main__":
    main()
