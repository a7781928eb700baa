"""Expand a suite into studies and trials, with stable ids and a cost estimate. Pure and instant.

A study is one (task, optimizer) pair: `trials` tuning trials, each a training run of `steps` steps with
hyperparameters from the optimizer's search space, then `seeds - 1` reruns of the best configuration
(the tuning trials run on seed `first_seed`, 0 by default; reruns use the next `seeds - 1` seeds, so
`seeds: 1` means no reruns). The `sweep` protocol's trials are its points (`bench.sweep`): `trials`
counts those every sweep runs exactly, `extension` the most that its conditional lr extensions may add
(an upper bound, shown so).

    plan = make_plan(load_suite("suites/quickstart.yaml"))   # bench.loader.load_suite
    print(format_plan(plan))
    for study in plan.studies:
        study.name, study.fingerprint, trial_id(study.name, 0), seed_run_id(study.name, 1)

`StudyPlan.fingerprint` hashes everything that changes the results of a study (task version and budget,
search space, fixed values, schedule, tuning protocol ...): a stored study whose fingerprint differs
from the plan's is stale and must not be resumed. It leaves out what only changes bookkeeping (time
budgets, targets, leaderboard settings, stores) and the budget itself: the number of trials and of seed
reruns, so that a larger `tuning.trials` (or `seeds`) extends the recorded studies instead of refusing
them (`bench.search` keeps every recorded slot's configuration; see docs/results.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bench import sweep
from bench.optimizers.schedules import needs_schedule
from bench.schema import thaw
from bench.space import GRID_POINTS, grid_size, to_kwargs
from bench.spec import OptimizerSpec, Suite, TaskSpec, optimizer_dict, task_dict


@dataclass(frozen=True)
class Cost:
    """Compute of some runs. Each total is None when a task does not declare the per-step figure."""

    runs: int  # training runs (tuning trials + seed reruns)
    steps: int  # optimizer steps over all runs
    flops: float | None = None
    tokens: float | None = None
    seconds: float | None = None

    def __add__(self, other: Cost) -> Cost:
        def add(a: float | None, b: float | None) -> float | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Cost(
            self.runs + other.runs,
            self.steps + other.steps,
            add(self.flops, other.flops),
            add(self.tokens, other.tokens),
            add(self.seconds, other.seconds),
        )


@dataclass(frozen=True)
class StudyPlan:
    name: str  # f"{suite}.{task}.{label}": the Optuna study name and the MLflow parent run name
    task: TaskSpec
    optimizer: OptimizerSpec
    trials: int  # tuning trials (1 for protocol `defaults` or an empty space; grid: its points at most)
    seeds: int  # seeds the best configuration runs on, counting the tuning run (1: no reruns)
    steps: int  # optimizer steps per run
    fingerprint: str  # short hash of everything that changes this study's results
    cost: Cost  # counting every conditional trial (an upper bound when `extension` > 0)
    extension: int = 0  # sweep: the most trials its lr extensions may add to `trials`
    first_seed: int = 0  # the tuning trials' seed (tuning.first_seed)

    @property
    def reruns(self) -> tuple[int, ...]:
        """Seeds of the reruns of the best configuration."""
        return tuple(range(self.first_seed + 1, self.first_seed + self.seeds))


@dataclass(frozen=True)
class Estimate(Cost):
    """Totals over the plan. `partial` names the totals (flops, tokens, seconds) that leave out studies
    whose task does not declare the per-step figure."""

    trials: int = 0  # tuning trials over all studies (`runs` adds the seed reruns and `extension`)
    partial: frozenset[str] = frozenset()
    extension: int = 0  # sweep: the most trials lr extensions may add over all studies


@dataclass(frozen=True)
class Plan:
    suite: Suite
    studies: tuple[StudyPlan, ...]
    estimate: Estimate

    def study(self, name: str) -> StudyPlan:
        for s in self.studies:
            if s.name == name:
                return s
        raise KeyError(f"no study '{name}' in suite '{self.suite.name}'")


def trial_id(study_name: str, number: int) -> str:
    """Stable id of tuning trial `number` (Optuna's trial number) of a study."""
    return f"{study_name}.trial-{number}"


def seed_run_id(study_name: str, seed: int) -> str:
    """Stable id of the rerun of a study's best configuration on `seed`."""
    return f"{study_name}.seed-{seed}"


def seeds_study(study_name: str, best_slot: int | None = None) -> str:
    """Name of the study of the reruns of a study's best configuration, the tuning slot `best_slot` (with
    None: the prefix every such name starts with)."""
    prefix = f"{study_name}.seeds-of-slot"
    return prefix if best_slot is None else f"{prefix}{best_slot}"


def _fingerprint(suite: Suite, task: TaskSpec, optimizer: OptimizerSpec) -> str:
    tuning = suite.tuning
    t = task_dict(task)
    del t["target"], t["metric"], t["failure_value"]  # what counts as success, not what the runs do
    if tuning.pruner == "none":
        del t["eval_every"]  # without a pruner, evaluation only records curves
    o = optimizer_dict(optimizer)
    del o["label"]
    data: dict[str, Any] = {
        "task": t,
        "optimizer": o,
        "tuning": {
            "protocol": tuning.protocol,
            "sampler_seed": tuning.sampler_seed,
            "pruner": tuning.pruner,
            "divergence_factor": tuning.divergence_factor,
            **_protocol_options(suite),
            # other seeds, other runs; left out at 0 so that fingerprints from before the key stay valid
            **({"first_seed": tuning.first_seed} if tuning.first_seed else {}),
        },
        "trainer": {  # what changes the numbers, not where they are computed
            "precision": suite.trainer.precision,
            "accumulate_grad_batches": suite.trainer.accumulate_grad_batches,
            "devices": suite.trainer.devices,
            "num_nodes": suite.trainer.num_nodes,
        },
    }
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _protocol_options(suite: Suite) -> dict[str, Any]:
    """The options of the suite's protocol that change its trials (none for the others, so that their
    stored studies keep their fingerprints; the grid's only when not the former fixed 4 points)."""
    tuning = suite.tuning
    if tuning.protocol == "sweep":
        return {"sweep": thaw(tuning.sweep)}
    if tuning.protocol == "grid" and tuning.grid_points != GRID_POINTS:
        return {"grid_points": tuning.grid_points}
    return {}


def sweep_warmup(optimizer: OptimizerSpec) -> float | None:
    """The warmup a sweep's warmup points replace: the schedule's, None for an optimizer without one."""
    return optimizer.schedule.warmup if needs_schedule(optimizer.entry) else None


def _trials(suite: Suite, opt: OptimizerSpec) -> tuple[int, int]:
    """(trials, conditional extension trials) of one study."""
    tuning = suite.tuning
    searched = tuning.protocol != "defaults" and bool(opt.search_space)
    budget = tuning.trials if searched else 1
    if tuning.protocol == "sweep":
        kwargs = to_kwargs(opt.entry.defaults, opt.fixed)
        fixed, extension = sweep.counts(opt.search_space, kwargs, tuning.sweep, sweep_warmup(opt))
        return fixed, extension
    # Grid runs each of its points once at most (bench.search.draw_configurations).
    if tuning.protocol == "grid":
        return min(budget, grid_size(opt.search_space, tuning.grid_points)), 0
    return budget, 0


def step_scale(task: TaskSpec, accumulate_grad_batches: int = 1) -> float:
    """How much bigger one optimizer step is than the task's declared default (batch x accumulation x
    context length, for tasks with a `block_size` option)."""
    scale = task.batch_size / task.entry.batch_size * accumulate_grad_batches
    block, default_block = task.options.get("block_size"), task.entry.default_options.get("block_size")
    if block and default_block:
        scale *= block / default_block
    return scale


def tokens_per_step(task: TaskSpec, accumulate_grad_batches: int = 1) -> float | None:
    """Tokens one optimizer step consumes with the suite's batch size, accumulation and context."""
    per_step = task.entry.tokens_per_step
    return None if per_step is None else per_step * step_scale(task, accumulate_grad_batches)


def _cost(suite: Suite, task: TaskSpec, runs: int) -> Cost:
    """Per-step figures are declared at the task's default batch size; scale them to the suite's."""
    entry = task.entry
    scale = step_scale(task, suite.trainer.accumulate_grad_batches)
    steps = runs * task.steps

    def total(per_step: float | None) -> float | None:
        return None if per_step is None else per_step * scale * steps

    return Cost(
        runs=runs,
        steps=steps,
        flops=total(entry.flops_per_step),
        tokens=total(entry.tokens_per_step),
        # A rough CPU wall time per step at the defaults, if the task declares one.
        seconds=total(getattr(entry, "seconds_per_step", None)),
    )


def make_plan(suite: Suite) -> Plan:
    """Every (task, optimizer) study of the suite, tasks outermost, in suite order."""
    studies = []
    for task in suite.tasks:
        for opt in suite.optimizers:
            trials, extension = _trials(suite, opt)
            seeds = suite.tuning.seeds
            studies.append(
                StudyPlan(
                    name=f"{suite.name}.{task.name}.{opt.label}",
                    task=task,
                    optimizer=opt,
                    trials=trials,
                    seeds=seeds,
                    steps=task.steps,
                    fingerprint=_fingerprint(suite, task, opt),
                    cost=_cost(suite, task, trials + extension + seeds - 1),
                    extension=extension,
                    first_seed=suite.tuning.first_seed,
                )
            )
    total = sum((s.cost for s in studies), Cost(0, 0))
    estimate = Estimate(
        **dataclasses.asdict(total),
        trials=sum(s.trials for s in studies),
        extension=sum(s.extension for s in studies),
        partial=frozenset(
            k
            for k in ("flops", "tokens", "seconds")
            if getattr(total, k) is not None and any(getattr(s.cost, k) is None for s in studies)
        ),
    )
    return Plan(suite=suite, studies=tuple(studies), estimate=estimate)


def si(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{prefix}{unit}"
    return f"{x:.3g}{unit}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _trial_count(trials: int, extension: int) -> str:
    """`7+<=2`: 7 trials, and at most 2 more if the sweep's best lr sits at an edge."""
    return f"{trials}+<={extension}" if extension else str(trials)


def format_plan(plan: Plan) -> str:
    """The plan as a text table: one row per study, then totals. Columns a plan has no figures for
    (tokens for vision tasks, time without a per-step hint) are left out."""
    suite, est = plan.suite, plan.estimate
    t = suite.tuning

    def total(text: str, key: str) -> str:
        return f">={text}" if key in est.partial else text

    columns: list[tuple[str, list[str], str]] = [  # header, one cell per study, total
        (
            "study",
            [s.name for s in plan.studies],
            f"total ({len(plan.studies)} {'study' if len(plan.studies) == 1 else 'studies'})",
        ),
        (
            "trials",
            [_trial_count(s.trials, s.extension) for s in plan.studies],
            _trial_count(est.trials, est.extension),
        ),
        ("seeds", [str(s.seeds) for s in plan.studies], ""),
        ("steps", [str(s.steps) for s in plan.studies], str(est.steps)),
        ("runs", [str(s.cost.runs) for s in plan.studies], str(est.runs)),
    ]
    if est.tokens is not None:
        columns.append(("tokens", [si(s.cost.tokens) for s in plan.studies], total(si(est.tokens), "tokens")))
    if est.flops is not None:
        columns.append(
            (
                "compute",
                [si(s.cost.flops, "FLOP") for s in plan.studies],
                total(si(est.flops, "FLOP"), "flops"),
            )
        )
    if est.seconds is not None:
        columns.append(
            (
                "time",
                [_duration(s.cost.seconds) for s in plan.studies],
                total(_duration(est.seconds), "seconds"),
            )
        )
    columns.append(("fingerprint", [s.fingerprint for s in plan.studies], ""))

    rows = [[c[0] for c in columns], *zip(*(c[1] for c in columns), strict=True), [c[2] for c in columns]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(rows[0]))
    title = (
        f"suite {suite.name}: {_count(len(suite.tasks), 'task')} x {_count(len(suite.optimizers), 'optimizer')}, "
        f"protocol {t.protocol} (sampler seed {t.sampler_seed}), pruner {t.pruner}"
    )
    table = [title, "", line(rows[0]), rule, *(line(r) for r in rows[1:-1]), rule, line(rows[-1])]
    if t.protocol == "sweep":
        table += ["", _sweep_note(suite)]
    return "\n".join(table)


def _sweep_note(suite: Suite) -> str:
    sw = suite.tuning.sweep
    swept = sorted({n for o in suite.optimizers for n in sweep.swept_params(sw, o.search_space)})
    warmups = sw.warmup if any(sweep_warmup(o) is not None for o in suite.optimizers) else ()
    if swept or warmups:
        axes = ", ".join([*swept, *(["warmup " + str(list(warmups))] if warmups else [])])
        second = f"then at the best lr 1-D sweeps of {axes} ({sw.points} values per hyperparameter)"
    else:
        second = "no 1-D sweeps (no other hyperparameter is searched)"
    return (
        f"sweep: {sw.lr_points} learning rates at {sw.per_decade} per decade, {second}. `+<=N`: at most N "
        "more learning rates, run only while the best sits at an edge; runs, steps and compute count "
        "them (upper bounds)."
    )
