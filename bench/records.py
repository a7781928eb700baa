"""What a suite's runs record in the tracking store, declared once. Imports neither torch nor MLflow.

The engine builds a `TrialRecord` when a trial starts and adds its `Summary` when it ends; `encode`
turns a record into the tags, params and metrics of one run, `decode` turns a run's back into the
record, and `bench.track` writes and reads them (MLflow is its business, the names are ours). No other
module spells a tag name.

    experiment  <suite name>
      run  "<suite>"                      kind=suite   resolved suite, leaderboard files and plots
      run  "<task>/<optimizer>"           kind=study   `StudyRecord`: one per study, parent of its trials;
                                                       budget spent, best so far, outcomes (`study_progress`)
        run "<task>/<optimizer>#<n>"      kind=tune    `TrialRecord`: one per tuning trial (child)
        run "<task>/<optimizer>@seed<k>"  kind=seed    reruns of the best configuration

A trial run holds, besides the curves the runner logs during training (`train/loss`, `val/...`; and
Lightning's throughput figures, recorded as `system/...`, see `curve_name`):

- tags `bench.*`: identity (suite, task, optimizer, study, trial_id, number = the slot, optuna_trial,
  kind, seed), what is measured (metric, mode, target, lr, params as JSON, tokens_per_step,
  failure_value = what a failed trial costs), how it was chosen (protocol; for a sweep point the axis
  it lies on, `lr`, a hyperparameter or `warmup`, its value there and the axis' scale), where the
  numbers come from
  (task_version, optimizer_source, fingerprint, git_commit, hardware, versions), and the outcome
  (`running` until the trial ends);
- params: the searched values `hp.<name>`, the optimizer's keyword arguments `opt.<name>`, seed,
  steps, schedule, warmup, batch_size (global), world_size, batch_size_per_device, global_batch_size;
- summary metrics at the end: value, steps, time_s, steps/seconds/tokens_to_target (names without a
  `/`, so MLflow's chart view lists them after the curves), the cost of a step (`COST_METRICS`, measured
  by `bench.run.StepClock`): step_time_s and update_time_s (means after the first steps) and state_bytes
  (the optimizer state's tensors), and every final validation metric in the tag `bench.final` (the
  curves' last points, as JSON);
- artifacts: the resolved suite (`RESOLVED_ARTIFACT`), and the traceback of a failed trial
  (`ERROR_ARTIFACT`). Its status is FINISHED, or FAILED when the outcome is `error`.

Values are written as MLflow shows them: floats by `repr`, lists and dicts as JSON, the rest by `str`.
Params are read back by parsing that text (JSON, then Python literals), so a tuple comes back a list.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# -- kinds of runs -----------------------------------------------------------------------------------
TUNE, SEED = "tune", "seed"
KINDS: tuple[str, ...] = (TUNE, SEED)  # the trial kinds: a searched configuration, a seed rerun
STUDY_KIND, SUITE_KIND = "study", "suite"
RUNNING = "running"  # a trial's outcome until it ends
ENDED = ("FINISHED", "FAILED")  # statuses of trials that ended (KILLED: a dead attempt, retired)

# -- tag names ---------------------------------------------------------------------------------------
KIND = "bench.kind"
SUITE = "bench.suite"
TASK = "bench.task"
OPTIMIZER = "bench.optimizer"
STUDY = "bench.study"
TRIAL_ID = "bench.trial_id"
NUMBER = "bench.number"
OPTUNA_TRIAL = "bench.optuna_trial"
SEED_TAG = "bench.seed"
OUTCOME = "bench.outcome"
METRIC = "bench.metric"
MODE = "bench.mode"
TARGET = "bench.target"
LR = "bench.lr"
PARAMS = "bench.params"
TOKENS_PER_STEP = "bench.tokens_per_step"
TASK_VERSION = "bench.task_version"
OPTIMIZER_SOURCE = "bench.optimizer_source"
GIT_COMMIT = "bench.git_commit"
HARDWARE = "bench.hardware"
VERSIONS = "bench.versions"
FINGERPRINT = "bench.fingerprint"
PROTOCOL = "bench.protocol"
RETIRED = "bench.retired"  # on a dead attempt's run: why it was retired
FAILURE_VALUE = "bench.failure_value"
AXIS = "bench.axis"
AXIS_VALUE = "bench.axis_value"
AXIS_SCALE = "bench.axis_scale"
OUTCOMES_TAG = "bench.outcomes"  # on a study's run: how its trials ended, in words
FINAL = "bench.final"  # a trial's final validation metrics, JSON
SLOTS = "bench.trials"  # a study run's budget of tuning slots (a tag: extending a study raises it)
LEADERBOARD_OF = "bench.leaderboard_of"  # on the suite run: what its leaderboard files were built from

# -- artifacts ---------------------------------------------------------------------------------------
RESOLVED_ARTIFACT = "suite.resolved.json"
ERROR_ARTIFACT = "error.txt"
LEADERBOARD_DIR = "leaderboard"  # the suite run's artifact folder: the leaderboard files, plots beside them

# Summary metric names (no `/`: MLflow's chart view shows sections by prefix in alphabetical order and
# the unprefixed "Model metrics" last, so the curves `train/...` and `val/...` come first).
SUMMARY_METRICS = ("value", "steps", "time_s", "steps_to_target", "seconds_to_target", "tokens_to_target")
# The cost of one optimizer step, logged as summary metrics too: `bench check` gates them (as ratios).
COST_METRICS = ("step_time_s", "update_time_s", "state_bytes")

# The columns of `table_row`, the trials table `bench.score` documents and consumes.
COLUMNS = (
    "suite", "task", "optimizer", "study", "trial_id", "run_id", "number", "kind", "seed", "outcome",
    "metric", "value", "mode", "target", "lr", "params", "steps", "time_s", "steps_to_target",
    "seconds_to_target", "tokens_to_target", "tokens_per_step", "protocol", "failure_value", "axis",
    "axis_value", "axis_scale", "warmup", *COST_METRICS,
)  # fmt: skip


@dataclass(frozen=True)
class RunFields:
    """One run's contents as the tracking store holds them: string tags and params, float metrics."""

    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """Where a trial's numbers come from (computed once per process by `bench.provenance.collect`)."""

    git_commit: str
    versions: Mapping[str, str]
    hardware: str  # machine, CPU count, GPU and OS


@dataclass(frozen=True)
class Summary:
    """How a trial ended. `value` is the final task metric (NaN when none was measured); `error` (the
    traceback of a failed trial) is stored as an artifact and not read back by `decode`."""

    outcome: str
    value: float
    steps: int
    time_s: float
    steps_to_target: float = math.nan
    seconds_to_target: float = math.nan
    tokens_to_target: float = math.nan
    final: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    step_time_s: float = math.nan  # mean seconds per optimizer step (after the first steps)
    update_time_s: float = math.nan  # of which the optimizer's update (clipping, step, scheduler)
    state_bytes: float = math.nan  # bytes of the optimizer state's tensors after training, per process


@dataclass(frozen=True)
class TrialRecord:
    """One trial run: built when the trial starts (`summary` None, outcome `running`), completed with
    its `Summary` when it ends. `run_id` and `status` are filled in by `decode`."""

    suite: str
    task: str
    optimizer: str  # the optimizer's label in the suite
    study: str
    trial_id: str
    number: int  # the slot (tune) or the seed (seed rerun) within the study
    optuna_trial: int
    kind: str  # TUNE or SEED
    seed: int
    metric: str
    mode: str
    target: float | None
    lr: float
    hparams: Mapping[str, Any]  # the searched values, by search name
    kwargs: Mapping[str, Any]  # the optimizer's keyword arguments (defaults + fixed + searched)
    steps: int
    batch_size: int  # global, per forward/backward
    schedule: str
    world_size: int
    batch_size_per_device: int
    global_batch_size: int  # examples behind one optimizer step
    tokens_per_step: float | None
    task_version: int
    optimizer_source: str
    fingerprint: str
    provenance: Provenance
    summary: Summary | None = None
    run_id: str = ""
    status: str = ""
    protocol: str = ""  # the suite's tuning protocol
    failure_value: float | None = None  # what a failed trial costs in `metric` (None: not declared)
    axis: str = ""  # a sweep point's axis: "lr", a searched name or "warmup" ("" for other protocols)
    axis_value: Any = None  # its value on that axis
    axis_scale: str = ""  # how the axis is spaced: "log", "linear" or "choice"
    warmup: float | None = None  # the schedule's warmup (fraction of steps if < 1, else steps)

    @property
    def outcome(self) -> str:
        return self.summary.outcome if self.summary is not None else RUNNING

    @property
    def ended_status(self) -> str:
        """The status its run ends with."""
        return "FAILED" if self.outcome == "error" else "FINISHED"


@dataclass(frozen=True)
class StudyRecord:
    """A study's parent run."""

    suite: str
    task: str
    optimizer: str
    study: str
    fingerprint: str
    metric: str
    protocol: str
    search_space: Mapping[str, str]  # parameter -> its description
    fixed: Mapping[str, Any]
    trials: int
    seeds: int
    steps: int


END_TAGS = (OUTCOME, FINAL)  # the tags a trial run's record changes when the trial ends


# -- finding runs ------------------------------------------------------------------------------------
def study_key(study: str) -> dict[str, str]:
    """The tags that find a study's parent run."""
    return {KIND: STUDY_KIND, STUDY: study}


def suite_key(suite: str) -> dict[str, str]:
    """The tags that find (and make) a suite's run."""
    return {KIND: SUITE_KIND, SUITE: suite}


# -- writing -----------------------------------------------------------------------------------------
def text(value: Any) -> str:
    """A value as a tag or param holds it."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def encode(record: TrialRecord | StudyRecord) -> RunFields:
    """What the tracking store holds for a record: its tags, params and summary metrics."""
    if isinstance(record, StudyRecord):
        return _encode_study(record)
    r, p = record, record.provenance
    tags = {
        SUITE: r.suite, TASK: r.task, OPTIMIZER: r.optimizer, STUDY: r.study, TRIAL_ID: r.trial_id,
        NUMBER: r.number, OPTUNA_TRIAL: r.optuna_trial, KIND: r.kind, SEED_TAG: r.seed, OUTCOME: r.outcome,
        METRIC: r.metric, MODE: r.mode, TARGET: _or_nan(r.target), LR: r.lr,
        PARAMS: json.dumps(dict(r.hparams), default=str), TOKENS_PER_STEP: _or_nan(r.tokens_per_step),
        TASK_VERSION: r.task_version, OPTIMIZER_SOURCE: r.optimizer_source, GIT_COMMIT: p.git_commit,
        HARDWARE: p.hardware, VERSIONS: json.dumps(dict(p.versions)), FINGERPRINT: r.fingerprint,
        PROTOCOL: r.protocol, FAILURE_VALUE: _or_nan(r.failure_value), AXIS: r.axis,
        AXIS_VALUE: "" if r.axis_value is None else r.axis_value, AXIS_SCALE: r.axis_scale,
    }  # fmt: skip
    if r.summary is not None:
        tags[FINAL] = json.dumps(dict(r.summary.final))
    params = {
        **{f"hp.{k}": v for k, v in r.hparams.items()},
        **{f"opt.{k}": v for k, v in r.kwargs.items()},
        "seed": r.seed, "steps": r.steps, "batch_size": r.batch_size, "schedule": r.schedule,
        **({"warmup": r.warmup} if r.warmup is not None else {}),
        "world_size": r.world_size, "batch_size_per_device": r.batch_size_per_device,
        "global_batch_size": r.global_batch_size,
    }  # fmt: skip
    metrics: dict[str, float] = {}
    if r.summary is not None:
        s = r.summary
        metrics = {
            "value": s.value, "steps": s.steps, "time_s": s.time_s, "steps_to_target": s.steps_to_target,
            "seconds_to_target": s.seconds_to_target, "tokens_to_target": s.tokens_to_target,
            **{name: getattr(s, name) for name in COST_METRICS},
        }  # fmt: skip
    return RunFields(
        tags={k: text(v) for k, v in tags.items()},
        params={k: text(v) for k, v in params.items()},
        metrics={k: float(v) for k, v in metrics.items()},
    )


def _encode_study(r: StudyRecord) -> RunFields:
    tags = {SUITE: r.suite, TASK: r.task, OPTIMIZER: r.optimizer, STUDY: r.study, KIND: STUDY_KIND,
            FINGERPRINT: r.fingerprint, METRIC: r.metric, PROTOCOL: r.protocol, SLOTS: r.trials}  # fmt: skip
    # `trials` is a tag, not a param: params are immutable and extending a study raises its budget
    params = {"search_space": dict(r.search_space), "fixed": dict(r.fixed), "seeds": r.seeds,
              "steps": r.steps, "protocol": r.protocol}  # fmt: skip
    return RunFields(
        tags={k: text(v) for k, v in tags.items()}, params={k: text(v) for k, v in params.items()}
    )


def study_progress(
    trials: int,
    steps: int,
    time_s: float,
    outcomes: Mapping[str, int],
    metric: str,
    best: float | None,
) -> RunFields:
    """What a study's run records as its trials end (all workers'), at step = its finished trials:

    - `best/<metric>` (e.g. `best/val/error`), the best value of its completed trials so far: the study's
      tuning curve, and the first chart MLflow's chart view shows for the study runs (the runs it shows
      before their trials are expanded);
    - `trials`, `steps`, `time_s`: its finished trials and their training steps and seconds (unprefixed
      names, so their charts come last, as a trial's summary metrics);
    - the tag `bench.outcomes`, how they ended in words ("3 completed, 1 diverged"): a count per outcome
      as metrics would add a chart each, mostly a flat zero.
    """
    metrics = {"trials": float(trials), "steps": float(steps), "time_s": float(time_s)}
    if best is not None and math.isfinite(best):
        metrics[f"best/{metric}"] = float(best)
    ended = ", ".join(f"{n} {o}" for o, n in outcomes.items() if n) or "none yet"
    return RunFields(tags={OUTCOMES_TAG: ended}, metrics=metrics)


def _shown(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def note(record: TrialRecord | StudyRecord) -> str:
    """A run's description, Markdown (MLflow shows it on the run's page): what the run is, in words."""
    if isinstance(record, StudyRecord):
        r = record
        space = "; ".join(f"`{k}` {v}" for k, v in r.search_space.items()) or "nothing searched"
        reruns = f" The best configuration is rerun on {r.seeds - 1} more seed(s)." if r.seeds > 1 else ""
        return (
            f"Study **{r.task} x {r.optimizer}** of suite `{r.suite}`: {r.trials} `{r.protocol}` trial(s) of "
            f"{r.steps} steps over {space}.{reruns} Its trials are the runs nested below (expand the row); "
            f"`best/{r.metric}` is the best value so far by trials finished, `trials`, `steps` and `time_s` "
            f"what they have spent, and the tag `{OUTCOMES_TAG}` how they ended."
        )
    r = record
    what = (
        f"Tuning trial (slot {r.number})"
        if r.kind == TUNE
        else f"Rerun of the best configuration on seed {r.seed}"
    )
    target = "" if r.target is None else f", target {r.target:g}"
    text = (
        f"{what} of study `{r.study}`: {r.optimizer} on {r.task} for {r.steps} steps, "
        f"{_shown(r.hparams) or 'default hyperparameters'}. Metric `{r.metric}` ({r.mode}{target})."
    )
    if r.summary is not None:
        s = r.summary
        value = f"{r.metric} = {s.value:.4g}" if math.isfinite(s.value) else f"no finite {r.metric}"
        text += f" **Outcome: {s.outcome}**, {value} after {s.steps} steps ({s.time_s:.1f} s)."
    return text


def suite_note(suite: str) -> str:
    """The suite run's description: where its leaderboard is."""
    return (
        f"Suite `{suite}`: the leaderboard is this run's artifact `{LEADERBOARD_DIR}/{suite}.html` (tables and "
        f"plots in one page; also `.md`, `.csv`, `.json`). The studies and their trials are the other runs of "
        "this experiment."
    )


def experiment_note(suite: str, description: str | None) -> str:
    """The experiment's description: the suite's own, and how its runs are laid out."""
    head = f"{description.strip()}\n\n" if description else ""
    return (
        f"{head}A bench suite: one run per study (task x optimizer) with its trials nested below it, and the "
        f"run `{suite}` holding the leaderboard (Artifacts: `{LEADERBOARD_DIR}/{suite}.html`). "
        "Curves: `train/loss`, `val/...`; throughput under `system/`."
    )


def curve_name(key: str) -> str | None:
    """The name a metric the runner logs during training is recorded under (None: not recorded).

    The runner's own curves keep their names (`train/loss`, `val/...`, `val_ema/...`); Lightning's
    ThroughputMonitor figures (`train/batches_per_sec`, `train/device/mfu`, ...) are system metrics, one
    level under `system/` (`system/batches_per_sec`, `system/device_mfu`): MLflow shows exactly that prefix
    in its System metrics tab and last among the charts, where a deeper `system/device/` would be a
    section of its own, sorted before `train`. Lightning's `epoch` counter, meaningless in a run measured
    in steps, is dropped."""
    if key == "epoch":
        return None
    if key.startswith("train/") and key != "train/loss":
        return "system/" + key.removeprefix("train/").replace("/", "_")
    return key


# -- reading back ------------------------------------------------------------------------------------
def _value(raw: str) -> Any:
    """A param's text back to a value (see `text`): JSON, else a Python literal, else the text."""
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def is_trial(tags: Mapping[str, str]) -> bool:
    return tags.get(KIND) in KINDS


def decode(fields: RunFields, run_id: str = "", status: str = "") -> TrialRecord | None:
    """The record a trial run holds (None for a study or suite run). A run that has not ended (outcome
    `running`) comes back without a summary."""
    t, p, m = fields.tags, fields.params, fields.metrics
    if not is_trial(t):
        return None
    target = float(t.get(TARGET, "nan"))
    tokens = float(t.get(TOKENS_PER_STEP, "nan"))
    failure = float(t.get(FAILURE_VALUE, "nan"))
    outcome = t.get(OUTCOME, RUNNING)
    summary = None
    if outcome != RUNNING:
        summary = Summary(
            outcome=outcome,
            value=m.get("value", math.nan),
            steps=int(m.get("steps", 0)),
            time_s=m.get("time_s", math.nan),
            steps_to_target=m.get("steps_to_target", math.nan),
            seconds_to_target=m.get("seconds_to_target", math.nan),
            tokens_to_target=m.get("tokens_to_target", math.nan),
            final=json.loads(t.get(FINAL, "{}")),
            **{name: m.get(name, math.nan) for name in COST_METRICS},
        )

    def param(name: str, default: Any = None) -> Any:
        return _value(p[name]) if name in p else default

    return TrialRecord(
        suite=t.get(SUITE, ""),
        task=t.get(TASK, ""),
        optimizer=t.get(OPTIMIZER, ""),
        study=t.get(STUDY, ""),
        trial_id=t.get(TRIAL_ID, ""),
        number=int(t.get(NUMBER, -1)),
        optuna_trial=int(t.get(OPTUNA_TRIAL, -1)),
        kind=t[KIND],
        seed=int(t.get(SEED_TAG, 0)),
        metric=t.get(METRIC, ""),
        mode=t.get(MODE, "min"),
        target=None if math.isnan(target) else target,
        lr=float(t.get(LR, "nan")),
        hparams=json.loads(t.get(PARAMS, "{}")),
        kwargs={k.removeprefix("opt."): _value(v) for k, v in p.items() if k.startswith("opt.")},
        steps=param("steps", 0),
        batch_size=param("batch_size", 0),
        schedule=str(param("schedule", "")),
        world_size=param("world_size", 1),
        batch_size_per_device=param("batch_size_per_device", 0),
        global_batch_size=param("global_batch_size", 0),
        tokens_per_step=None if math.isnan(tokens) else tokens,
        task_version=int(t.get(TASK_VERSION, 0)),
        optimizer_source=t.get(OPTIMIZER_SOURCE, ""),
        fingerprint=t.get(FINGERPRINT, ""),
        provenance=Provenance(
            git_commit=t.get(GIT_COMMIT, ""),
            versions=json.loads(t.get(VERSIONS, "{}")),
            hardware=t.get(HARDWARE, ""),
        ),
        summary=summary,
        run_id=run_id,
        status=status,
        protocol=t.get(PROTOCOL, ""),
        failure_value=None if math.isnan(failure) else failure,
        axis=t.get(AXIS, ""),
        axis_value=_value(t[AXIS_VALUE]) if t.get(AXIS_VALUE) else None,
        axis_scale=t.get(AXIS_SCALE, ""),
        warmup=param("warmup"),
    )


def table_row(record: TrialRecord) -> dict[str, Any]:
    """An ended trial as a row of the trials table (`COLUMNS`)."""
    s = record.summary
    if s is None:
        raise ValueError(f"trial {record.trial_id} has not ended: no row for it")
    return {
        "suite": record.suite,
        "task": record.task,
        "optimizer": record.optimizer,
        "study": record.study,
        "trial_id": record.trial_id,
        "run_id": record.run_id,
        "number": record.number,
        "kind": record.kind,
        "seed": record.seed,
        "outcome": s.outcome,
        "metric": record.metric,
        "value": s.value,
        "mode": record.mode,
        "target": _number(record.target),
        "lr": record.lr,
        "params": dict(record.hparams),
        "steps": s.steps,
        "time_s": s.time_s,
        "steps_to_target": s.steps_to_target,
        "seconds_to_target": s.seconds_to_target,
        "tokens_to_target": s.tokens_to_target,
        "tokens_per_step": _number(record.tokens_per_step),
        "protocol": record.protocol,
        "failure_value": _number(record.failure_value),
        "axis": record.axis,
        "axis_value": record.axis_value,
        "axis_scale": record.axis_scale,
        "warmup": _number(record.warmup),
        **{name: getattr(s, name) for name in COST_METRICS},
    }
