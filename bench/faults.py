"""Failures that are not a trial's: fail points for tests, a full disk, a damaged store.

Imports nothing outside the standard library, so every layer (runner, search, tracking, engine, cli)
can use it.

**Fail points** (as FreeBSD's fail(9) or TiKV's fail-rs, in one function): `failpoint("trial.recorded")`
does nothing unless the environment variable `BENCH_FAILPOINTS` names that point; then the process
SIGKILLs itself there (or raises, or waits for other processes, see below). Tests use them to kill a real `bench run` at exactly the
instruction where a crash is most dangerous (between marking a trial failed and re-enqueuing it,
between creating an MLflow run and telling Optuna its id, half-way through creating a study):

    BENCH_FAILPOINTS="trial.recorded"          # kill the first time the point is reached
    BENCH_FAILPOINTS="trial.recorded@3"        # ... the third time (in this process)
    BENCH_FAILPOINTS="trial.metrics=enospc"    # raise OSError(ENOSPC) there instead: a full disk
    BENCH_FAILPOINTS="study.created,stale.failed@2"   # several points
    BENCH_FAILPOINTS="trial.recorded=wait:2:/tmp/gate" # wait there until 2 processes got there (a barrier)

`POINTS` lists every point bench has, each with where it is; `benchmarks/reliability.py` and
`tests/test_reliability.py` kill at each of them.

**Not the trial's fault.** A trial's own failures (NaN, out of memory, a bug in an optimizer) are
outcomes, recorded like any result. A full disk, or a store that cannot be written, says nothing about
the optimizer: `disk_full(exc)` recognises it (ENOSPC/EDQUOT anywhere in the exception chain, or SQLite's
"database or disk is full"), the runner re-raises it instead of recording `error`, and the engine puts the
trial's slot back in the queue (`RecordError` marks any failure of a callable that records; `recording`
wraps a metrics writer so that its failures are marked so).

**Damaged stores.** `damaged(stores, exc)` turns a corrupt or half-migrated SQLite store's exception
into a `StoreError` naming the file (found with `PRAGMA quick_check`) and how to recover.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

ENV = "BENCH_FAILPOINTS"

# Every fail point: name -> where it is.
POINTS: dict[str, str] = {
    "study.created": "a study exists in Optuna, without its slots or its `bench.ready` mark",
    "study.slot": "after each slot a study's creator enqueues (`study.slot@2`: after the second)",
    "study.parent": "the study's MLflow parent run exists, Optuna does not know its id yet",
    "trial.run": "a trial's MLflow run exists, Optuna does not know its id yet",
    "trial.step": "the trial is training: after each optimizer step (`trial.step@250`: the 250th step this "
    "process trains, counted across its trials)",
    "trial.metrics": "the trial is training, a batch of its curves is being written",
    "trial.recorded": "the trial's MLflow run is closed with its outcome, Optuna still says RUNNING",
    "trial.failed": "Optuna marked a trial FAIL after an exception, its slot is not re-enqueued yet",
    "stale.failed": "a dead worker's trial was marked FAIL (stale heartbeat), not re-enqueued yet",
    "retire.tagged": "a dead attempt's MLflow run is tagged retired, not yet KILLED and hidden",
    "store.creating": "a fresh SQLite store is half-created (in its temporary file)",
}

_hits: dict[str, int] = {}


class InjectedFault(OSError):
    """What `failpoint` raises for `name=enospc`: a full disk, on demand."""


class RecordError(RuntimeError):
    """Recording a trial failed (the tracking store, the disk): not an outcome of the trial. The engine
    puts the trial's slot back in the queue and stops; the same command resumes once fixed."""


def recording(
    log_metrics: Callable[[dict[str, float], int], None],
) -> Callable[[dict[str, float], int], None]:
    """`log_metrics` (a run's metrics writer) whose failures say they are the recording's, not the trial's
    (`RecordError`): the runner raises them instead of ending the trial as `error`, and the engine puts
    the slot back in the queue. Every writer a trial's training logs through goes through it (the trial's
    run, and each horizon's run in `bench.branches`)."""

    def log(metrics: dict[str, float], step: int) -> None:
        try:
            log_metrics(metrics, step)
        except Exception as exc:
            raise RecordError(f"writing the trial's curves failed: {exc}") from exc

    return log


class StoreError(RuntimeError):
    """A store bench cannot use as it is (damaged, half-migrated): the message names it and the way out."""


def _armed() -> Iterator[tuple[str, int, str]]:
    for item in filter(None, (s.strip() for s in os.environ.get(ENV, "").split(","))):
        item, _, action = item.partition("=")
        name, _, nth = item.partition("@")
        yield name.strip(), int(nth or 1), (action.strip() or "kill")


def failpoint(name: str) -> None:
    """Die here (SIGKILL, no cleanup: what a power cut or the OOM killer does) when `BENCH_FAILPOINTS`
    names this point; a no-op otherwise. Counted per process: `name@N` fires on the Nth time."""
    if ENV not in os.environ:
        return
    armed_points = list(_armed())
    for unknown in [name] + [a for a, _, _ in armed_points]:
        if unknown not in POINTS:
            raise ValueError(f"unknown fail point {unknown!r} (in {ENV}); known: {', '.join(POINTS)}")
    _hits[name] = _hits.get(name, 0) + 1
    for armed, nth, action in armed_points:
        if armed != name or _hits[name] != nth:
            continue
        if action == "enospc":
            raise InjectedFault(errno.ENOSPC, f"No space left on device (fail point {name})")
        if action.startswith("wait:"):
            _, count, directory = action.split(":", 2)
            barrier(Path(directory), name, int(count))
            continue
        os.kill(os.getpid(), signal.SIGKILL)


def barrier(directory: Path, name: str, count: int, timeout_s: float = 600.0) -> None:
    """Wait until `count` processes reached fail point `name` (each leaves a file `name.PID` in
    `directory`), or `timeout_s` passed: tests use it to make sure several workers each run a trial,
    however fast the first one is. A process that gets there late passes at once."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.{os.getpid()}").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(directory.glob(f"{name}.*"))) < count and time.monotonic() < deadline:
        time.sleep(0.05)


# -- what an exception means ---------------------------------------------------------------------------
def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from or while handling."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


NO_SPACE = ("database or disk is full", "No space left on device", "Disk quota exceeded")


def full_disk_error(exc: BaseException) -> BaseException | None:
    """The exception in `exc`'s chain that says a disk (or quota) is full, if any."""
    for e in chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        if any(m in str(e) for m in NO_SPACE):
            return e
    return None


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` comes from a full disk (or quota), however many layers wrapped it."""
    return full_disk_error(exc) is not None


def not_the_trials(exc: BaseException) -> bool:
    """Whether a failure inside a trial is bench's or the machine's rather than the trial's: it must not
    be recorded as the trial's outcome."""
    return any(isinstance(e, RecordError) for e in chain(exc)) or disk_full(exc)


# -- damaged stores ----------------------------------------------------------------------------------
CORRUPT = ("file is not a database", "database disk image is malformed", "malformed database schema")
HALF_MIGRATED = ("_alembic_tmp", "duplicate column name", "out-of-date database schema", "alembic_version")


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///path` URL (None for other stores and in-memory databases)."""
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def quick_check(path: Path) -> str | None:
    """None when SQLite finds the file sound (or absent); else what it says is wrong."""
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as con:
            rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else "; ".join(found[:3])


def damaged(stores: Mapping[str, str], exc: BaseException) -> StoreError | None:
    """A `StoreError` for `exc` when it says a store is damaged or half-migrated, naming which of
    `stores` (what -> URL, e.g. {"MLflow tracking store": "sqlite:///mlflow.db"}) and the recovery."""
    text = " ".join(str(e) for e in chain(exc))
    corrupt = any(m in text for m in CORRUPT)
    migrated = any(m in text for m in HALF_MIGRATED)
    if not corrupt and not migrated:
        return None
    lines: list[str] = []
    for what, url in stores.items():
        path = sqlite_path(url)
        problem = quick_check(path) if path is not None else None
        if problem is not None:
            lines.append(_corrupt(what, path, problem, [u for w, u in stores.items() if w != what]))
    if not lines and migrated:
        which = " or ".join(f"the {what} ({url})" for what, url in stores.items())
        lines.append(
            f"the schema of {which} is half-created or half-migrated ({_first_line(exc)}). This happens when "
            "processes created a fresh store at the same moment with an older bench, or one was killed while "
            "creating it. If it holds results: back it up, then `mlflow db upgrade URL` for the MLflow store "
            "(Optuna: `optuna storage upgrade --storage URL`); if it holds nothing yet, delete it and run again."
        )
    if not lines:
        where = ", ".join(f"{what} {url}" for what, url in stores.items())
        lines.append(f"a store is damaged ({_first_line(exc)}); the stores of this suite are {where}")
    return StoreError("\n".join(lines))


def _corrupt(what: str, path: Path, problem: str, others: list[str]) -> str:
    partner = ", ".join(str(sqlite_path(u) or u) for u in others)
    return (
        f"the {what} {path} is damaged (SQLite: {problem}). bench cannot use it. To recover, either\n"
        f"  - restore it from a backup (together with {partner}, as they were at the same moment), or\n"
        f"  - start the suite afresh, keeping the damaged file: mv {path} {path}.damaged, and move {partner} "
        f"aside too (the two stores are a pair); every trial of the suite then runs again, or\n"
        f"  - run it under a new name with new stores (--set name=NEW_NAME).\n"
        f"  Salvaging part of a damaged SQLite file: docs/reliability.md."
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def stores(settings: Any) -> dict[str, str]:
    """What -> URL of the stores a suite's `settings` name, for `explain` and `damaged`."""
    return {"Optuna storage": settings.storage, "MLflow tracking store": settings.tracking_uri}


def explain(exc: BaseException, stores: Mapping[str, str]) -> str | None:
    """The message for a failure that needs the user rather than a traceback (a full disk, a damaged or
    locked store), or None. `stores`: what -> URL of the run's stores."""
    if isinstance(exc, StoreError):
        return str(exc)
    full = full_disk_error(exc)
    if full is not None:
        where = ", ".join(f"{what} {url}" for what, url in stores.items())
        said = next((line for line in str(full).splitlines() if any(m in line for m in NO_SPACE)), None)
        return (
            f"no space left on device ({said or _first_line(full)}). Nothing was lost: the trial in flight goes back "
            f"to the queue. Free space (stores: {where}; and the artifact and leaderboard directories), then "
            "run the same command again to resume."
        )
    found = damaged(stores, exc)
    return None if found is None else str(found)
