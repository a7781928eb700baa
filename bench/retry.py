"""Opening a database-backed store that other workers may be creating at the same moment.

Workers started together on a fresh shared database (PostgreSQL, or one SQLite file) race to create the
same tables: Optuna's and MLflow's schema setup (SQLAlchemy + alembic) fails in the losers until the
winner commits. `bench.search.open_storage` and `bench.track.Tracker` retry through `schema_race`.

Both open a SQLite file through `sqlite_wal` first, which puts it in write-ahead-log mode (SQLite's
`journal_mode=WAL`, kept in the file). Every trial commits a few dozen small transactions to the two
stores; in SQLite's default rollback-journal mode each commit syncs the disk several times (~10 ms
measured here under load), in WAL mode once (~0.5 ms), with the same durability (`synchronous=FULL`
stays), and readers no longer block the writer. WAL needs every process on one host, which SQLite
stores already do (across machines, bench uses PostgreSQL).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# What the losers of a schema-creation race see: PostgreSQL, then SQLite via Optuna and MLflow.
SCHEMA_RACE = (
    "already exists",
    "UNIQUE constraint failed",
    "Online migration expected",
    "database is locked",
)


def schema_race(make: Callable[[], T], tries: int = 6, first_wait_s: float = 0.5) -> T:
    """`make()`, retried with exponential backoff while it fails with a schema-race message; any other
    failure, or the last attempt's, is raised."""
    for attempt in range(tries):
        try:
            return make()
        except Exception as exc:
            if attempt == tries - 1 or not any(m in str(exc) for m in SCHEMA_RACE):
                raise
            time.sleep(first_wait_s * 2**attempt)
    raise AssertionError("unreachable")


def sqlite_wal(url: str, timeout_s: float = 120.0) -> None:
    """Create the parent folder of a `sqlite:///path` store and put the file in WAL mode (a no-op for any
    other URL, and for a file already in WAL mode)."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=timeout_s)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
