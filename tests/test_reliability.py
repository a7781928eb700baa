"""Nothing lost, whatever happens, end to end with real processes and real SQLite stores: SIGKILLs at every
fail point (mid-training included) and at random, a trial failed without a retry, a real full disk, four runs started at the same
instant on fresh stores. `benchmarks/reliability.py` runs the full-size versions (20+ kills, 10 races);
these are reduced ones, still training real digits trials."""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reliability  # noqa: E402  (benchmarks/reliability.py: the stress machinery and the audit)

pytestmark = pytest.mark.slow

SMALL = {"tasks": ("digits_cnn",), "optimizers": ("sgd", "adamw"), "trials": 5, "seeds": 2, "steps": 120}


def reference_run(directory: Path) -> Path:
    suite = reliability.write_suite(directory, **SMALL)
    assert reliability.start(suite, directory / "run.log").wait(timeout=600) == 0
    return suite


def test_killed_at_every_dangerous_point_and_at_random_it_resumes_to_the_same_leaderboard(
    tmp_path: Path,
) -> None:
    reference = reference_run(tmp_path / "reference")
    suite = reliability.write_suite(tmp_path / "stressed", **SMALL)
    schedule = [
        ("point", "store.creating"),
        ("point", "store.creating@2"),
        ("point", "study.created"),
        ("point", "study.slot@2"),
        ("point", "trial.run"),
        ("point", "trial.recorded"),
        ("point", "study.parent"),  # runs the rest of the first study, then dies creating the second
        ("point", "trial.step@60"),  # half-way through the first trial it trains
        ("point", "stale.failed"),  # between failing the dead trial and re-enqueuing its slot
        ("point", "retire.tagged"),  # retiring that trial's run, when the next run starts
        ("point", "trial.step@60"),
        ("point", "trial.metrics=enospc,trial.failed"),  # between an exception's FAIL and the re-enqueue
        ("full", "trial.metrics=enospc"),
        ("random", ""),
        ("random", ""),
    ]
    result = reliability.stress(suite, reference, schedule, random.Random(0), (3.0, 8.0))
    lines = [f"{c.kind} {c.arg}: {c.result}" for c in result.cycles] + result.audit.lines()
    # Every kill above is at a fail point, so none can miss however fast the machine trains; the random
    # ones are extras (they may come after the suite finished; benchmarks/reliability.py counts 20+).
    assert result.ok(schedule, kills=0), "\n".join(lines)
    assert (result.audit.slots, result.audit.runs) == (12, 12)


def test_a_slot_failed_without_a_retry_is_run_by_the_next_run(tmp_path: Path) -> None:
    # The lost slot, reproduced: a trial popped and marked FAIL, with no retry enqueued. The next
    # run used to print [1/3], [2/3] and exit 0 with that slot never run.
    suite = reliability.write_suite(tmp_path, tasks=("digits_mlp",), optimizers=("adamw",), trials=3, seeds=1,
                                    steps=30)  # fmt: skip
    log = tmp_path / "run.log"
    assert reliability.start(suite, log, failpoints="trial.run").wait(timeout=300) < 0  # killed in its trial
    storage = f"sqlite:///{tmp_path / '.bench' / 'optuna.db'}"
    study = optuna.load_study(study_name="stress.digits_mlp.adamw", storage=storage)
    (popped,) = study.get_trials(states=(TrialState.RUNNING,))
    study._storage.set_trial_state_values(popped._trial_id, TrialState.FAIL)  # FAIL, nothing re-enqueued
    assert reliability.start(suite, log).wait(timeout=300) == 0
    result = reliability.audit(suite)
    assert result.ok, "\n".join(result.lines())
    assert "[3/3]" in log.read_text()


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """An 8 MiB tmpfs (root only); skipped, saying why, where mounting is not permitted."""
    where = tmp_path / "disk"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command to make a small file system")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def test_a_full_disk_stops_the_run_and_more_space_completes_the_suite(
    tmp_path: Path, small_disk: Path
) -> None:
    reference = reference_run(tmp_path / "reference")
    suite = reliability.write_suite(small_disk, **SMALL)
    log = tmp_path / "run.log"  # outside the small disk
    # Stores and the first study created, then killed in the first trial: the disk now holds real stores.
    assert reliability.start(suite, log, failpoints="trial.run").wait(timeout=300) < 0
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free_bytes(small_disk) - 160 * 1024))  # ~160 KiB left: a few trials' worth
    size = log.stat().st_size
    assert reliability.start(suite, log).wait(timeout=300) == 1
    text = log.read_bytes()[size:].decode(errors="replace")
    assert "error: no space left on device" in text and "run the same command again" in text, text[-3000:]
    assert "Traceback" not in text
    with closing(sqlite3.connect(small_disk / ".bench" / "optuna.db")) as con:
        failed = con.execute("SELECT count(*) FROM trials WHERE state = 'FAIL'").fetchone()[0]
    assert failed >= 1  # the killed trial at least; with it any trial the full disk interrupted

    filler.unlink()  # more space
    assert reliability.start(suite, log).wait(timeout=600) == 0
    result = reliability.audit(suite, reference)
    assert result.ok, "\n".join(result.lines())


def test_four_runs_started_at_the_same_instant_on_fresh_stores_run_every_slot_once(tmp_path: Path) -> None:
    race = reliability.race_once(tmp_path, processes=4)
    logs = "\n".join(f"--- {log}\n{log.read_text()[-2000:]}" for log in race.logs)
    assert race.ok, f"{race.codes}\n" + "\n".join(race.audit.lines()) + logs
    assert race.audit.slots == 8 and race.audit.runs == 8
