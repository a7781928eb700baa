"""Opening a database-backed store that other workers may be creating at the same moment.

Workers started together on a fresh shared database (PostgreSQL, or one SQLite file) race to create the
same tables: Optuna's and MLflow's schema setup (SQLAlchemy + alembic) fails in the losers until the
winner commits. `bench.search.open_storage` and `bench.track.Tracker` retry through `schema_race`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
