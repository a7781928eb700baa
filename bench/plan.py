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

Scans (`tasks[i].scan`, see `bench.scans`): a scanned task contributes one study per point, named
`<suite>.<task>@<point>.<label>` (`quick.digits_cnn@bs256.adamw`). With `lr: transfer` only the first
point's studies are tuned; every other point's study has one trial, the first point's best
configuration with its lr scaled (`StudyPlan.transfer`), and its fingerprint includes the source's.
A schedule with `horizons` trains every horizon in each run (`StudyPlan.horizons`, `bench.horizons`):
a run costs the trunk plus the cooldowns, which is what the estimate counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bench import sweep
from bench.horizons import HorizonPlan, plan_horizons
from bench.optimizers.schedules import needs_schedule
from bench.scans import points, step_scale, transfer_factor
from bench.scans import tokens_per_step as tokens_per_step  # re-exported (runner, engine)
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
class Transfer:
    """A scan point whose lr comes from another point's tuning: the source study's best configuration,
    its lr multiplied by `factor` (the optimizer's `rule` for the ratio of the batch sizes)."""

    source: str  # the source study's name
    rule: str  # linear | sqrt | none
    factor: float


@dataclass(frozen=True)
class StudyPlan:
    name: str  # f"{suite}.{task label}.{label}": the Optuna study name and the MLflow parent run name
    task: TaskSpec  # a scan point's TaskSpec for a scanned task (`task.label`: `digits_cnn@bs256`)
    optimizer: OptimizerSpec
    trials: int  # tuning trials (1 for protocol `defaults` or an empty space; grid: its points at most)
    seeds: int  # seeds the best configuration runs on, counting the tuning run (1: no reruns)
    steps: int  # optimizer steps per run (the longest horizon's, with horizons)
    fingerprint: str  # short hash of everything that changes this study's results
    cost: Cost  # counting every conditional trial (an upper bound when `extension` > 0)
    extension: int = 0  # sweep: the most trials its lr extensions may add to `trials`
    first_seed: int = 0  # the tuning trials' seed (tuning.first_seed)
    transfer: Transfer | None = None  # lr transferred from another point (a scan with `lr: transfer`)
    horizons: HorizonPlan | None = None  # every run trains these horizons (a schedule with `horizons`)

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


def _fingerprint(
    suite: Suite, task: TaskSpec, optimizer: OptimizerSpec, extra: dict[str, Any] | None = None
) -> str:
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
        **(extra or {}),
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


def _cost(suite: Suite, task: TaskSpec, runs: int, run_steps: int) -> Cost:
    """Per-step figures are declared at the task's default batch size; scale them to the suite's."""
    entry = task.entry
    scale = step_scale(task, suite.trainer.accumulate_grad_batches)
    steps = runs * run_steps

    # A scanned model size (an option other than the context length) changes the work of a step in a way
    # the task's declared figures (at its default options) do not say: no FLOP or time estimate for it.
    defaults = entry.default_options
    resized = any(
        a.startswith("options.")
        and a != "options.block_size"
        and v != defaults.get(a.removeprefix("options."))
        for a, v in task.axes.items()
    )

    def total(per_step: float | None, *, sized: bool = True) -> float | None:
        return None if per_step is None or (resized and sized) else per_step * scale * steps

    return Cost(
        runs=runs,
        steps=steps,
        flops=total(entry.flops_per_step),
        tokens=total(entry.tokens_per_step, sized=False),
        # A rough CPU wall time per step at the defaults, if the task declares one.
        seconds=total(getattr(entry, "seconds_per_step", None)),
    )


def _study(suite: Suite, task: TaskSpec, opt: OptimizerSpec, source: StudyPlan | None) -> StudyPlan:
    """The study of one (task or scan point, optimizer); `source`: the study its lr transfers from."""
    name = f"{suite.name}.{task.label}.{opt.label}"
    horizons = plan_horizons(opt.schedule, task.steps) if opt.schedule.horizons else None
    run_steps = horizons.cost_steps if horizons is not None else task.steps
    seeds = suite.tuning.seeds
    if source is not None:
        rule = opt.entry.lr_scaling
        factor = transfer_factor(rule, source.task, task, suite.trainer.accumulate_grad_batches)
        extra = {"transfer": {"source": source.fingerprint, "rule": rule, "factor": factor}}
        return StudyPlan(
            name=name,
            task=task,
            optimizer=opt,
            trials=1,
            seeds=seeds,
            steps=task.steps,
            fingerprint=_fingerprint(suite, task, opt, extra),
            cost=_cost(suite, task, seeds, run_steps),
            first_seed=suite.tuning.first_seed,
            transfer=Transfer(source=source.name, rule=rule, factor=factor),
            horizons=horizons,
        )
    trials, extension = _trials(suite, opt)
    return StudyPlan(
        name=name,
        task=task,
        optimizer=opt,
        trials=trials,
        seeds=seeds,
        steps=task.steps,
        fingerprint=_fingerprint(suite, task, opt),
        cost=_cost(suite, task, trials + extension + seeds - 1, run_steps),
        extension=extension,
        first_seed=suite.tuning.first_seed,
        horizons=horizons,
    )


def make_plan(suite: Suite) -> Plan:
    """Every (task, optimizer) study of the suite, tasks outermost (a scanned task's points in product
    order), in suite order."""
    studies: list[StudyPlan] = []
    accumulate = suite.trainer.accumulate_grad_batches
    for base in suite.tasks:
        tasks = points(base, accumulate)
        transfer = base.scan is not None and base.scan.lr == "transfer"
        for opt in suite.optimizers:
            source: StudyPlan | None = None
            for task in tasks:
                study = _study(suite, task, opt, source)
                studies.append(study)
                if transfer and source is None:
                    source = study
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
    ]
    if any(s.transfer for s in plan.studies):
        columns.append(("lr", [_lr_cell(plan, s) for s in plan.studies], ""))
    if any(s.horizons for s in plan.studies):
        columns.append(("horizons", [_horizons_cell(s) for s in plan.studies], ""))
    columns += [
        ("steps", [str(s.cost.steps // max(s.cost.runs, 1)) for s in plan.studies], str(est.steps)),
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
    n_points = len({s.task.label for s in plan.studies})
    tasks = _count(len(suite.tasks), "task") + (
        f" ({n_points} scan points)" if any(t.scan for t in suite.tasks) else ""
    )
    title = (
        f"suite {suite.name}: {tasks} x {_count(len(suite.optimizers), 'optimizer')}, "
        f"protocol {t.protocol} (sampler seed {t.sampler_seed}), pruner {t.pruner}"
    )
    table = [title, "", line(rows[0]), rule, *(line(r) for r in rows[1:-1]), rule, line(rows[-1])]
    return "\n".join(table + _notes(plan))


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


def _lr_cell(plan: Plan, s: StudyPlan) -> str:
    if s.transfer is None:
        return "tuned"
    return f"x{s.transfer.factor:.3g} of {plan.study(s.transfer.source).task.point} ({s.transfer.rule})"


def _horizons_cell(s: StudyPlan) -> str:
    return ",".join(str(h) for h in s.horizons.steps) if s.horizons is not None else "-"


def _notes(plan: Plan) -> list[str]:
    """What the table's trials and steps mean for sweeps, horizons and transfers."""
    notes = [_sweep_note(plan.suite)] if plan.suite.tuning.protocol == "sweep" else []
    with_horizons = [s for s in plan.studies if s.horizons is not None]
    if with_horizons:
        cost = sum(s.cost.runs * s.horizons.cost_steps for s in with_horizons)  # type: ignore[union-attr]
        separate = sum(s.cost.runs * s.horizons.separate_steps for s in with_horizons)  # type: ignore[union-attr]
        notes.append(
            f"horizons: each run trains every horizon from one constant-lr trunk and a cooldown per horizon: "
            f"{cost} steps instead of {separate} for separate runs ({cost / separate:.0%})"
        )
    if any(s.transfer for s in plan.studies):
        notes.append(
            "lr transfer: a point's study runs its scan's first point's best configuration once (plus seed "
            "reruns), the lr scaled by the optimizer's lr_scaling rule; it starts when that point is tuned"
        )
    return ["", *notes] if notes else []
