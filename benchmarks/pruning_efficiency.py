"""Compute a pruned TPE search spends to match a full one, as a fraction of the full search's compute.

A *full* TPE search (no pruner) trains `trials` configurations of an optimizer on a CPU task for `steps`
steps each; its best value is the goal and its compute, trials x steps, the yardstick. A *pruned* TPE
search of the same optimizer, task and sampler seed (median or hyperband pruner, reporting every
`eval_every` steps) then runs until its best completed trial is within `tol` (relative) of the goal, or
until it has spent as much compute as the full search. Compute is counted in trial-steps: the optimizer
steps a trial actually ran (a pruned or diverged trial counts the steps it ran). The script prints

    fraction = trial-steps the pruned search spent to get within tol of the goal / the full search's

(inf: not within the same compute). Target: <= 0.35. It also prints the fraction when the pruned search
gets the full search's *trial* budget rather than its compute (what `tuning.trials` buys in a suite).
Same sampler seed: both searches start from the same random TPE startup draws, so the comparison is
paired, as if the same suite were run with and without a pruner (when the full search's best is one of
those first draws, the pruned search finds it for the few steps spent until then). `--independent`
gives the pruned search another sampler seed: the stricter question of whether pruning finds an equally
good configuration from different draws.

Each search runs through the pieces the engine uses (`bench.search` samplers, pruners and
pruning callable; `bench.run.train_trial`; the suite loader), minus MLflow and the slot bookkeeping, so
the number measures the tuning protocol, not the stores. One torch thread: the models are tiny.

    python benchmarks/pruning_efficiency.py                        # digits_mlp, adamw, 32 x 200 steps
    python benchmarks/pruning_efficiency.py --pruner hyperband --seeds 0 1 2 --metric val/loss
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import optuna  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from bench import search  # noqa: E402
from bench.engine import trial_spec  # noqa: E402
from bench.loader import load_suite  # noqa: E402
from bench.plan import StudyPlan, make_plan  # noqa: E402
from bench.run import train_trial  # noqa: E402
from bench.spec import Suite  # noqa: E402


@dataclass(frozen=True)
class Trial:
    outcome: str
    steps: int  # optimizer steps it ran
    value: float  # final metric; NaN unless completed with a finite value


def suite_for(args: argparse.Namespace, directory: Path) -> tuple[Suite, StudyPlan]:
    """The one-study suite both searches tune, through the real suite loader."""
    task = {"name": args.task, "steps": args.steps, "eval_every": args.eval_every}
    if args.metric:
        task["metric"] = args.metric
    data = {
        "name": "pruning",
        "settings": {"tracking_uri": f"sqlite:///{directory / 'unused.db'}", "storage": str(directory / "unused.log")},
        "tasks": [task],
        "optimizers": [args.optimizer],
        "tuning": {"protocol": "tpe", "trials": args.trials},
        "trainer": {"accelerator": "cpu", "devices": 1},
    }  # fmt: skip
    path = directory / "pruning.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    suite = load_suite(path)
    return suite, make_plan(suite).studies[0]


def run_search(
    suite: Suite, sp: StudyPlan, pruner: str, seed: int, max_trials: int, stop: Callable[[list[Trial]], bool]
) -> list[Trial]:
    """A TPE search as the engine runs it (outcomes; pruning at the optimizer step; the worst value for
    failed trials), in memory, until `max_trials` or until `stop(trials so far)`."""
    space = sp.optimizer.search_space
    study = optuna.create_study(
        direction="minimize" if sp.task.mode == "min" else "maximize",
        sampler=search.make_sampler("tpe", seed, space),
        pruner=search.make_pruner(pruner, sp.task.steps, sp.task.eval_every or sp.task.steps),
    )
    record: list[Trial] = []
    worst = math.inf if sp.task.mode == "min" else -math.inf

    def objective(trial: optuna.Trial) -> float:
        hparams = search.suggest(trial, space)
        spec = trial_spec(suite, sp, hparams, seed=0)  # tuning trials train on seed 0, as in the engine
        result = train_trial(spec, on_eval=search.pruning_callable(trial) if pruner != "none" else None)
        ok = result.outcome == "completed" and math.isfinite(result.value)
        record.append(Trial(result.outcome, result.steps, result.value if ok else math.nan))
        if result.outcome == "pruned":
            raise search.TrialPruned()
        return result.value if ok else worst

    def maybe_stop(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if stop(record):
            study.stop()

    study.optimize(objective, n_trials=max_trials, callbacks=[maybe_stop], gc_after_trial=False)
    return record


def best(trials: list[Trial], mode: str) -> float:
    values = [t.value for t in trials if math.isfinite(t.value)]
    if not values:
        return math.nan
    return min(values) if mode == "min" else max(values)


def steps_to_match(trials: list[Trial], goal: float, tol: float, mode: str) -> float:
    """Trial-steps spent until the best completed value is within `tol` (relative) of `goal`."""
    spent, slack = 0, tol * abs(goal)
    for t in trials:
        spent += t.steps
        if math.isfinite(t.value) and (t.value <= goal + slack if mode == "min" else t.value >= goal - slack):
            return float(spent)
    return math.inf


def describe(name: str, trials: list[Trial], mode: str) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    shown = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    return (
        f"  {name:<19} {len(trials):>3} trials, best {best(trials, mode):.4g}, "
        f"{sum(t.steps for t in trials):>6} trial-steps ({shown})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="digits_mlp")
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--metric", default=None, help="the task metric to tune (default: the task's own)")
    p.add_argument("--trials", type=int, default=32)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--pruner", default="median", choices=["median", "hyperband"])
    p.add_argument("--tol", type=float, default=0.01, help="relative distance to the full search's best")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampler seeds; the median is printed"
    )
    p.add_argument(
        "--max-trials", type=int, default=None, help="cap on the pruned search (default 4 x trials)"
    )
    p.add_argument("--independent", action="store_true", help="pruned search with another sampler seed")
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.monotonic()
    fractions, per_trial_budget = [], []
    with tempfile.TemporaryDirectory() as tmp:
        suite, sp = suite_for(args, Path(tmp))
        os.chdir(tmp)  # Lightning's default_root_dir (.bench/lightning) lands in the temporary directory
        mode = sp.task.mode
        print(
            f"pruning efficiency: {sp.task.name} / {sp.optimizer.label}, metric {sp.task.metric} ({mode}), tpe, "
            f"{args.trials} trials x {args.steps} steps, eval every {args.eval_every}, pruner {args.pruner}, "
            f"tol {args.tol:g}, seeds {args.seeds}{' (pruned: seed + 1000)' if args.independent else ''}"
        )
        for seed in args.seeds:
            full = run_search(suite, sp, "none", seed, args.trials, lambda trials: False)
            goal, compute = best(full, mode), sum(t.steps for t in full)

            def done(trials: list[Trial], goal: float = goal, compute: int = compute) -> bool:
                spent = sum(t.steps for t in trials)
                return spent >= compute or math.isfinite(steps_to_match(trials, goal, args.tol, mode))

            pruned_seed = seed + 1000 if args.independent else seed
            pruned = run_search(suite, sp, args.pruner, pruned_seed, args.max_trials or 4 * args.trials, done)
            fraction = steps_to_match(pruned, goal, args.tol, mode) / compute
            same_trials = steps_to_match(pruned[: args.trials], goal, args.tol, mode) / compute
            fractions.append(fraction)
            per_trial_budget.append(same_trials)
            print(f"seed {seed}: goal {goal:.4g} (full search's best), compute {compute} trial-steps")
            print(describe("full (no pruner)", full, mode))
            print(describe(f"pruned ({args.pruner})", pruned, mode))
            print(
                f"  fraction {fraction:.3f}; within the first {args.trials} pruned trials: {same_trials:.3f}"
            )
            sys.stdout.flush()
    median = statistics.median(fractions)
    print(
        f"fraction = {median:.3f} (median over seeds {', '.join(f'{f:.3f}' for f in fractions)}; "
        f"target <= 0.35: {'ok' if median <= 0.35 else 'missed'}); "
        f"with the same trial budget instead of the same compute: {statistics.median(per_trial_budget):.3f}; "
        f"{time.monotonic() - started:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
