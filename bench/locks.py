"""A lock per store, so that what must not interleave between processes does not.

Held briefly, around: the first use of a store (creating or migrating its tables: Optuna and MLflow both
run SQLAlchemy + alembic, which fails or half-migrates when several processes do it at once), the
creation of a study with its slots, and the repair of a study's slots (failing dead workers' trials and
re-enqueuing every slot left without a live trial). `store_lock(url)` is:

- SQLite (`sqlite:///path.db`) and Optuna journal files: an exclusive `flock` on `path.db.bench.lock`
  beside the store (the `filelock` package). The kernel releases it when its holder dies, even by SIGKILL, so a
  crash never leaves the store locked;
- PostgreSQL: a session-level advisory lock (`pg_advisory_lock`) on a connection of its own; the server
  releases it when that connection ends, as a dead process's does;
- anything else (an MLflow server, which serializes its own writes; an in-memory store): no lock.

Re-entrant within a process (a study's creation under the lock may open the MLflow store under its own).

`create_once(url, create)` makes a fresh SQLite store appear complete or not at all: under the lock, the
schema is built in a temporary file beside it and renamed into place, so a process killed half-way
leaves only a temporary file (removed by the next creator), never a half-created store.

`sqlite_wal(url)` then puts an existing SQLite store in write-ahead-log mode (`journal_mode=WAL`, kept
in the file). Every trial commits a few dozen small transactions to the two stores; in SQLite's default
rollback-journal mode each commit syncs the disk several times (~10 ms measured under load), in WAL mode
once (~0.5 ms), with the same durability (`synchronous=FULL` stays), and readers no longer block the
writer. WAL needs every process on one host, which SQLite stores already do (across machines bench uses
PostgreSQL); a copy of the store must take its `-wal` file too (or use SQLite's `.backup`).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.faults import failpoint, sqlite_path

WAIT_S = 600.0  # longer than any holder takes (schema creation: seconds), shorter than forever

_held: dict[str, int] = {}  # lock key -> depth, this process
_guard = threading.Lock()


class LockTimeout(RuntimeError):
    """Another process held a store's lock for longer than `WAIT_S`."""


def lock_path(url: str) -> Path | None:
    """The lock file beside a SQLite database or an Optuna journal file (None for other stores)."""
    path = sqlite_path(url)
    if path is None and (url.endswith(".log") or url.startswith("journal:")):
        path = Path(url.removeprefix("journal:"))
    # not `.lock`: Optuna's journal backend keeps its own symlink lock under that name
    return None if path is None else path.with_name(path.name + ".bench.lock")


def _advisory_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for `name` (PostgreSQL scopes keys to the database)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def store_lock(url: str, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the store's lock (see the module docstring) for the `with` block."""
    key = str(lock_path(url) or url)
    with _guard:
        depth = _held.get(key, 0)
        _held[key] = depth + 1
    try:
        if depth:  # this process holds it already
            yield
            return
        path = lock_path(url)
        if path is not None:
            with _file_lock(path, wait_s):
                yield
        elif url.startswith(("postgresql", "postgres")):
            with _advisory_lock(url, wait_s):
                yield
        else:
            yield
    finally:
        with _guard:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]


@contextmanager
def _file_lock(path: Path, wait_s: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=wait_s, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(
            f"waited {wait_s:.0f}s for {path}, held by another bench process; if none is running, "
            f"the file system may not support flock (a network file system?)"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _advisory_lock(url: str, wait_s: float) -> Iterator[None]:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    key = _advisory_key("bench.store")
    try:
        with engine.connect() as con:
            con.execute(sa.text(f"SET lock_timeout = '{int(wait_s * 1000)}ms'"))
            try:
                con.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            except sa.exc.OperationalError as exc:
                raise LockTimeout(f"waited {wait_s:.0f}s for the advisory lock of {_safe(url)}") from exc
            con.commit()
            try:
                yield
            finally:
                con.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                con.commit()
    finally:
        engine.dispose()


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':', 1)[0]}@{tail}"


def create_once(url: str, create: Callable[[str], Any]) -> None:
    """Under the store's lock: if `url` is a SQLite database that does not exist yet, build it with
    `create(temporary_url)` and rename it into place (atomic), so it exists complete or not at all.
    Other stores are left to `create`'s caller (their schema creation runs under `store_lock`)."""
    path = sqlite_path(url)
    if path is None or path.exists():
        return
    with store_lock(url):
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.creating-*"):  # a killed creator's (we hold the lock)
            stale.unlink(missing_ok=True)
        temporary = path.with_name(f".{path.name}.creating-{os.getpid()}")
        create(f"sqlite:///{temporary}")
        failpoint("store.creating")
        os.replace(temporary, path)


def sqlite_wal(url: str, timeout_s: float = 120.0) -> None:
    """Put an existing `sqlite:///path` store in WAL mode (a no-op for other URLs, for a file that does
    not exist yet: `create_once` makes it, and for a file already in WAL mode)."""
    path = sqlite_path(url)
    if path is None or not path.exists():
        return
    con = sqlite3.connect(path, timeout=timeout_s)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
