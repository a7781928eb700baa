"""Store locks between real processes: exclusive, released when the holder is SIGKILLed, re-entrant in a
process; a fresh SQLite store is created whole or not at all; processes started at once on fresh
Optuna and MLflow stores all open them (the race that crashed workers and half-migrated MLflow)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import locks
from bench.faults import ENV

HOLD = """
import sys, time
from bench.locks import store_lock
url, log, name = sys.argv[1], sys.argv[2], sys.argv[3]
with store_lock(url):
    with open(log, "a") as f:
        f.write(f"{name} in\\n")
    time.sleep(0.3)
    with open(log, "a") as f:
        f.write(f"{name} out\\n")
"""


def run(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != ENV} | (env or {})
    return subprocess.Popen([sys.executable, "-c", code, *args], env=environment)


def test_the_lock_excludes_other_processes(tmp_path: Path) -> None:
    url, log = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "log"
    procs = [run(HOLD, url, str(log), f"p{i}") for i in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    lines = log.read_text().split("\n")[:-1]
    assert len(lines) == 6
    for i in range(0, 6, 2):  # each holder's "in" is followed by its own "out": never interleaved
        assert lines[i].split()[0] == lines[i + 1].split()[0] and lines[i].endswith("in")
    assert locks.lock_path(url) == tmp_path / "optuna.db.bench.lock"


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    holder = run(
        "import os, signal, sys\nfrom bench.locks import store_lock\n"
        "with store_lock(sys.argv[1]):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
        url,
    )
    assert holder.wait(timeout=60) == -signal.SIGKILL
    started = time.monotonic()
    with locks.store_lock(url, wait_s=10), locks.store_lock(url):  # re-entrant within a process
        pass
    assert time.monotonic() - started < 5


def test_a_fresh_store_is_created_whole_or_not_at_all(tmp_path: Path) -> None:
    db = tmp_path / "stores" / "s.db"
    create = (
        "import sqlite3, sys\nfrom bench.locks import create_once\n"
        "def make(url):\n"
        "    con = sqlite3.connect(url.removeprefix('sqlite:///'))\n"
        "    con.execute('CREATE TABLE a (x)'); con.commit(); con.close()\n"
        "create_once(sys.argv[1], make)\n"
    )
    killed = run(create, f"sqlite:///{db}", env={ENV: "store.creating"})
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert not db.exists()  # only the temporary file of the dead creator
    assert [p.name for p in db.parent.glob(".s.db.creating-*")]

    assert run(create, f"sqlite:///{db}").wait(timeout=60) == 0
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("a",)]
    assert not list(db.parent.glob(".s.db.creating-*"))  # the dead creator's leftovers are gone


OPEN_BOTH = """
import sys, time
from pathlib import Path
from bench import search
from bench.track import Tracker
gate, storage, tracking = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
while not gate.exists():
    time.sleep(0.005)
search.open_storage(storage)
Tracker(tracking, "race")
"""


@pytest.mark.slow  # 4 processes importing Optuna and MLflow: ~20 s on a busy 2-core machine
def test_processes_started_at_once_on_fresh_stores_all_open_them(tmp_path: Path) -> None:
    storage, tracking = (
        f"sqlite:///{tmp_path / '.bench' / 'optuna.db'}",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    gate = tmp_path / "gate"
    procs = [run(OPEN_BOTH, str(gate), storage, tracking) for _ in range(4)]
    time.sleep(8)  # every process has imported Optuna and MLflow and waits at the gate
    gate.touch()
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("SELECT count(*) FROM experiments WHERE name = 'race'").fetchone() == (1,)
        (version,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert version == _get_latest_schema_revision()  # fully migrated


@pytest.mark.parametrize("url", ["http://mlflow-host:5000", "sqlite:///:memory:"])
def test_stores_that_need_no_lock_get_none(url: str) -> None:
    assert locks.lock_path(url) is None
    with locks.store_lock(url):
        pass


def test_stores_are_created_whole_then_put_in_wal_mode(tmp_path: Path) -> None:
    """Both stores, opened fresh, end in SQLite's write-ahead-log mode; `sqlite_wal` never creates a
    missing file (that is `create_once`'s, whole or not at all)."""
    from bench.search import open_storage
    from bench.track import Tracker

    missing = tmp_path / "none" / "missing.db"
    locks.sqlite_wal(f"sqlite:///{missing}")
    assert not missing.exists() and not missing.parent.exists()
    open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "wal")
    for name in ("optuna.db", "mlflow.db"):
        with sqlite3.connect(tmp_path / name) as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
