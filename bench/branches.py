"""Run a trial whose schedule has horizons: the trunk, a cooldown branch per horizon, a run per horizon.

The engine calls `train_horizons` instead of `bench.run.train_trial` when the study has horizons
(`StudyPlan.horizons`, the branch plan of `bench.horizons`). It runs, through the runner (Lightning stays
in `bench.run`):

1. the **trunk**: the trial at constant lr (after warmup) up to the last cooldown start, saving a
   Lightning checkpoint at every cooldown start (`Segment(stop_at, checkpoints)`); its curves go to the
   trial's run, and what it measured to `trunk.json` beside the checkpoints;
2. a **branch** per horizon, shortest first: resumed from its checkpoint (`Segment(resume_from)`), cooled
   down to its own end and evaluated there (raw weights, and the EMA when the optimizer has `ema:`),
   recorded as its own MLflow run (kind `horizon`) under the trial's run.

The trial's own result is its longest horizon's; its `time_s` is what the whole run took (trunk plus
every cooldown), which is what the study's time budget counts.

**Nothing is trained twice after a kill.** Checkpoints and `trunk.json` live under
`settings.checkpoint_dir/<suite>/<trial_id>/` until every horizon is recorded. When the engine retries a
trial whose process died, the trunk is not retrained: a finished trunk is read back from `trunk.json`,
an unfinished one resumes from its latest checkpoint. A horizon recorded by the dead attempt is kept
(its run joins the retry's trial run) and a horizon that was training is started again from its
checkpoint, its dead run retired, so every horizon ends up recorded exactly once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench import records
from bench.faults import recording
from bench.horizons import Branch, HorizonPlan, first_reach, merge_curve
from bench.plan import tokens_per_step
from bench.records import HORIZON, Summary, TrialRecord
from bench.run import LogMetrics, OnEval, OnStep, Segment, TrialResult, TrialSpec, train_trial
from bench.track import Tracker

TRUNK_FILE = "trunk.json"


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step}.ckpt"


def trial_directory(root: str | Path, suite: str, trial_id: str) -> Path:
    """Where one trial keeps its checkpoints while its horizons are being recorded."""
    return Path(root) / suite / trial_id


def _curve_metrics(spec: TrialSpec, curves: Mapping[str, Any], upto: int) -> dict[int, dict[str, float]]:
    """The module's curves (train loss, task metric, other validation metrics) as MLflow metrics by step,
    up to and including `upto`."""
    names = {"train": "train/loss", "val": spec.task.metric}
    out: dict[int, dict[str, float]] = {}
    for key, points in curves.items():
        for step, value in points:
            if step <= upto:
                out.setdefault(int(step), {})[names.get(key, key)] = float(value)
    return out


def _log_curves(log: LogMetrics, spec: TrialSpec, curves: Mapping[str, Any], upto: int) -> None:
    for step, metrics in sorted(_curve_metrics(spec, curves, upto).items()):
        log(metrics, step)


def _result_dict(r: TrialResult) -> dict[str, Any]:
    return {
        "outcome": r.outcome,
        "value": r.value,
        "metrics": r.metrics,
        "steps": r.steps,
        "time_s": r.time_s,
        "curves": {k: [list(p) for p in v] for k, v in r.curves.items()},
        "eval_seconds": {str(k): v for k, v in r.eval_seconds.items()},
        "error": r.error,
    }


def _result_of(d: Mapping[str, Any]) -> TrialResult:
    return TrialResult(
        outcome=d["outcome"],
        value=d["value"] if d["value"] is not None else math.nan,
        metrics=dict(d["metrics"]),
        steps=int(d["steps"]),
        time_s=float(d["time_s"]),
        curves={k: [(int(a), float(b)) for a, b in v] for k, v in d["curves"].items()},
        eval_seconds={int(k): float(v) for k, v in d["eval_seconds"].items()},
        error=d.get("error"),
    )


class Horizons:
    """One horizons trial (see the module docstring); `run()` returns the trial's result."""

    def __init__(
        self,
        spec: TrialSpec,
        plan: HorizonPlan,
        *,
        directory: Path,
        tracker: Tracker,
        record: TrialRecord,
        run_id: str,
        name: str,
        summarize: Callable[[TrialResult], Summary],
        log_metrics: LogMetrics,
        on_eval: OnEval | None = None,
        on_step: OnStep | None = None,
        say: Callable[[str], None] = print,
    ):
        """`record`, `run_id` and `name`: the trial's record, run and run name (a horizon's run is named
        `<name>/h<steps>`); `summarize`: a result as the record's summary (the engine's)."""
        self.spec, self.plan, self.dir = spec, plan, Path(directory)
        self.tracker, self.record, self.run_id, self.name = tracker, record, run_id, name
        self.summarize = summarize
        self.log_metrics, self.on_eval, self.on_step, self.say = log_metrics, on_eval, on_step, say
        self.started = time.perf_counter()
        self.spent_s = 0.0  # wall seconds of the segments this attempt trained

    # -- the trunk --------------------------------------------------------------------------------
    def trunk(self) -> TrialResult:
        """The trunk's result: read back, resumed from its latest checkpoint, or trained."""
        saved = self.dir / TRUNK_FILE
        if saved.exists():
            trunk = _result_of(json.loads(saved.read_text()))
            _log_curves(self.log_metrics, self.spec, trunk.curves, self.plan.trunk)
            self.say(f"bench: {self.record.trial_id}: trunk of {trunk.steps} steps read back (not retrained)")
            return trunk
        paths = {c: checkpoint_path(self.dir, c) for c in self.plan.checkpoints}
        done = [c for c, path in paths.items() if path.exists()]
        resume = max(done, default=None)
        segment = Segment(
            resume_from=paths[resume] if resume is not None else None,
            stop_at=self.plan.trunk,
            checkpoints={c: p for c, p in paths.items() if c not in done},
        )
        log = self.log_metrics
        if resume is not None:
            self.say(f"bench: {self.record.trial_id}: trunk resumed from its checkpoint at step {resume}")
        begun = time.perf_counter()
        trunk = train_trial(
            dataclasses.replace(self.spec, segment=segment),
            log_metrics=log,
            on_eval=self.on_eval,
            on_step=self.on_step,
        )
        self.spent_s += time.perf_counter() - begun
        if resume is not None:  # the steps before the checkpoint were logged by the dead attempt's run
            _log_curves(self.log_metrics, self.spec, trunk.curves, resume)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = saved.with_name(saved.name + ".tmp")
        tmp.write_text(json.dumps(_result_dict(trunk), default=float))
        tmp.replace(saved)
        return trunk

    # -- one horizon ------------------------------------------------------------------------------
    def horizon_record(self, branch: Branch) -> TrialRecord:
        return dataclasses.replace(
            self.record, kind=HORIZON, horizon=branch.steps, steps=branch.steps, schedule=branch.schedule.name
        )

    def recorded(self, branch: Branch) -> TrialRecord | None:
        """A horizon the dead attempt recorded (its run joins this trial's run); a run it left unfinished
        is retired."""
        found = None
        for run_id, status in self.tracker.find_runs(records.horizon_key(self.record.trial_id, branch.steps)):
            if status in records.ENDED and found is None:
                self.tracker.adopt(run_id, self.run_id)
                found = self.tracker.read_record(run_id)
            elif status not in records.ENDED:
                self.tracker.retire(run_id, "process died during this horizon's cooldown; trained again")
        return found

    def branch(self, branch: Branch, trunk: TrialResult, offset: int, last: bool) -> TrialResult:
        """Train one cooldown branch and record it; its result as a separate run of its length."""
        spec = self.spec
        task = dataclasses.replace(spec.task, steps=branch.steps)
        optimizer = dataclasses.replace(spec.optimizer, schedule=branch.schedule)
        ckpt = checkpoint_path(self.dir, branch.start)
        record = self.horizon_record(branch)
        run_id = self.tracker.open_trial(record, f"{self.name}/h{branch.steps}", self.run_id)
        if not ckpt.exists():  # the trunk ended (diverged, failed, timed out) before this horizon's cooldown
            error = (
                trunk.error
                or f"the trunk ended at step {trunk.steps}, before this cooldown's step {branch.start}"
            )
            result = dataclasses.replace(trunk, metrics={}, value=math.nan, error=error)
            self.tracker.close_trial(run_id, dataclasses.replace(record, summary=self.summarize(result)))
            return result
        on_step = (lambda s: self.on_step(offset + s - branch.start)) if self.on_step is not None else None
        begun = time.perf_counter()
        with self.tracker.metrics_writer(run_id) as writer:
            # the horizon run's writer fails as the recording, not as the trial (as the trial run's does)
            write = recording(writer)
            _log_curves(write, spec, trunk.curves, branch.start)

            def log(metrics: dict[str, float], step: int) -> None:
                write(metrics, step)
                if last:  # the trial's run holds the curves of its longest horizon, as a separate run would
                    self.log_metrics(metrics, step)

            result = train_trial(
                dataclasses.replace(spec, task=task, optimizer=optimizer, segment=Segment(resume_from=ckpt)),
                log_metrics=log,
                on_step=on_step,
            )
        self.spent_s += time.perf_counter() - begun
        result = self.merged(branch, trunk, result)
        self.tracker.close_trial(run_id, dataclasses.replace(record, summary=self.summarize(result)))
        return result

    def merged(self, branch: Branch, trunk: TrialResult, result: TrialResult) -> TrialResult:
        """A branch's result with the trunk's evaluations before its checkpoint: curves, time to target,
        and the time a separate run would have taken (the trunk's training seconds to the checkpoint)."""
        spec = self.spec
        curves = {k: merge_curve(trunk.curves.get(k, []), v, branch.start) for k, v in result.curves.items()}
        seconds = {
            **{s: t for s, t in trunk.eval_seconds.items() if s <= branch.start},
            **result.eval_seconds,
        }
        steps = first_reach(curves.get("val", []), spec.task.target, spec.task.mode)
        per_step = tokens_per_step(spec.task, spec.trainer.accumulate_grad_batches)
        return dataclasses.replace(
            result,
            curves=curves,
            eval_seconds=seconds,
            # training seconds through the horizon's end, the trunk's share included
            time_s=result.eval_seconds.get(branch.steps, result.time_s),
            steps_to_target=steps,
            seconds_to_target=seconds.get(int(steps), math.nan) if math.isfinite(steps) else math.nan,
            tokens_to_target=steps * per_step if per_step and math.isfinite(steps) else math.nan,
        )

    # -- the whole trial --------------------------------------------------------------------------
    def clean(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.dir.parent.rmdir()  # the suite's folder, when this was its last trial in progress

    def run(self) -> TrialResult:
        trunk = self.trunk()
        if trunk.outcome == "pruned":  # censored, like any pruned trial: no horizon is recorded
            self.clean()
            return trunk
        longest: TrialResult | None = None
        offset = self.plan.trunk
        for i, branch in enumerate(self.plan.branches):
            last = i == len(self.plan.branches) - 1
            found = self.recorded(branch)
            if found is not None and found.summary is not None:
                self.say(f"bench: {self.record.trial_id}: horizon {branch.steps} already recorded")
                result = _result_from_summary(found.summary)
                if last:  # its curves, for the trial's run
                    curves = self.tracker.curves({"h": found.run_id}, self.spec.task.metric)["h"]
                    _log_curves(self.log_metrics, self.spec, curves, branch.steps)
            else:
                result = self.branch(branch, trunk, offset, last)
            offset += branch.cooldown
            longest = result
        assert longest is not None
        self.clean()  # every horizon is recorded: the checkpoints are spent
        return dataclasses.replace(longest, time_s=time.perf_counter() - self.started)


def _result_from_summary(s: Summary) -> TrialResult:
    """A recorded horizon's result, read back from its summary: everything the trial's summary takes
    from it (`bench.engine.summary_of`), the cost of a step included."""
    return TrialResult(
        outcome=s.outcome,
        value=s.value,
        metrics=dict(s.final),
        steps=s.steps,
        time_s=s.time_s,
        steps_to_target=s.steps_to_target,
        seconds_to_target=s.seconds_to_target,
        tokens_to_target=s.tokens_to_target,
        error=s.error,
        **{name: getattr(s, name) for name in records.COST_METRICS},
    )


def train_horizons(spec: TrialSpec, plan: HorizonPlan, **kwargs: Any) -> TrialResult:
    """Train every horizon of one trial (see `Horizons` for the arguments) and return its result."""
    return Horizons(spec, plan, **kwargs).run()
