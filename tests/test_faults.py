"""Fail points kill a real process exactly where named (or hold it until others get there); a full disk and a damaged store are recognised
however they are wrapped, and the message names the damaged file and the way out."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import faults

PROBE = (
    "from bench.faults import failpoint\n"
    "for i in range(3):\n"
    "    failpoint('trial.run')\n"
    "    print('passed', i + 1, flush=True)\n"
)


def probe(failpoints: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if failpoints is not None:
        env[faults.ENV] = failpoints
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)


def test_a_fail_point_sigkills_the_process_the_nth_time_it_is_reached() -> None:
    assert probe(None).stdout.split("\n")[-2] == "passed 3"  # unarmed: nothing happens
    first = probe("trial.run")
    assert first.returncode == -signal.SIGKILL and first.stdout == ""
    third = probe("study.created, trial.run@3")
    assert third.returncode == -signal.SIGKILL and third.stdout.split() == ["passed", "1", "passed", "2"]
    full = probe("trial.run@2=enospc")
    assert full.returncode == 1 and "No space left on device (fail point trial.run)" in full.stderr


def test_a_wait_fail_point_holds_each_process_until_enough_processes_reach_it(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != faults.ENV},
        faults.ENV: f"trial.run@2=wait:2:{tmp_path}",
    }
    run = [sys.executable, "-c", PROBE]
    first = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("trial.run.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.name for p in tmp_path.glob("trial.run.*")] == [f"trial.run.{first.pid}"]
    assert first.poll() is None  # alone at the barrier: it waits
    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and second.stdout.split() == ["passed", "1", "passed", "2", "passed", "3"]
    assert first.communicate(timeout=60)[0].split() == ["passed", "1", "passed", "2", "passed", "3"]


def test_an_unknown_fail_point_is_an_error_when_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, "trial.run@9")
    with pytest.raises(ValueError, match="unknown fail point 'trial.nope'"):
        faults.failpoint("trial.nope")  # a point bench does not declare
    monkeypatch.setenv(faults.ENV, "trial.runn")
    with pytest.raises(ValueError, match=r"unknown fail point 'trial.runn' \(in BENCH_FAILPOINTS\)"):
        faults.failpoint("trial.run")  # a misspelt point in the environment is not silently ignored


def test_a_full_disk_is_recognised_however_it_is_wrapped() -> None:
    def wrapped(inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise RuntimeError("API request to log_batch failed") from exc
        except RuntimeError as outer:
            return outer

    assert faults.disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert faults.disk_full(wrapped(OSError(errno.EDQUOT, "quota")))
    assert faults.disk_full(wrapped(sqlite3.OperationalError("database or disk is full")))
    assert not faults.disk_full(wrapped(PermissionError(errno.EACCES, "Permission denied")))
    assert not faults.disk_full(ValueError("loss is nan"))
    assert faults.not_the_trials(wrapped(faults.RecordError("writing the curves failed")))
    assert not faults.not_the_trials(RuntimeError("CUDA error: an illegal memory access"))


def _damaged(path: Path, how: str) -> Path:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (x)")
        con.executemany("INSERT INTO t VALUES (?)", [(str(i) * 500,) for i in range(500)])
    data = path.read_bytes()
    if how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    else:
        path.write_bytes(data[: len(data) // 3])  # truncated, as by a full disk or a copy cut short
    return path


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_store_is_named_with_the_way_to_recover(tmp_path: Path, how: str) -> None:
    good = tmp_path / "optuna.db"
    sqlite3.connect(good).close()
    bad = _damaged(tmp_path / "mlflow.db", how)
    try:
        with sqlite3.connect(bad) as con:
            con.execute("SELECT count(*) FROM t").fetchall()
    except sqlite3.DatabaseError as exc:
        error = exc
    stores = {"Optuna storage": f"sqlite:///{good}", "MLflow tracking store": f"sqlite:///{bad}"}
    found = faults.damaged(stores, RuntimeError("reading runs failed").with_traceback(None))
    assert found is None  # not a damage message: left alone
    wrapped = RuntimeError("reading runs failed")
    wrapped.__cause__ = error
    message = str(faults.damaged(stores, wrapped))
    assert message.startswith(f"the MLflow tracking store {bad} is damaged (SQLite: ")
    assert f"mv {bad} {bad}.damaged" in message and f"and move {good} aside too" in message
    assert f"the Optuna storage {good}" not in message  # the sound store is not blamed
    assert faults.explain(wrapped, stores) == message


def test_a_full_disk_message_says_nothing_was_lost_and_how_to_resume() -> None:
    stores = {"Optuna storage": "sqlite:///o.db", "MLflow tracking store": "sqlite:///m.db"}
    text = faults.explain(OSError(errno.ENOSPC, "No space left on device"), stores)
    assert text is not None and text.startswith("no space left on device")
    assert (
        "goes back to the queue" in text and "run the same command again" in text and "sqlite:///m.db" in text
    )
    assert faults.explain(ValueError("a bug"), stores) is None  # a bug keeps its traceback


def test_bench_commands_name_a_damaged_store_instead_of_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import write_suite

    from bench.cli import main
    from bench.track import Tracker

    monkeypatch.chdir(tmp_path)
    suite = write_suite(tmp_path)
    mlflow_db = tmp_path / "mlflow.db"
    Tracker(f"sqlite:///{mlflow_db}", "tiny")
    mlflow_db.write_bytes(mlflow_db.read_bytes()[: mlflow_db.stat().st_size // 3])  # truncated
    assert main(["leaderboard", str(suite)]) == 1
    err = capsys.readouterr().err
    assert f"\nerror: the MLflow tracking store {mlflow_db} is damaged" in f"\n{err}"
    assert "Traceback" not in err and "the Optuna storage" not in err  # only named as its partner

    mlflow_db.unlink()
    (tmp_path / ".bench").mkdir()
    (tmp_path / ".bench" / "optuna.db").write_bytes(os.urandom(64 * 1024))  # garbage in the Optuna store
    assert main(["run", str(suite)]) == 1  # the Optuna store is opened first, before any training
    err = capsys.readouterr().err
    assert f"\nerror: the Optuna storage {tmp_path / '.bench' / 'optuna.db'} is damaged" in f"\n{err}"
    assert "start the suite afresh" in err and "Traceback" not in err
