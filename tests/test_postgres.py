"""Shared stores: a real PostgreSQL server on 127.0.0.1 holding the Optuna studies and the MLflow
store, two `bench run` workers filling one suite at the same time, every trial landing exactly once.

The server comes from Debian's `postgresql` package (installed with apt-get when missing and we are
root); the test skips, saying why, only when no server can be had. It is stopped at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import seeds_study, write_suite

pytestmark = pytest.mark.slow

TRIALS, SEEDS, OPTIMIZERS = 3, 2, ("sgd", "adamw")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _install_postgres() -> str | None:
    """Install Debian's server package; None when done, else why it could not be."""
    if shutil.which("apt-get") is None:
        return "PostgreSQL is not installed and there is no apt-get to install it (not Debian/Ubuntu)"
    root: list[str] = []
    if os.geteuid() != 0:  # a CI runner's user usually has passwordless sudo
        if (
            shutil.which("sudo") is None
            or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode
        ):
            return "PostgreSQL is not installed and apt-get needs root (no passwordless sudo)"
        root = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*root, "apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    for cmd in (install, [*root, "apt-get", "update"], install):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` timed out"
        if cmd is install and done.returncode == 0:
            return None
    return f"`apt-get install postgresql` failed: {done.stderr.strip()[-500:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway server on 127.0.0.1 (trust auth, user `bench`); yields its base URL."""
    pytest.importorskip("psycopg2", reason="psycopg2 missing: pip install psycopg2-binary (`dev` extra)")
    if _pg_bin() is None:
        why = _install_postgres()
        if why is not None or _pg_bin() is None:
            pytest.skip(f"no PostgreSQL server: {why or 'installed, but no pg_ctl found'}")
    pg = _pg_bin()
    assert pg is not None
    # The server refuses to run as root: as root, run it as Debian's `postgres` user.
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # not under pytest's tmp (mode 700, root's)
    if as_pg:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    subprocess.run([*as_pg, str(pg / "initdb"), "-D", str(data / "db"), "-U", "bench", "--auth=trust",
                    "--no-sync"], check=True, capture_output=True, timeout=120)  # fmt: skip
    ctl = [*as_pg, str(pg / "pg_ctl"), "-D", str(data / "db"), "-w"]
    options = f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off"
    try:
        subprocess.run(
            [*ctl, "-o", options, "-l", str(data / "log"), "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user="bench", dbname="postgres")
        con.autocommit = True
        with con.cursor() as cur:  # Optuna and MLflow each keep an `alembic_version` table: two databases
            cur.execute("CREATE DATABASE optuna")
            cur.execute("CREATE DATABASE mlflow")
        con.close()
        # The driver is named: SQLAlchemy >= 2.1 maps a bare postgresql:// to psycopg 3, not psycopg2.
        yield f"postgresql+psycopg2://bench@127.0.0.1:{port}"
    finally:
        subprocess.run([*ctl, "stop", "-m", "fast"], capture_output=True, timeout=120)
        status = subprocess.run([*ctl, "status"], capture_output=True, text=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)
        assert status.returncode == 3, f"the server is still running: {status.stdout}"  # 3: not running


def test_two_workers_fill_one_study_on_postgres_exactly_once(postgres: str, tmp_path: Path) -> None:
    import optuna
    from mlflow import MlflowClient

    storage, tracking = f"{postgres}/optuna", f"{postgres}/mlflow"
    suite = write_suite(
        tmp_path,
        name="shared",
        optimizers=list(OPTIMIZERS),
        tuning={"protocol": "random", "trials": TRIALS, "seeds": SEEDS},
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    # Settings from the command line, as on a cluster: `--storage`/`--tracking-uri` (or benchmark.yaml).
    # A heartbeat of 5 s: on a busy 2-core runner a 1 s beat (3 s grace) could declare a live trial dead.
    cmd = [sys.executable, "-m", "bench.cli", "run", str(suite), "--storage", storage, "--tracking-uri",
           tracking, "--set", "settings.heartbeat_s=5", "--quiet-bars"]  # fmt: skip
    started = time.monotonic()
    workers = [
        subprocess.Popen(cmd + extra, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for extra in ([], ["--no-leaderboard"])  # one worker writes the leaderboard at the end
    ]  # fmt: skip
    outs = [w.communicate(timeout=420)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n-----\n".join(o[-5000:] for o in outs)
    ran = [o.count("] shared.digits_cnn.") for o in outs]
    total = len(OPTIMIZERS) * (TRIALS + SEEDS - 1)
    assert sum(ran) == total, (ran, outs)  # between them the workers ran every trial once
    print(f"trials per worker: {ran}, {time.monotonic() - started:.0f}s")

    for opt in OPTIMIZERS:  # Optuna: every slot COMPLETE exactly once, nothing failed or extra
        study = f"shared.digits_cnn.{opt}"
        for name, n in ((study, TRIALS), (seeds_study(storage, study), SEEDS - 1)):
            trials = optuna.load_study(study_name=name, storage=storage).get_trials()
            # A worker that lost the race for the last slot leaves a marked FAIL trial that ran nothing.
            excess = [t for t in trials if t.user_attrs.get("bench.excess")]
            assert {t.state.name for t in excess} <= {"FAIL"} and all(
                "slot" not in t.user_attrs for t in excess
            )
            trials = [t for t in trials if not t.user_attrs.get("bench.excess")]
            assert sorted(t.user_attrs["slot"] for t in trials) == list(range(n)), name
            assert {t.state.name for t in trials} == {"COMPLETE"}, name

    client = MlflowClient(tracking_uri=tracking)  # MLflow: one finished run per trial
    exp = client.get_experiment_by_name("shared")
    runs = [
        r for r in client.search_runs([exp.experiment_id], max_results=1000)
        if r.data.tags.get("bench.kind") in ("tune", "seed")
    ]  # fmt: skip
    ids = [r.data.tags["bench.trial_id"] for r in runs]
    assert len(ids) == total and len(set(ids)) == total
    assert {(r.info.status, r.data.tags["bench.outcome"]) for r in runs} == {("FINISHED", "completed")}
    assert all(client.get_metric_history(r.info.run_id, "val/error") for r in runs)
    assert "sgd" in (tmp_path / "leaderboards" / "shared.md").read_text()
    studies = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'study'")
    assert {r.info.status for r in studies} == {"FINISHED"} and len(studies) == len(OPTIMIZERS)


OPEN_BOTH = """
import sys, time
from pathlib import Path
from bench import search
from bench.track import Tracker
gate, storage, tracking = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
gate.with_name(f"ready-{sys.argv[4]}").touch()
while not gate.exists():
    time.sleep(0.005)
search.open_storage(storage)
Tracker(tracking, "race")
"""


def test_four_processes_opening_fresh_postgres_stores_at_once_all_succeed(
    postgres: str, tmp_path: Path
) -> None:
    # Fresh databases: the tables are created under an advisory lock, by one process; the rest find them.
    import psycopg2

    con = psycopg2.connect(postgres.replace("postgresql+psycopg2://", "postgresql://") + "/postgres")
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("CREATE DATABASE optuna_race")
        cur.execute("CREATE DATABASE mlflow_race")
    con.close()
    storage, tracking = f"{postgres}/optuna_race", f"{postgres}/mlflow_race"
    gate = tmp_path / "gate"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_BOTH, str(gate), storage, tracking, str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(4)
    ]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    gate.touch()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n-----\n".join(o[-3000:] for o in outs)

    from mlflow import MlflowClient

    assert MlflowClient(tracking_uri=tracking).get_experiment_by_name("race") is not None
