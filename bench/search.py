"""Optuna: storage, samplers, pruners, and a budget of trial slots per study.

This is the only module that imports Optuna.

**Budget as slots.** When a study is first created, its whole budget is enqueued at once as WAITING
trials ("slots"), each numbered by a user attr `slot`. Non-adaptive protocols (random, qmc, grid,
defaults) get their configurations drawn up front by Optuna's own sampler with the suite's seed, so
the configurations do not depend on how many workers ran or how often the suite was interrupted;
adaptive protocols (tpe, cmaes) get empty slots that the sampler fills at suggest time. Workers only
ever pop slots, so N workers on one study (one process, several processes, several machines sharing
a PostgreSQL storage) run exactly the budget between them.

**Resume, and nothing lost.** A slot ends finished (a COMPLETE or PRUNED trial) or back in the queue,
whatever happens. `repair_slots(study)`, which every worker runs before each trial it pops, under the
store's lock (`bench.locks`), fails the running trials whose process is dead and re-enqueues every slot
none of whose trials is finished, running or waiting, with the same parameters and user attrs (including
the MLflow run id of the dead attempt, which the engine then retires). A trial is dead when its heartbeat
is stale (RDB storages: Optuna's heartbeat, 3 beats of grace), when the process recorded on it
(`bench.worker`: this machine, pid) is gone, or when it was popped but never got as far as recording its
process. Because the re-enqueue is done by the repair and not by a callback right after failing the
trial, a worker killed between the two leaves a slot the next repair finds; because the repair holds the
lock, two workers never re-enqueue one slot twice. A journal-file storage has no heartbeat: a trial whose
machine died is recovered only on an RDB storage. `finished(study, n)` says whether every slot is done.

**Extending.** A study opened with more slots than it holds (the suite's `tuning.trials` was raised) gets
the missing ones enqueued, once, by whichever worker takes the extension's lock (the creation of a small
marker study, atomic in every storage; see `_extend`). Non-adaptive protocols draw their configurations
from a seeded sequence whose first N draws do not depend on how many are drawn, so the recorded slots
keep exactly their configurations and the new ones get the next draws; adaptive protocols' new slots are
proposed from the recorded trials, as they would have been in one longer run.

Adaptive samplers are made afresh for every trial, seeded with (sampler seed, trial number), so
workers and resumed runs never repeat each other's random draws (see `TrialSeeded`).

**Sweeps** (`bench.sweep`) run in stages, each its own study created once by `open_study` with its
points as slots (`best_of` finds the best trial over several of them).

**Importance** (`importances`): Optuna's fANOVA and PED-ANOVA evaluators, called on a plain table of
configurations and values, so that the scores need not know Optuna.

**Pruning** reaches the runner as a plain callable, `pruning_callable(trial)`: `on_eval(step, value)`
reports the task metric at the optimizer step and returns whether to stop. The runner knows nothing of
Optuna, and this module nothing of Lightning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from bench.faults import failpoint
from bench.locks import create_once, sqlite_wal, store_lock
from bench.schema import PROTOCOLS, PRUNERS
from bench.space import GRID_POINTS, Float, Int, Param, grid, grid_size

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _NoFailedTrialWarnings(logging.Filter):
    """Optuna logs every failed trial with its traceback. bench's trials fail in Optuna only when they did
    not run (a worker that lost the race for the last slot) or were interrupted (Ctrl-C, a full disk),
    and bench says so itself: the traceback would only bury that message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.getMessage().startswith("Trial ") and " failed with parameters" in record.getMessage()
        )


logging.getLogger("optuna.study._optimize").addFilter(_NoFailedTrialWarnings())
# Heartbeats, stale-trial retry and QMC are marked experimental by Optuna; we rely on them on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

ADAPTIVE = ("tpe", "cmaes")

TrialPruned = optuna.TrialPruned
Trial = optuna.Trial
Study = optuna.Study


class ExcessTrial(Exception):
    """A worker got a fresh trial instead of a slot (a race with another worker): not run."""


def open_storage(url: str, heartbeat_s: float = 10.0) -> optuna.storages.BaseStorage:
    """An Optuna storage for a URL: `sqlite:///path.db`, `postgresql://...` (RDB, with heartbeat), or a
    path ending in `.log` / `journal:path` (journal file). First use is serialized by the store's lock
    (`bench.locks`): however many workers start at once, one creates the tables, the others find them."""
    if url.endswith(".log") or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}

    def make(at: str) -> RDBStorage:
        # No stale-trial callback: failed trials are re-enqueued by `repair_slots`, under the lock.
        return RDBStorage(
            at,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=max(1, int(heartbeat_s)),
            grace_period=max(2, int(3 * heartbeat_s)),
        )

    create_once(url, lambda at: make(at).engine.dispose())
    with store_lock(url):
        sqlite_wal(url)
        storage = make(url)
    if url.startswith("sqlite:///"):
        immediate_transactions(storage.engine)
    return storage


def immediate_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Make every transaction on a SQLite engine take the write lock when it begins (`BEGIN IMMEDIATE`).

    Optuna pops a waiting trial by reading its state and then writing RUNNING (`set_trial_state_values`,
    whose `for_update` SQLite ignores), and Python's sqlite3 driver starts the transaction only at the
    write: two processes can both read WAITING and both run the trial (measured: 90 of 300 pops
    duplicated by 4 processes; `tests/test_search.py`). With the lock taken at BEGIN, the read and the
    write are one step; the others wait (the connection's busy timeout). SQLAlchemy's documented recipe
    for pysqlite transactions: the driver's own BEGIN is turned off, SQLAlchemy emits ours."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners close; new ones get them


def _unwrapped(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """The RDB or journal storage under Optuna's cache (a study's `_storage` is the cache)."""
    while not isinstance(storage, RDBStorage | JournalStorage) and hasattr(storage, "_backend"):
        storage = storage._backend  # private: Optuna's _CachedStorage keeps the RDB storage there
    return storage


def storage_url(storage: optuna.storages.BaseStorage) -> str:
    """The URL a storage was opened with: what `bench.locks` locks ("" for an in-memory storage, which
    one process owns). A study's storage is Optuna's cache around the RDB storage: unwrapped here, since
    a lock taken on the wrong name would silently lock nothing."""
    inner = _unwrapped(storage)
    if isinstance(inner, JournalStorage):
        return "journal:" + str(inner._backend._file_path)  # private: Optuna keeps no public path
    if isinstance(inner, RDBStorage):
        return str(inner.url)
    if isinstance(inner, optuna.storages.InMemoryStorage):
        return ""
    raise TypeError(f"bench does not know how to lock a {type(storage).__name__}")


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


class TrialSeeded(optuna.samplers.BaseSampler):
    """An adaptive sampler made afresh for each trial, seeded with (suite seed, trial number).

    A sampler seeded once per process repeats its random draws in every process that shares the study:
    two workers, or a run and its resume, would propose the same first configurations and spend budget
    twice on them. TPE and CMA-ES keep their state in the study, so a fresh instance per trial loses
    nothing; one worker's run stays reproducible and no two trials share their random numbers."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self._make, self._seed = make, seed
        self._number, self._sampler = -1, make(seed)

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if trial.number != self._number:  # one trial at a time per process (n_jobs=1)
            seed = int(np.random.SeedSequence([self._seed, trial.number]).generate_state(1)[0])
            self._number, self._sampler = trial.number, self._make(seed)
        return self._sampler

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


def make_sampler(
    protocol: str, seed: int, space: Mapping[str, Param], grid_points: int = GRID_POINTS
) -> optuna.samplers.BaseSampler:
    # An empty space has nothing to sample: its one slot runs the defaults, whatever the protocol (Optuna's
    # grid sampler cannot even finish a trial over an empty grid: KeyError 'grid_id'). A sweep's slots all
    # carry their point (bench.sweep).
    if protocol in ("random", "defaults", "sweep") or not space:
        return optuna.samplers.RandomSampler(seed=seed)
    if protocol == "qmc":
        return optuna.samplers.QMCSampler(
            qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False
        )
    if protocol == "tpe":
        startup = min(10, max(2, len(space) + 1))
        return TrialSeeded(lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=startup), seed)
    if protocol == "cmaes":
        return TrialSeeded(
            lambda s: optuna.samplers.CmaEsSampler(seed=s, warn_independent_sampling=False), seed
        )
    if protocol == "grid":
        return optuna.samplers.GridSampler(grid(space, grid_points), seed=seed)
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


def draw_configurations(
    protocol: str, seed: int, space: Mapping[str, Param], n: int, grid_points: int = GRID_POINTS
) -> list[dict[str, Any]]:
    """The `n` configurations a non-adaptive protocol tries, drawn up front (empty for adaptive ones;
    the sweep's points come from `bench.sweep`)."""
    if protocol in ADAPTIVE or protocol == "sweep":
        return [{} for _ in range(n)]
    if protocol == "defaults" or not space:
        return [{} for _ in range(n)]
    if protocol == "grid":  # the whole grid at most; a smaller budget gets a seeded random part of it
        n = min(n, grid_size(space, grid_points))
    scratch = optuna.create_study(sampler=make_sampler(protocol, seed, space, grid_points))
    configs: list[dict[str, Any]] = []

    def draw(trial: optuna.Trial) -> float:
        configs.append(suggest(trial, space))
        return 0.0

    scratch.optimize(draw, n_trials=n)  # not ask/tell: the grid sampler calls study.stop() when used up
    return configs


def pruning_callable(trial: optuna.Trial) -> Callable[[int, float], bool]:
    """What the runner calls at each evaluation (`on_eval`): report the task metric at the optimizer
    step to the trial, and answer whether the study's pruner stops it there. The runner stops training
    and records the outcome `pruned`; the engine then ends the trial as pruned (`TrialPruned`)."""

    def on_eval(step: int, value: float) -> bool:
        trial.report(value, step=step)
        return bool(trial.should_prune())  # a plain bool (Optuna may answer numpy.bool_)

    return on_eval


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
    on_extend: Callable[[optuna.Study, int, int], None] | None = None,  # (study, had, now); idempotent
    wait_s: float = 30.0,
) -> tuple[optuna.Study, bool]:
    """Open (or create) a study whose budget is `slots`. Returns (study, created).

    Under the store's lock: the creator sets the study's attrs, calls `on_create`, enqueues every slot
    and marks the study ready. A study found without the mark (its creator died half-way) is finished
    the same way by whoever opens it next: `on_create` again (idempotent by contract), missing slots only.
    A study holding fewer slots than `slots` is extended (`_extend`); one holding more is left as it is
    (the caller decides whether a smaller budget is acceptable: `slot_count`).
    """
    sampler = make_sampler(protocol, seed, space)
    with store_lock(storage_url(storage)):
        try:
            study = optuna.create_study(
                storage=storage, study_name=name, direction=direction, sampler=sampler, pruner=pruner
            )
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
            created = False
        if not study.user_attrs.get("bench.ready"):
            failpoint("study.created")
            for key, value in (study_attrs or {}).items():
                if key not in study.user_attrs:  # a dead creator may have set some
                    study.set_user_attr(key, value)
            if on_create is not None:
                on_create(study)
            _enqueue_missing(study, slots, slot_attrs)
            study.set_user_attr("bench.ready", True)
    if not created:
        _extend(storage, study, slots, slot_attrs, on_extend, wait_s)
    return study, created


def slot_count(study: optuna.Study) -> int:
    """How many slots (distinct `slot` user attrs) the study holds."""
    return len({t.user_attrs["slot"] for t in study.get_trials(deepcopy=False) if "slot" in t.user_attrs})


def _extend(
    storage: optuna.storages.BaseStorage,
    study: optuna.Study,
    slots: Sequence[Mapping[str, Any]],
    slot_attrs: Sequence[Mapping[str, Any]] | None,
    on_extend: Callable[[optuna.Study, int, int], None] | None,
    wait_s: float,
) -> None:
    """Enqueue the slots a study lacks, once whatever the number of workers: the worker that creates the
    marker study `<name>.extend-to-<n>` does it (creating a study is atomic in every Optuna storage) and
    deletes the marker; the others wait until the slots are there, and finish the work of an extender
    that died (as `open_study` repairs a dead creator)."""
    had = slot_count(study)
    if len(slots) <= had:
        return
    marker = f"{study.study_name}.extend-to-{len(slots)}"
    try:
        optuna.create_study(storage=storage, study_name=marker)
    except optuna.exceptions.DuplicatedStudyError:
        deadline = time.monotonic() + wait_s
        while slot_count(study) < len(slots):
            if time.monotonic() > deadline:
                break  # the extender died mid-way: finish its work
            time.sleep(0.5)
        else:
            return
    if on_extend is not None:
        on_extend(study, had, len(slots))
    _enqueue_missing(study, slots, slot_attrs)
    with contextlib.suppress(KeyError):  # deleted by a worker that repaired the extension
        optuna.delete_study(study_name=marker, storage=storage)


def finished_slots(storage: optuna.storages.BaseStorage, name: str) -> int:
    """How many slots of the study `name` have a finished (complete or pruned) trial; 0 when the study
    does not exist."""
    study = load(storage, name)
    return 0 if study is None else slots_finished(study)


def slots_finished(study: optuna.Study) -> int:
    """How many slots of a (loaded) study have a finished (complete or pruned) trial."""
    return len({t.user_attrs.get("slot") for t in finished_trials(study) if "slot" in t.user_attrs})


def study_names(storage: optuna.storages.BaseStorage, prefix: str) -> list[str]:
    """Names of the storage's studies that start with `prefix`."""
    return [n for n in optuna.get_all_study_names(storage) if n.startswith(prefix)]


def load(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """An existing study (None when there is none of that name)."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _enqueue_missing(
    study: optuna.Study, slots: Sequence[Mapping[str, Any]], slot_attrs: Sequence[Mapping[str, Any]] | None
) -> None:
    present = {t.user_attrs.get("slot") for t in study.get_trials(deepcopy=False)}
    for i, params in enumerate(slots):
        if i in present:
            continue
        attrs = {"slot": i, **(slot_attrs[i] if slot_attrs else {})}
        study.enqueue_trial(dict(params), user_attrs=attrs, skip_if_exists=False)
        failpoint("study.slot")


NEVER_STARTED_S = 60.0  # + grace: a popped trial that never recorded its process is dead (clock skew margin)


def worker_id() -> str:
    """This process, as recorded on the trial it runs (`bench.worker`): host/boot id:pid."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}:{os.getpid()}"


def _dead(trial: FrozenTrial, here: str, grace_s: float) -> bool:
    """Whether a RUNNING trial's process is certainly gone: it ran on this machine (same host and boot)
    and its pid is dead, or it was popped long ago and never recorded which process took it (killed
    between Optuna's pop and the objective's first line: no heartbeat either)."""
    worker = trial.user_attrs.get("bench.worker")
    if worker is None:
        started = trial.datetime_start
        return started is not None and (datetime.now() - started).total_seconds() > grace_s + NEVER_STARTED_S
    where, _, pid = str(worker).rpartition(":")
    return where == here and pid.isdigit() and not _alive(int(pid))


def fail_stale(study: optuna.Study) -> list[int]:
    """Mark FAIL the running trials whose process died: a stale heartbeat (RDB storages), a dead process
    of this machine, a trial popped but never started (see `_dead`). Returns their numbers. Re-enqueuing
    their slots is `requeue_lost_slots`'s job (see `repair_slots`)."""
    storage = study._storage  # private, as in Optuna's own fail_stale_trials
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    optuna.storages.fail_stale_trials(study)  # heartbeats; the storage has no callback to re-enqueue
    grace = float(getattr(_unwrapped(storage), "grace_period", None) or 0.0)
    here = worker_id().rpartition(":")[0]
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _dead(t, here, grace):
            continue
        try:
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it ended meanwhile, or another worker failed it first
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return sorted(after - before)


def repair_slots(study: optuna.Study) -> list[int]:
    """Under the store's lock: fail the trials of dead processes, then put back in the queue every slot
    left without a live trial. Returns the slots re-enqueued. Every worker runs it before each trial."""
    with store_lock(storage_url(study._storage)):
        if fail_stale(study):
            failpoint("stale.failed")
        return requeue_lost_slots(study)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")  # a killed worker not yet reaped by its parent is a zombie
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def run_one(study: optuna.Study, objective: Callable[[optuna.Trial], float]) -> None:
    """Pop one slot and run `objective` on it (with a heartbeat). The trial records which process runs it
    (`bench.worker`). When `objective` raises (Ctrl-C, SIGTERM, a full disk, a bug), Optuna fails the
    trial and its slot is put back in the queue before the exception goes on."""

    def run(trial: optuna.Trial) -> float:
        trial.set_user_attr("bench.worker", worker_id())
        return objective(trial)

    try:
        study.optimize(run, n_trials=1, catch=(ExcessTrial,), gc_after_trial=False)
    except BaseException:
        failpoint("trial.failed")
        try:
            with store_lock(storage_url(study._storage)):
                requeue_lost_slots(study)
        except Exception:  # the store itself is failing (a full disk): the next run's repair does it
            pass
        raise


def requeue_lost_slots(study: optuna.Study) -> list[int]:
    """Re-enqueue every slot none of whose trials is finished, running or waiting (its last attempt
    failed), with the failed attempt's parameters and user attrs. Call it under the store's lock (see
    `repair_slots`), so that no two workers re-enqueue the same slot."""
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    trials = study.get_trials(deepcopy=False)
    alive = {t.user_attrs.get("slot") for t in trials if t.state in live}
    lost: dict[int, FrozenTrial] = {}
    for t in trials:
        slot = t.user_attrs.get("slot")
        if t.state == TrialState.FAIL and slot is not None and slot not in alive:
            lost[slot] = t  # the latest failed attempt of the slot
    for t in lost.values():
        RetryHeartbeatStaleTrialCallback(max_retry=None)(study, t)
    return sorted(lost)


def unfinished_slots(study: optuna.Study) -> list[int]:
    """The slots of a (ready) study that no finished (COMPLETE or PRUNED) trial fills yet: waiting,
    running, or lost until the next `repair_slots`."""
    trials = study.get_trials(deepcopy=False)
    done = {t.user_attrs.get("slot") for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    return sorted({t.user_attrs["slot"] for t in trials if "slot" in t.user_attrs} - done)


def running_slots(study: optuna.Study) -> list[int]:
    """The slots a worker is running now (or that died without being failed yet)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sorted({t.user_attrs["slot"] for t in running if "slot" in t.user_attrs})


def trial_states(storage: optuna.storages.BaseStorage, name: str) -> dict[int, tuple[str, Any]] | None:
    """Trial number -> (state name, the MLflow run it recorded) of study `name`; None when the storage
    has no such study."""
    try:
        study = optuna.load_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        return None
    return {
        t.number: (t.state.name, t.user_attrs.get("mlflow_run")) for t in study.get_trials(deepcopy=False)
    }


def is_slot(trial: optuna.Trial) -> bool:
    return "slot" in trial.user_attrs


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [
        t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best completed trial whose outcome was `completed` (finite value)."""
    return best_of([study])


def best_of(studies: Sequence[optuna.Study]) -> FrozenTrial | None:
    """The best trial whose outcome was `completed` over several studies of one direction (the stages
    of a sweep); ties go to the earlier study, then the earlier trial."""
    good = [
        t
        for study in studies
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("outcome") == "completed" and t.value is not None and math.isfinite(t.value)
    ]
    if not good:
        return None
    sign = 1 if studies[0].direction == optuna.study.StudyDirection.MINIMIZE else -1
    return min(good, key=lambda t: sign * t.value)


# ---------------------------------------------------------------------------------------------------
# Hyperparameter importance


IMPORTANCE_EVALUATORS = ("fanova", "ped_anova")


def importances(
    configs: Sequence[Mapping[str, Any]],
    values: Sequence[float],
    space: Mapping[str, Param],
    evaluator: str = "fanova",
    seed: int = 0,
) -> dict[str, float]:
    """Importance of each hyperparameter of `space` for `values` (lower is better) over the trials
    `configs` (their searched values), by one of Optuna's evaluators, normalized to sum to 1:

    - `fanova`: the share of the variance of the value explained by each hyperparameter alone, in a
      random forest fitted to the trials (Hutter et al. 2014, "An efficient approach for assessing
      hyperparameter importance"; Optuna's `FanovaImportanceEvaluator`, seeded);
    - `ped_anova`: how much each hyperparameter's distribution among the best 10% of trials differs from
      its distribution over all of them (Watanabe et al. 2023, "PED-ANOVA: Efficiently quantifying
      hyperparameter importance in arbitrary subspaces"; Optuna's `PedAnovaImportanceEvaluator`).

    Values must be finite (fill failed trials first). The trials are loaded into an in-memory study.
    """
    if evaluator not in IMPORTANCE_EVALUATORS:
        raise ValueError(
            f"unknown importance evaluator {evaluator!r}; expected one of {IMPORTANCE_EVALUATORS}"
        )
    rows = [
        ({k: config[k] for k in space}, float(value))
        for config, value in zip(configs, values, strict=True)
        if all(k in config for k in space) and math.isfinite(value)  # every hyperparameter, and a value
    ]
    # one distribution per hyperparameter for every trial (Optuna's evaluators keep only the parameters
    # whose distribution all trials share), widened to hold values past the declared range (a default,
    # an extended sweep)
    dists = {name: distribution(p) for name, p in space.items()}
    for params, _ in rows:
        dists = {k: _holding(d, params[k]) for k, d in dists.items()}
    study = optuna.create_study(direction="minimize")
    trials = [optuna.trial.create_trial(params=p, distributions=dists, value=v) for p, v in rows]
    study.add_trials(trials)
    if evaluator == "fanova":
        ev: optuna.importance.BaseImportanceEvaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    else:
        ev = optuna.importance.PedAnovaImportanceEvaluator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA warns on small studies; the caller says when it is n/a
        found = optuna.importance.get_param_importances(study, evaluator=ev, normalize=True)
    return {name: float(found.get(name, 0.0)) for name in dists}


def _holding(d: BaseDistribution, value: Any) -> BaseDistribution:
    if isinstance(d, FloatDistribution) and not d.low <= value <= d.high:
        return FloatDistribution(min(d.low, value), max(d.high, value), log=d.log)
    if isinstance(d, IntDistribution) and not d.low <= value <= d.high:
        return IntDistribution(min(d.low, value), max(d.high, value), log=d.log)
    return d
