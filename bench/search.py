"""Optuna: storage, samplers, pruners, and a budget of trial slots per study.

This is the only module that imports Optuna.

**Budget as slots.** When a study is first created, its whole budget is enqueued at once as WAITING
trials ("slots"), each numbered by a user attr `slot`. Non-adaptive protocols (random, qmc, grid,
defaults) get their configurations drawn up front by Optuna's own sampler with the suite's seed, so
the configurations do not depend on how many workers ran or how often the suite was interrupted;
adaptive protocols (tpe, cmaes) get empty slots that the sampler fills at suggest time. Workers only
ever pop slots, so N workers on one study (one process, several processes, several machines sharing
a PostgreSQL storage) run exactly the budget between them.

**Resume.** RDB storages run with a heartbeat: a trial whose process died (kill -9, a lost node)
stops beating, is failed after the grace period by `fail_stale_trials`, and Optuna's
`RetryFailedTrialCallback` re-enqueues it with the same parameters and user attrs (including the
MLflow run id of the dead attempt, which the engine then retires). A rerun of the suite therefore
finishes every slot exactly once. Journal-file storage has no heartbeat in Optuna: a trial that was
running when its process was killed is failed on the next `bench run` of that suite instead.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from optuna_integration import PyTorchLightningPruningCallback

from bench.space import Categorical, Float, Int, Param

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats, stale-trial retry and QMC are marked experimental by Optuna; we rely on them on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

PROTOCOLS = ("random", "qmc", "tpe", "cmaes", "grid", "defaults")
PRUNERS = ("none", "median", "hyperband")
ADAPTIVE = ("tpe", "cmaes")
GRID_POINTS = 4  # points per continuous axis for the grid protocol

TrialPruned = optuna.TrialPruned
Trial = optuna.Trial
Study = optuna.Study


class ExcessTrial(Exception):
    """A worker got a fresh trial instead of a slot (a race with another worker): not run."""


def open_storage(url: str, heartbeat_s: float = 10.0) -> optuna.storages.BaseStorage:
    """An Optuna storage for a URL: `sqlite:///path.db`, `postgresql://...` (RDB, with heartbeat and
    retry of dead trials), or a path ending in `.log` / `journal:path` (journal file)."""
    if url.endswith(".log") or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    return RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=max(1, int(heartbeat_s)),
        grace_period=max(2, int(3 * heartbeat_s)),
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
    )


def distribution(param: Param) -> BaseDistribution:
    if isinstance(param, Float):
        return FloatDistribution(param.low, param.high, log=param.log)
    if isinstance(param, Int):
        return IntDistribution(param.low, param.high, log=param.log)
    return CategoricalDistribution(list(param.choices))


def suggest(trial: optuna.Trial, space: Mapping[str, Param]) -> dict[str, Any]:
    """Ask the trial for every parameter of `space` (fixed for enqueued slots)."""
    values: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, Float):
            values[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
        elif isinstance(p, Int):
            values[name] = trial.suggest_int(name, p.low, p.high, log=p.log)
        else:
            values[name] = trial.suggest_categorical(name, list(p.choices))
    return values


def grid(space: Mapping[str, Param], points: int = GRID_POINTS) -> dict[str, list[Any]]:
    """A grid over `space`: `points` values per continuous axis (log-spaced on log axes)."""
    axes: dict[str, list[Any]] = {}
    for name, p in space.items():
        if isinstance(p, Categorical):
            axes[name] = list(p.choices)
        elif isinstance(p, Int):
            vals = np.geomspace(p.low, p.high, points) if p.log else np.linspace(p.low, p.high, points)
            axes[name] = sorted({int(round(v)) for v in vals})
        else:
            vals = np.geomspace(p.low, p.high, points) if p.log else np.linspace(p.low, p.high, points)
            axes[name] = [float(v) for v in vals]
    return axes


def grid_size(space: Mapping[str, Param]) -> int:
    return math.prod(len(v) for v in grid(space).values()) if space else 1


def make_sampler(protocol: str, seed: int, space: Mapping[str, Param]) -> optuna.samplers.BaseSampler:
    if protocol == "random" or protocol == "defaults":
        return optuna.samplers.RandomSampler(seed=seed)
    if protocol == "qmc":
        return optuna.samplers.QMCSampler(
            qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False
        )
    if protocol == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, len(space) + 1)))
    if protocol == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if protocol == "grid":
        return optuna.samplers.GridSampler(grid(space), seed=seed)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


def make_pruner(name: str, steps: int, eval_every: int) -> optuna.pruners.BasePruner:
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=eval_every)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, eval_every), max_resource=steps, reduction_factor=3
        )
    raise ValueError(f"unknown pruner {name!r}; expected one of {', '.join(PRUNERS)}")


def draw_configurations(protocol: str, seed: int, space: Mapping[str, Param], n: int) -> list[dict[str, Any]]:
    """The `n` configurations a non-adaptive protocol tries, drawn up front (empty for adaptive ones)."""
    if protocol in ADAPTIVE:
        return [{} for _ in range(n)]
    if protocol == "defaults" or not space:
        return [{} for _ in range(n)]
    if protocol == "grid":
        axes = grid(space)
        combos = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
        return combos[:n]
    scratch = optuna.create_study(sampler=make_sampler(protocol, seed, space))
    configs = []
    for _ in range(n):
        trial = scratch.ask()
        configs.append(suggest(trial, space))
        scratch.tell(trial, 0.0)
    return configs


class PruningCallback(PyTorchLightningPruningCallback):
    """optuna-integration's Lightning pruning callback, reporting at the optimizer step rather than
    the epoch: bench trials are step-based and validate several times within one epoch."""

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self.is_ddp_backend:
            return super().on_validation_end(trainer, pl_module)
        score = trainer.callback_metrics.get(self.monitor)
        if score is None or not math.isfinite(float(score)):
            return
        self._trial.report(float(score), step=trainer.global_step)
        if self._trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {trainer.global_step}")


def is_pruned(exc: BaseException) -> bool:
    return isinstance(exc, optuna.TrialPruned)


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    *,
    direction: str,
    protocol: str,
    seed: int,
    space: Mapping[str, Param],
    pruner: optuna.pruners.BasePruner,
    slots: Sequence[Mapping[str, Any]],
    slot_attrs: Sequence[Mapping[str, Any]] | None = None,
    study_attrs: Mapping[str, Any] | None = None,
    on_create: Callable[[optuna.Study], None] | None = None,  # must be idempotent
    wait_s: float = 30.0,
) -> tuple[optuna.Study, bool]:
    """Open (or atomically create) a study whose budget is `slots`. Returns (study, created).

    The creator enqueues every slot and then marks the study ready; other workers wait for that mark.
    A creator that died before marking is repaired by the next worker (missing slots enqueued).
    """
    sampler = make_sampler(protocol, seed, space)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=direction, sampler=sampler, pruner=pruner
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        created = False
    if created:
        for key, value in (study_attrs or {}).items():
            study.set_user_attr(key, value)
        if on_create is not None:
            on_create(study)
        _enqueue_missing(study, slots, slot_attrs)
        study.set_user_attr("bench.ready", True)
        return study, True
    deadline = time.monotonic() + wait_s
    while not study.user_attrs.get("bench.ready"):
        if time.monotonic() > deadline:  # the creator died mid-way: finish its work
            if on_create is not None:  # idempotent by contract
                on_create(study)
            _enqueue_missing(study, slots, slot_attrs)
            study.set_user_attr("bench.ready", True)
            break
        time.sleep(0.5)
    return study, False


def _enqueue_missing(
    study: optuna.Study, slots: Sequence[Mapping[str, Any]], slot_attrs: Sequence[Mapping[str, Any]] | None
) -> None:
    present = {t.user_attrs.get("slot") for t in study.get_trials(deepcopy=False)}
    for i, params in enumerate(slots):
        if i in present:
            continue
        attrs = {"slot": i, **(slot_attrs[i] if slot_attrs else {})}
        study.enqueue_trial(dict(params), user_attrs=attrs, skip_if_exists=False)


def fail_stale(study: optuna.Study) -> None:
    optuna.storages.fail_stale_trials(study)


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state name (COMPLETE, PRUNED, RUNNING, WAITING, FAIL)."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def pending(study: optuna.Study) -> tuple[int, int]:
    """(waiting, running) trial counts."""
    c = counts(study)
    return c.get("WAITING", 0), c.get("RUNNING", 0)


def run_one(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    catch: tuple[type[Exception], ...] = (),
) -> None:
    """Pop one slot and run `objective` on it (with heartbeat and stale-trial recovery)."""
    study.optimize(objective, n_trials=1, catch=(ExcessTrial, *catch), gc_after_trial=False)


def is_slot(trial: optuna.Trial) -> bool:
    return "slot" in trial.user_attrs


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [
        t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best completed trial whose outcome was `completed` (finite value)."""
    good = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("outcome") == "completed" and t.value is not None and math.isfinite(t.value)
    ]
    if not good:
        return None
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1
    return min(good, key=lambda t: sign * t.value)
