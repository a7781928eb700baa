"""Run a suite: open studies, pop slots, train, record.

`run_suite(suite)` is what `bench run` calls. It imports none of the three engines directly: Optuna
lives in `bench.search`, Lightning in the runner (`bench.run`, `bench.distributed`), MLflow in
`bench.track`; what a trial records is `bench.records`, what the run shows `bench.progress`, and the
leaderboard at the end `bench.report`.

For each study of the plan (task x optimizer) a worker opens the Optuna study (creating it with its
whole budget enqueued as slots, see `bench.search`) and its MLflow parent run, then pops slots until
none is left. Each slot is one trial: sample (or read) the hyperparameters, open a child run, train,
record the outcome. A `sweep` study runs in stages (`bench.sweep`): when its lr grid is finished, each
next stage (an lr extension, then the 1-D sweeps at the best lr) is a study of its own, created once
with its points as slots, the same mechanism. A study whose schedule has horizons trains each trial as
a trunk and a cooldown per horizon, each horizon its own run (`bench.branches`); a scan point whose lr
is transferred waits for its scan's first point to be tuned, then runs that point's best configuration
with the lr scaled (its slot carries the hyperparameters). When a study's tuning slots are all
finished, its best configuration is rerun on the suite's extra seeds (a second study
`<study>.seeds-of-slot<k>`, same slot mechanism). Any number of workers,
in this process, in the processes `--workers N` spawns (each reloads the suite from its file and
overrides) or in other `bench run`s, may do this at once; each trial runs exactly once.

Nothing is lost whatever happens (docs/reliability.md): a worker repairs what earlier runs left
half-done when it starts and before each trial (`bench.repair`, `bench.search.repair_slots`), a study's
tuning is over only when every slot holds a finished trial, and a failure that is not the trial's (a
full disk, a store that cannot be written) puts the trial back in the queue and stops the run instead
of recording it. Outputs are checked before any training (`bench.preflight`). Fail points
(`bench.faults.failpoint`) mark where tests kill the process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from bench import branches, distributed, preflight, provenance, records, repair, report, search, sweep
from bench.faults import explain, failpoint, recording, stores
from bench.horizons import HorizonPlan, plan_horizons
from bench.loader import load_suite
from bench.outcomes import OUTCOMES
from bench.plan import (
    Plan,
    StudyPlan,
    make_plan,
    seed_run_id,
    seeds_study,
    si,
    sweep_warmup,
    tokens_per_step,
    trial_id,
)
from bench.progress import Display, Relay, say
from bench.records import SEED, TUNE, Summary, TrialRecord
from bench.run import TrialResult, TrialSpec, train_trial
from bench.scans import transferred_hparams
from bench.space import to_kwargs
from bench.spec import Suite
from bench.track import Tracker
from bench.workloads import standins


class SuiteConflict(RuntimeError):
    """The stores already hold a study of this name with a different configuration."""


def trial_spec(
    suite: Suite, sp: StudyPlan, hparams: Mapping[str, Any], seed: int, warmup: float | None = None
) -> TrialSpec:
    """What one trial runs; `warmup` replaces the schedule's (a sweep's warmup points)."""
    optimizer = sp.optimizer
    if warmup is not None:
        optimizer = dataclasses.replace(
            optimizer, schedule=dataclasses.replace(optimizer.schedule, warmup=warmup)
        )
    return TrialSpec(
        task=sp.task,
        optimizer=optimizer,
        hparams=hparams,
        seed=seed,
        trainer=suite.trainer,
        data_root=Path(suite.settings.data_root),
        divergence_factor=suite.tuning.divergence_factor,
        time_budget_s=suite.tuning.trial_time_budget_s,
    )


def scan_info(sp: StudyPlan) -> dict[str, Any]:
    """What a scan point's runs record about the point (`bench.scan`; empty for a task without scan):
    the base task, the point's label and axis values, and whether its lr was tuned there or transferred
    (rule, factor, source study)."""
    if not sp.task.point:
        return {}
    lr: dict[str, Any] = {"tuned": True}
    if sp.transfer is not None:
        lr = {
            "tuned": False,
            "rule": sp.transfer.rule,
            "factor": sp.transfer.factor,
            "from": sp.transfer.source,
        }
    return {"task": sp.task.name, "point": sp.task.point, "axes": dict(sp.task.axes), "lr": lr}


def summary_of(result: TrialResult) -> Summary:
    return Summary(
        outcome=result.outcome,
        value=result.value,
        steps=result.steps,
        time_s=result.time_s,
        steps_to_target=result.steps_to_target,
        seconds_to_target=result.seconds_to_target,
        tokens_to_target=result.tokens_to_target,
        final=dict(result.metrics),
        error=result.error,
        **{name: getattr(result, name) for name in records.COST_METRICS},
    )


def write_standins(data_root: str, out: Callable[[str], None]) -> None:
    """The offline stand-in datasets a `settings.standins` suite trains on, written once (seconds)."""
    missing = standins.missing(data_root)
    if missing:
        out(f"bench: writing offline stand-ins for {', '.join(missing)} under {data_root}/ (once)")
        standins.write_standins(data_root)


def follow_leader(suite: Suite, plan: Plan) -> None:
    """Non-zero ranks of a multi-process trial (torchrun, srun): train what rank 0 announces, record
    nothing (rank 0 alone talks to Optuna and MLflow)."""
    studies = {sp.name: sp for sp in plan.studies}

    def run(payload: dict[str, Any]) -> None:
        sp = studies[payload["study"]]
        train_trial(trial_spec(suite, sp, payload["hparams"], payload["seed"], payload.get("warmup")))

    distributed.follow(run)


class Worker:
    """One process's share of a suite run. `display` is a `bench.progress.Display` (or a `Relay` to
    the first process's display)."""

    def __init__(self, suite: Suite, plan: Plan, display: Display | Relay):
        self.suite, self.plan, self.display = suite, plan, display
        settings = suite.settings
        self.storage = search.open_storage(settings.storage, settings.heartbeat_s)
        self.tracker = Tracker.for_suite(suite)
        self.meta = provenance.collect(suite.path.parent)
        self.ran = 0
        self.skipped: set[str] = set()  # transferred points with nothing to transfer from
        self.closed: set[str] = set()  # study runs this worker has seen finished
        self.retired: set[str] = set()  # superseded seed runs this worker has retired

    # -- stores ---------------------------------------------------------------------------------
    def study_record(self, sp: StudyPlan) -> records.StudyRecord:
        return records.StudyRecord(
            suite=self.suite.name,
            task=sp.task.label,
            optimizer=sp.optimizer.label,
            study=sp.name,
            fingerprint=sp.fingerprint,
            metric=sp.task.metric,
            protocol=self.suite.tuning.protocol,
            search_space={k: str(v) for k, v in sp.optimizer.search_space.items()},
            fixed=dict(sp.optimizer.fixed),
            trials=sp.trials,
            seeds=sp.seeds,
            steps=sp.task.steps,
        )

    def _parent_run(self, sp: StudyPlan) -> Callable[[Any], None]:
        def on_create(study: Any) -> None:  # idempotent: the repair path may call it again
            if study.user_attrs.get("mlflow_parent"):
                return
            run_id = self.tracker.find_run(records.study_key(sp.name))
            if run_id is None:
                name = f"{sp.task.label}/{sp.optimizer.label}"
                run_id = self.tracker.open_study(self.study_record(sp), name)
                failpoint("study.parent")
            study.set_user_attr("mlflow_parent", run_id)

        return on_create

    def transferred(self, sp: StudyPlan) -> dict[str, Any] | None:
        """The hyperparameters a transferred point runs (its source's best, lr scaled), or None while the
        source is not tuned or when none of its trials completed."""
        assert sp.transfer is not None
        source = self.open_tuning(self.plan.study(sp.transfer.source))
        best = search.best_trial(source) if source is not None and not self.tuning_left(source) else None
        if best is None:
            return None
        opt = sp.optimizer
        return transferred_hparams(best.params, opt.entry.defaults, opt.fixed, sp.transfer.factor)

    def _extended(self, sp: StudyPlan, parent: Callable[[Any], str | None], what: str) -> Callable:
        """`on_extend` of a study: its MLflow run takes the new budget (it runs again once a trial runs,
        `drain`), and the run says so."""

        def on_extend(study: Any, had: int, now: int) -> None:  # idempotent
            run_id = parent(study)
            if run_id:
                self.tracker.study_budget(run_id, self.study_record(sp))
            self.display.say(
                f"bench: {sp.name}: extending its {what} from {had} to {now}; the {had} recorded keep their "
                "configurations"
            )

        return on_extend

    def open_tuning(self, sp: StudyPlan) -> Any:
        """The study's tuning study (created with its slots if new); None for a transferred point whose
        source is not tuned yet."""
        t = self.suite.tuning
        space = sp.optimizer.search_space if t.protocol != "defaults" else {}
        if t.protocol == "sweep":  # the first stage: the lr grid
            slots, attrs = _point_slots(
                sweep.first_stage(space, _kwargs(sp), t.sweep), start=0, seed=sp.first_seed
            )
        else:
            slots = search.draw_configurations(t.protocol, t.sampler_seed, space, sp.trials, t.grid_points)
            attrs = [{"kind": TUNE, "seed": sp.first_seed}] * len(slots)
        if sp.transfer is not None:
            hparams = self.transferred(sp)
            if hparams is None:
                return None
            space, slots, attrs = {}, [{}], [{"kind": TUNE, "seed": sp.first_seed, "hparams": hparams}]
        study, created = search.open_study(
            self.storage,
            sp.name,
            direction="minimize" if sp.task.mode == "min" else "maximize",
            protocol=t.protocol,
            seed=t.sampler_seed,
            space=space,
            pruner=search.make_pruner(t.pruner, sp.task.steps, sp.task.eval_every or sp.task.steps),
            slots=slots,
            slot_attrs=attrs,
            study_attrs={"fingerprint": sp.fingerprint, "suite": self.suite.name},
            on_create=self._parent_run(sp),
            on_extend=self._extended(sp, lambda st: st.user_attrs.get("mlflow_parent"), "tuning trials"),
        )
        held = search.slot_count(study)
        if held > len(slots):
            raise SuiteConflict(
                f"study '{sp.name}' in {self.suite.settings.storage} holds {held} tuning trials and this suite "
                f"asks for {len(slots)}: a smaller budget would drop recorded trials from its statistics. Run "
                f"it with `--set tuning.trials={held}` (or more), or give this version its own name "
                "(`--set name=NEW_NAME`) or other stores (`--storage`, `--tracking-uri`)."
            )
        found = study.user_attrs.get("fingerprint")
        if not created and found != sp.fingerprint:
            raise SuiteConflict(
                f"study '{sp.name}' already exists in {self.suite.settings.storage} with a different "
                f"configuration (fingerprint {found}, this suite {sp.fingerprint}): its trials would not be "
                "comparable. Give this version its own name (`--set name=NEW_NAME`, or `name:` in the suite "
                "file), or other stores (`--storage`, `--tracking-uri`), or delete the old stores (by "
                "default `.bench/optuna.db`, `mlflow.db` and `mlruns/`)."
            )
        return study

    def open_stage(self, sp: StudyPlan, tuning: Any, name: str, points: list[sweep.Point], start: int) -> Any:
        """A later stage of a sweep: a study of its own, created once with `points` as its slots (numbered
        from `start`), sharing the tuning study's MLflow parent run."""
        t = self.suite.tuning
        slots, attrs = _point_slots(points, start, seed=sp.first_seed)
        study, _ = search.open_study(
            self.storage,
            name,
            direction="minimize" if sp.task.mode == "min" else "maximize",
            protocol="sweep",
            seed=t.sampler_seed,
            space=sp.optimizer.search_space,
            pruner=search.make_pruner(t.pruner, sp.task.steps, sp.task.eval_every or sp.task.steps),
            slots=slots,
            slot_attrs=attrs,
            study_attrs={"fingerprint": sp.fingerprint, "suite": self.suite.name, "stage": name},
            on_create=lambda st: st.set_user_attr("mlflow_parent", tuning.user_attrs.get("mlflow_parent")),
        )
        return study

    def sweep_stages(self, sp: StudyPlan, tuning: Any) -> tuple[list[Any], str]:
        """Open, in order, and drain the stages after a sweep's lr grid (`tuning`, finished): its lr
        extensions while the best lr sits at an edge, then the 1-D sweeps at the best lr. Each stage is
        decided from the finished ones only, so every worker and every resume decides alike and each
        stage is created once. Returns the stages opened (the first included) and why it stopped early:
        "pending" (a stage has trials waiting or running elsewhere), "capped" (the study's time budget
        is spent: no later stage), or "" (every stage finished)."""
        spec, stages = self.suite.tuning.sweep, [tuning]
        kwargs, sign = _kwargs(sp), 1.0 if sp.task.mode == "min" else -1.0
        space, n = sp.optimizer.search_space, spec.lr_points
        for k in range(1, spec.extend + 1):
            lr = sweep.extension(_lr_rows(stages, sign), spec.per_decade)
            if lr is None:
                break
            point = sweep.lr_point(space, kwargs, lr)
            stages.append(self.open_stage(sp, tuning, sweep.lr_stage(sp.name, k), [point], start=n + k - 1))
            if status := self.drain_stage(sp, stages):
                return stages, status
        best = sweep.best_lr(_lr_rows(stages, sign))
        points = (
            [] if best is None else sweep.second_stage(space, kwargs, spec, best, sweep_warmup(sp.optimizer))
        )
        if not points:  # nothing completed (no optimum to sweep around), or nothing else to sweep
            return stages, ""
        stages.append(
            self.open_stage(sp, tuning, sweep.sweep_stage(sp.name), points, start=n + len(stages) - 1)
        )
        return stages, self.drain_stage(sp, stages)

    def drain_stage(self, sp: StudyPlan, stages: list[Any]) -> str:
        """Drain the last of a sweep's `stages`, the study time budget counting the earlier ones too:
        "capped", "pending" or "" as in `sweep_stages`."""
        if self.drain(sp, stages[-1], tuning=True, earlier=stages[:-1]):
            return "capped"
        return "pending" if search.unfinished_slots(stages[-1]) else ""  # waiting, running or lost

    def open_seeds(self, sp: StudyPlan, stages: list[Any]) -> Any | None:
        """The study of the reruns of the best configuration of the tuning study (with a sweep's later
        `stages`; None before one completed). It is named after the best trial's number, so when an
        extended tuning study finds a new best, the reruns of the old one are retired and the new best
        gets its own."""
        best = search.best_of(stages)
        if best is None:
            return None
        tuning = stages[0]
        number = _number(best)
        name = seeds_study(sp.name, number)
        self.retire_superseded_seeds(sp, keep=name)
        warmup = {"warmup": best.user_attrs["warmup"]} if "warmup" in best.user_attrs else {}
        seeds = list(sp.reruns)
        parent = tuning.user_attrs.get("mlflow_parent")
        study, _ = search.open_study(
            self.storage,
            name,
            direction="minimize" if sp.task.mode == "min" else "maximize",
            protocol="random",
            seed=0,
            space={},
            pruner=search.make_pruner("none", 1, 1),
            slots=[dict(best.params)] * len(seeds),
            slot_attrs=[
                {"kind": SEED, "seed": s, "best_number": number, **warmup}
                | ({"hparams": best.user_attrs["hparams"]} if "hparams" in best.user_attrs else {})
                for s in seeds
            ],
            study_attrs={"fingerprint": sp.fingerprint, "best_number": number},
            on_create=lambda st: st.set_user_attr("mlflow_parent", parent),
            on_extend=self._extended(sp, lambda st: parent, "seed reruns"),
        )
        return study

    def retire_superseded_seeds(self, sp: StudyPlan, keep: str) -> None:
        """Hide the seed reruns of a configuration that is no longer its study's best (the study was
        extended and a new trial beat it): they would be scored as reruns of the new best."""
        for name in search.study_names(self.storage, seeds_study(sp.name)):
            if name == keep or (study := search.load(self.storage, name)) is None:
                continue
            for t in study.get_trials(deepcopy=False):
                run_id = t.user_attrs.get("mlflow_run")
                if run_id and run_id not in self.retired:
                    self.tracker.retire(
                        run_id, f"superseded: {keep} reruns the study's new best configuration"
                    )
                    self.retired.add(run_id)

    def reopen_study(self, study: Any) -> None:
        """A study's run that had ended runs again: a lifted time cap, an extension, a retried trial."""
        run_id = study.user_attrs.get("mlflow_parent")
        if run_id:
            self.tracker.reopen(run_id)
            self.closed.discard(run_id)

    def close_study(self, sp: StudyPlan, stages: list[Any]) -> None:
        """A study whose trials (all its sweep `stages`, and seed reruns) are all done: end its MLflow run,
        whichever worker ran its last trial (and on a resume that finds it so)."""
        run_id = stages[0].user_attrs.get("mlflow_parent")
        if run_id and run_id not in self.closed:
            if self.tracker.run_status(run_id) == "RUNNING":  # final counts, whoever ran the last
                self.spent(stages[-1], log=True, metric=sp.task.metric, earlier=stages[:-1])
                self.tracker.finish(run_id)
            self.closed.add(run_id)

    def recorded(self) -> dict[str, int]:
        """Trials of each study of the plan already recorded as finished (tuning slots, a sweep's later
        stages, and reruns of the current best configuration), read from the study storage without
        creating anything."""
        done = {}
        for sp in self.plan.studies:
            stages = self.stages(sp.name)
            finished = sum(search.slots_finished(st) for st in stages) + self.extensions_forgone(sp, stages)
            done[sp.name] = min(sp.trials + sp.extension, finished)
            name = self.current_seeds(sp.name, stages) if sp.seeds > 1 else None
            if name is not None:
                done[sp.name] += min(sp.seeds - 1, search.finished_slots(self.storage, name))
        return done

    def stage_names(self, study: str) -> list[str]:
        """The studies a tuning study's trials live in: itself, and for a sweep its later stages."""
        if self.suite.tuning.protocol != "sweep":
            return [study]
        extend = self.suite.tuning.sweep.extend
        return [study, *(sweep.lr_stage(study, k) for k in range(1, extend + 1)), sweep.sweep_stage(study)]

    def stages(self, study: str) -> list[Any]:
        """The studies of `stage_names` that exist, loaded (read without creating anything)."""
        return [st for name in self.stage_names(study) if (st := search.load(self.storage, name)) is not None]

    def current_seeds(self, study: str, stages: list[Any] | None = None) -> str | None:
        """The name of the study of the reruns of `study`'s current best configuration over all its stages
        (`stages`, loaded when not given; None while none has a completed trial or none exists)."""
        stages = self.stages(study) if stages is None else stages
        best = search.best_of(stages) if stages else None
        return None if best is None else seeds_study(study, _number(best))

    def stage_of_numbers(self, study: str) -> dict[int, str]:
        """Point number -> the stage study holding it, for a sweep's later stages (their numbers continue
        the lr grid's, so each number lies in one stage); empty for other protocols."""
        if self.suite.tuning.protocol != "sweep":
            return {}
        out = {}
        for stage in self.stages(study):
            if stage.study_name == study:
                continue  # the lr grid: numbers not found in a later stage are its own
            for t in stage.get_trials(deepcopy=False):
                if "number" in t.user_attrs:
                    out[int(t.user_attrs["number"])] = stage.study_name
        return out

    def extensions_forgone(self, sp: StudyPlan, stages: list[Any]) -> int:
        """A sweep's lr extensions that will never run (its lr points are all finished and the best is not
        at an edge, or the limit is reached): the plan counts them as an upper bound, a resume as done."""
        lr_stages = [st for st in stages if st.study_name != sweep.sweep_stage(sp.name)]
        if not sp.extension or not lr_stages or any(search.unfinished_slots(st) for st in lr_stages):
            return 0
        sign = 1.0 if sp.task.mode == "min" else -1.0
        opened = len(lr_stages) - 1
        per_decade = self.suite.tuning.sweep.per_decade
        if opened < sp.extension and sweep.extension(_lr_rows(lr_stages, sign), per_decade) is not None:
            return 0  # one more extension is due
        return sp.extension - opened

    # -- one trial ------------------------------------------------------------------------------
    def record_of(
        self, sp: StudyPlan, trial: Any, slot: int, kind: str, seed: int, hparams: dict
    ) -> TrialRecord:
        """The trial's record as it starts (see bench.records); `slot` is its number in the study (a
        sweep numbers its points over all stages)."""
        suite = self.suite
        attrs = trial.user_attrs
        warmup = attrs.get("warmup", sweep_warmup(sp.optimizer))
        kwargs = to_kwargs(sp.optimizer.entry.defaults, {**sp.optimizer.fixed, **hparams})
        accumulate = suite.trainer.accumulate_grad_batches
        return TrialRecord(
            suite=suite.name,
            task=sp.task.label,
            optimizer=sp.optimizer.label,
            study=sp.name,
            trial_id=trial_id(sp.name, slot) if kind == TUNE else seed_run_id(sp.name, seed),
            number=slot,
            optuna_trial=trial.number,
            kind=kind,
            seed=seed,
            metric=sp.task.metric,
            mode=sp.task.mode,
            target=sp.task.target,
            lr=kwargs.get("lr", math.nan),
            hparams=hparams,
            kwargs=kwargs,
            steps=sp.task.steps,
            batch_size=sp.task.batch_size,
            schedule=sp.optimizer.schedule.name,
            world_size=distributed.world_size(),
            batch_size_per_device=distributed.per_device_batch(sp.task.batch_size),
            global_batch_size=distributed.global_batch(sp.task.batch_size, accumulate),
            tokens_per_step=tokens_per_step(sp.task, accumulate) or None,
            task_version=sp.task.entry.version,
            optimizer_source=sp.optimizer.entry.source,
            fingerprint=sp.fingerprint,
            provenance=self.meta,
            protocol=suite.tuning.protocol,
            failure_value=sp.task.failure_value,
            axis=str(attrs.get("axis", "")),
            axis_value=attrs.get("axis_value"),
            axis_scale=str(attrs.get("axis_scale", "")),
            warmup=warmup,
            scan=scan_info(sp),
        )

    def objective(self, sp: StudyPlan, study: Any) -> Callable[[Any], float]:
        suite, tracker = self.suite, self.tracker
        space = sp.optimizer.search_space if suite.tuning.protocol != "defaults" else {}
        if suite.tuning.protocol == "sweep":  # its points may lie past the declared ranges
            space = sweep.trial_space(space, _kwargs(sp), suite.tuning.sweep)

        def run(trial: Any) -> float:
            if not search.is_slot(trial):
                # Another worker popped the last slot between our look and our ask: this trial runs
                # nothing and is left FAIL, marked, outside the budget.
                trial.set_user_attr("bench.excess", True)
                raise search.ExcessTrial("no slot left")
            stale = trial.user_attrs.get("mlflow_run")
            if stale:  # a retry of a trial whose process died: retire the dead attempt's run
                tracker.retire(stale, f"process died; retried as optuna trial {trial.number}")
            kind, seed = trial.user_attrs.get("kind", TUNE), int(trial.user_attrs.get("seed", 0))
            # a transferred point's slot carries its hyperparameters; any other slot is asked for them
            hparams = (
                dict(trial.user_attrs["hparams"])
                if "hparams" in trial.user_attrs
                else search.suggest(trial, space)
            )
            slot = _number(trial)
            label = sp.optimizer.label + (f"#{slot}" if kind == TUNE else f"@seed{seed}")
            record = self.record_of(sp, trial, slot, kind, seed, hparams)
            warmup = trial.user_attrs.get("warmup")
            name = f"{sp.task.label}/{label}"
            run_id = tracker.open_trial(record, name, study.user_attrs.get("mlflow_parent"))
            failpoint("trial.run")
            trial.set_user_attr("mlflow_run", run_id)
            tracker.log_dict(run_id, suite.resolved, records.RESOLVED_ARTIFACT)
            on_eval = None
            # the pruner decides on rank 0 alone: no pruning in multi-process trials
            if kind == TUNE and suite.tuning.pruner != "none" and distributed.world_size() == 1:
                on_eval = search.pruning_callable(trial)
            distributed.announce({"study": sp.name, "hparams": hparams, "seed": seed, "warmup": warmup})
            spec = trial_spec(suite, sp, hparams, seed, warmup)
            horizons = trial_horizons(sp, spec)
            self.display.begin(f"{sp.name} {label}", horizons.cost_steps if horizons else sp.task.steps)
            try:
                with tracker.metrics_writer(run_id) as log_metrics:
                    if horizons is not None:
                        result = branches.train_horizons(
                            spec,
                            horizons,
                            directory=branches.trial_directory(
                                suite.settings.checkpoint_dir, suite.name, record.trial_id
                            ),
                            tracker=tracker,
                            record=record,
                            run_id=run_id,
                            name=name,
                            summarize=summary_of,
                            log_metrics=recording(log_metrics),
                            on_eval=on_eval,
                            on_step=self.display.step,
                            say=self.display.say,
                        )
                    else:
                        result = train_trial(
                            spec,
                            log_metrics=recording(log_metrics),
                            on_eval=on_eval,
                            on_step=self.display.step,
                        )
                summary = summary_of(result)
                tracker.close_trial(run_id, dataclasses.replace(record, summary=summary))
            except BaseException:  # not the trial's failure: this attempt is void, its slot goes back
                self.void(run_id, trial.number)
                raise
            failpoint("trial.recorded")
            for key, value in (("outcome", summary.outcome), ("value", summary.value),
                               ("steps", summary.steps), ("time_s", summary.time_s)):  # fmt: skip
                finite = not isinstance(value, float) or math.isfinite(value)
                trial.set_user_attr(key, value if finite else None)
            shown = {**hparams, **({"warmup": warmup} if warmup is not None else {})}
            self.display.trial(sp.name, label, summary, shown, sp.task.metric)
            self.ran += 1
            if summary.outcome == "pruned":
                raise search.TrialPruned(f"pruned at step {summary.steps}")
            ok = summary.outcome in ("completed", "timeout") and math.isfinite(summary.value)
            worst = math.inf if sp.task.mode == "min" else -math.inf
            return summary.value if ok else worst

        return run

    def void(self, run_id: str, number: int) -> None:
        """Retire the run of an attempt that did not finish. Best effort: when the store itself is what
        failed (a full disk), the next run's repair retires it (`bench.repair`)."""
        with contextlib.suppress(Exception):
            self.tracker.retire(run_id, f"attempt interrupted (optuna trial {number}); slot re-enqueued")

    # -- the loop -------------------------------------------------------------------------------
    def spent(
        self, study: Any, *, log: bool = False, metric: str = "value", earlier: list[Any] | None = None
    ) -> float:
        """Training seconds of a tuning study's finished trials (all workers'), with those of `earlier`
        (a sweep's earlier stages); with `log`, logged to its MLflow parent run with the steps, the best
        `metric` so far and the outcome counts (`records.study_progress`). Every optimizer's budget is
        counted so."""
        stages = [*(earlier or []), study]
        done = [t for s in stages for t in search.finished_trials(s)]
        seconds = sum(float(t.user_attrs.get("time_s") or 0.0) for t in done)
        if log and study.user_attrs.get("mlflow_parent"):
            outcomes = [t.user_attrs.get("outcome") for t in done]
            best = search.best_of(stages)
            fields = records.study_progress(
                trials=len(done),
                steps=sum(int(t.user_attrs.get("steps") or 0) for t in done),
                time_s=seconds,
                outcomes={o: outcomes.count(o) for o in OUTCOMES},
                metric=metric,
                best=best.value if best is not None else None,
            )
            parent = study.user_attrs["mlflow_parent"]
            self.tracker.log(parent, metrics=fields.metrics, tags=fields.tags, step=len(done))
        return seconds

    def drain(
        self, sp: StudyPlan, study: Any, *, tuning: bool = False, earlier: list[Any] | None = None
    ) -> bool:
        """Run waiting slots until none is left or, for a tuning study with `study_time_budget_s`,
        until its finished trials' training time (with that of `earlier`, a sweep's earlier stages)
        reaches the cap (the trial that crosses it ends normally; the slots left stay waiting, so a
        larger cap resumes them). True when capped."""
        cap = self.suite.tuning.study_time_budget_s if tuning else None
        objective = self.objective(sp, study)
        ran = False
        while True:
            search.repair_slots(study)  # dead workers' trials failed, lost slots back in the queue
            spent = self.spent(study, log=ran, metric=sp.task.metric, earlier=earlier) if tuning else 0.0
            if cap is not None and spent >= cap:
                if study.user_attrs.get("bench.time_budget_spent_s") != spent:  # say it once per change
                    study.set_user_attr("bench.time_budget_spent_s", spent)
                    self.display.say(f"bench: {sp.name}: study time budget spent ({spent:.1f}s of {cap:g}s); "
                                     f"{search.pending(study)[0]} slot(s) left unrun")  # fmt: skip
                return True
            if search.pending(study)[0] == 0:
                return False
            if not ran:
                self.reopen_study(study)
            search.run_one(study, objective)
            ran = True

    def tuning_left(self, study: Any) -> bool:
        """Whether a tuning study has trials running, or waiting under its time budget."""
        if search.running_slots(study):
            return True
        cap = self.suite.tuning.study_time_budget_s
        return bool(search.unfinished_slots(study)) and (cap is None or self.spent(study) < cap)

    def source_pending(self, sp: StudyPlan) -> bool:
        """Whether a transferred point's source study still has trials to run (else, having none that
        completed, the point is skipped: said once)."""
        assert sp.transfer is not None
        source = self.open_tuning(self.plan.study(sp.transfer.source))
        if source is not None and self.tuning_left(source):
            return True
        if sp.name not in self.skipped:
            self.skipped.add(sp.name)
            self.display.say(
                f"bench: {sp.name}: skipped, no trial of {sp.transfer.source} completed to transfer from"
            )
        return False

    def work(self, poll_s: float = 2.0) -> None:
        """Run slots until every study of the plan (and its seed reruns) is finished: every slot holds a
        finished trial (a capped study: none is running). Starts and ends by retiring the MLflow runs
        earlier attempts left behind (`bench.repair`)."""
        self.retire_orphans()
        while True:
            busy = False
            for sp in self.plan.studies:
                tuning = self.open_tuning(sp)
                if tuning is None:  # a transferred point: its source is not tuned yet, or has no best
                    busy = busy or self.source_pending(sp)
                    continue
                capped = self.drain(sp, tuning, tuning=True)
                if search.running_slots(tuning) or (not capped and search.unfinished_slots(tuning)):
                    busy = True
                    continue
                stages = [tuning]
                if self.suite.tuning.protocol == "sweep" and not capped:
                    stages, status = self.sweep_stages(sp, tuning)
                    if status == "pending":
                        busy = True
                        continue
                reruns = self.open_seeds(sp, stages) if sp.seeds > 1 else None
                if reruns is not None:
                    self.drain(sp, reruns)
                    if search.running_slots(reruns) or search.unfinished_slots(reruns):
                        busy = True
                        continue
                self.close_study(sp, stages)
            if not busy:
                break
            time.sleep(poll_s)  # other workers are finishing their trials (or dead ones go stale)
        self.retire_orphans()

    def retire_orphans(self) -> None:
        """Retire the trial runs no finished or running Optuna trial stands behind (see bench.repair)."""

        seeds: dict[str, str | None] = {}
        stages: dict[str, dict[int, str]] = {}  # study -> point number -> the sweep stage holding it

        def study_of(record: TrialRecord) -> str | None:
            if record.kind != SEED:
                # a sweep's later stages are studies of their own: its point numbers say which
                if record.study not in stages:
                    stages[record.study] = self.stage_of_numbers(record.study)
                return stages[record.study].get(record.number, record.study)
            # reruns of a superseded best are retired as such (`retire_superseded_seeds`)
            if record.study not in seeds:
                seeds[record.study] = self.current_seeds(record.study)
            return seeds[record.study]

        retired = repair.retire_orphans(self.tracker, self.storage, study_of)
        if retired:
            self.display.say(f"bench: retired {len(retired)} MLflow run(s) of attempts that did not finish")


def trial_horizons(sp: StudyPlan, spec: TrialSpec) -> HorizonPlan | None:
    """The horizons a trial trains: the study's, or for a sweep's warmup point those of its own warmup
    (the branches' cooldown starts and schedules follow the warmup the trunk trained with)."""
    if sp.horizons is None or spec.optimizer.schedule == sp.optimizer.schedule:
        return sp.horizons
    return plan_horizons(spec.optimizer.schedule, sp.task.steps)


def _kwargs(sp: StudyPlan) -> dict[str, Any]:
    """The optimizer's keyword arguments at its defaults and the suite's fixed values."""
    return to_kwargs(sp.optimizer.entry.defaults, sp.optimizer.fixed)


def _number(trial: Any) -> int:
    """A tuning trial's number in its study: its slot, or for a sweep its point's number over all stages."""
    return int(trial.user_attrs.get("number", trial.user_attrs["slot"]))


def _point_slots(points: list[sweep.Point], start: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Slots and their attributes for sweep points numbered from `start`, trained on `seed`."""
    attrs = [
        {"kind": TUNE, "seed": seed, "number": start + i, "axis": p.axis, "axis_value": p.value,
         "axis_scale": p.scale, **({"warmup": p.warmup} if p.warmup is not None else {})}
        for i, p in enumerate(points)
    ]  # fmt: skip
    return [dict(p.params) for p in points], attrs


def _lr_rows(stages: list[Any], sign: float) -> list[tuple[float, float | None]]:
    """(lr, oriented value or None) of every finished lr point of a sweep's stages (`bench.sweep`)."""
    rows = []
    for study in stages:
        for t in search.finished_trials(study):
            if t.user_attrs.get("axis") != sweep.LR:
                continue
            ok = t.user_attrs.get("outcome") == "completed" and t.value is not None and math.isfinite(t.value)
            rows.append((float(t.params[sweep.LR]), sign * t.value if ok else None))
    return rows


def say_recorded(recorded: Mapping[str, int], total: int, display: Display) -> None:
    """What a run starts from: how many of the plan's trials are already recorded (a rerun with nothing
    left to do says so), counted in the display so its numbering and estimate continue from there."""
    display.recorded(recorded)
    done = sum(recorded.values())
    if done >= total:
        display.say(f"bench: {total}/{total} trials already recorded; nothing to train")
    elif done:
        display.say(f"bench: {done}/{total} trials already recorded; running the other {total - done}")


# -- worker processes ----------------------------------------------------------------------------------
def spawned_worker(path: Path, overrides: dict[str, Any], queue: Any, threads: int) -> None:
    """A `--workers N` process (multiprocessing, spawn): reload the suite from its file with the same
    overrides, then work on the shared studies, sending its lines to the first process's display."""
    torch.set_num_threads(threads)
    relay = Relay(queue)
    named: dict[str, str] = {}
    try:
        suite = load_suite(path, overrides)
        named = stores(suite.settings)
        Worker(suite, make_plan(suite), relay).work()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BaseException as exc:
        why = explain(exc, named) or traceback.format_exc().rstrip()
        relay.say(f"bench: worker process {os.getpid()} failed:\n{why}")
        raise SystemExit(1) from None


def spawn_workers(suite: Suite, n: int, queue: Any) -> list[multiprocessing.process.BaseProcess]:
    """Start `n` worker processes sharing this machine's cores with the first (one thread each at
    least), each reloading the suite with `load_suite(suite.path, suite.overrides)`."""
    threads = max(1, (os.cpu_count() or 1) // (n + 1))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the children's torch at import
    torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(
            target=spawned_worker,
            args=(suite.path, dict(suite.overrides), queue, threads),
            name=f"bench-worker-{i + 1}",
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    return procs


def run_suite(
    suite: Suite,
    *,
    workers: int = 1,
    progress: bool | None = None,
    leaderboard: bool = True,
    out: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every trial of `suite` (resuming what is already recorded) and build its leaderboard.

    progress: the live display (None: when stdout is a terminal, not under CI); out: where lines go
    instead (then never live)."""
    plan = make_plan(suite)
    distributed.check(suite, workers)
    if distributed.is_leader():
        preflight.check(suite, leaderboard=leaderboard)  # before any store is touched or trial trained
    distributed.setup(suite.trainer.accelerator)
    if not distributed.is_leader():
        follow_leader(suite, plan)
        return {"trials_run": 0}
    total = plan.estimate.runs  # tuning trials plus seed reruns
    studies = {sp.name: (sp.task.label, sp.cost.runs) for sp in plan.studies}  # a scan point is its own task
    work = {
        sp.task.label: sp.cost.flops / sp.cost.runs for sp in plan.studies if sp.cost.flops and sp.cost.runs
    }
    live = False if out is not None else progress
    display = Display(total, workers=workers, live=live, out=out or say, studies=studies, work=work)
    with display:
        if suite.settings.standins:
            write_standins(suite.settings.data_root, display.say)
        display.say(
            f"bench: suite '{suite.name}': {len(plan.studies)} studies, {total} trials, {workers} worker(s)"
        )
        display.say(f"bench: tracking {suite.settings.tracking_uri}  studies {suite.settings.storage}")
        est = plan.estimate
        display.say(
            f"bench: compute: {est.steps} optimizer steps"
            + (f", {si(est.tokens)} tokens" if est.tokens is not None else "")
            + (f", {si(est.flops, 'FLOP')}" if est.flops is not None else "")
            + (" (at least: some tasks declare no per-step figure)" if est.partial else "")
        )
        if distributed.world_size() > 1:
            off = (
                "" if suite.tuning.pruner == "none" else " (pruning is off: it needs the trial on every rank)"
            )
            display.say(
                f"bench: each trial runs on {distributed.world_size()} processes ({distributed.launcher()}){off}"
            )
        procs, queue, pump = [], None, None
        worker: Worker | None = None
        try:
            worker = Worker(suite, plan, display)  # opens (or creates) the stores
            preflight.check_artifacts(suite, worker.tracker.artifact_location)  # before any training
            say_recorded(worker.recorded(), total, display)
            if workers > 1:
                queue = multiprocessing.get_context("spawn").Queue()
                pump = display.serve(queue)
                procs = spawn_workers(suite, workers - 1, queue)
            worker.work()
        except BaseException:
            for p in procs:  # the first process failed or was interrupted: so is the run
                p.terminate()
            raise
        finally:
            distributed.announce(None)  # release the followers of a multi-process trial
            for p in procs:
                p.join()
            if queue is not None:
                queue.put(None)
                pump.join()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            display.say(f"bench: {len(failed)} worker process(es) exited with an error")
        result: dict[str, Any] = {"trials_run": worker.ran}
        if leaderboard:
            result["leaderboard"] = report.build_leaderboard(
                suite, tracker=worker.tracker, out=display.say, rebuild=False
            )
    return result
