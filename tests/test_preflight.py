"""Outputs that cannot be written are found before anything runs, with the key they came from, and
`bench run` then creates nothing (no store, no directory)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import write_suite

from bench import preflight
from bench.cli import main
from bench.loader import load_suite
from bench.spec import SpecError


def test_a_leaderboard_dir_that_is_a_file_or_under_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "boards").write_text("not a directory")
    suite = load_suite(write_suite(tmp_path, settings={"leaderboard_dir": str(tmp_path / "boards")}))
    with pytest.raises(SpecError, match=r"tiny.yaml: settings.leaderboard_dir: '.*boards' cannot be written: it is not a directory"):  # fmt: skip
        preflight.check(suite)
    preflight.check(suite, leaderboard=False)  # `--no-leaderboard` writes none

    under = load_suite(write_suite(tmp_path, settings={"leaderboard_dir": str(tmp_path / "boards" / "x")}))
    with pytest.raises(SpecError, match=r"cannot be written: '.*boards' is not a directory"):
        preflight.check(under)


def test_a_directory_to_be_created_is_fine_and_probing_leaves_nothing(tmp_path: Path) -> None:
    later = tmp_path / "out" / "boards"
    suite = load_suite(write_suite(tmp_path, settings={"leaderboard_dir": str(later)}))
    before = sorted(tmp_path.rglob("*"))
    preflight.check(suite)
    assert sorted(tmp_path.rglob("*")) == before and not later.exists()


def test_stores_and_their_directories_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    suite = load_suite(
        write_suite(
            tmp_path,
            settings={
                "storage": f"sqlite:///{tmp_path / 'file' / 'optuna.db'}",
                "tracking_uri": f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}",
                "leaderboard_dir": str(tmp_path / "file"),
            },
        )
    )
    with pytest.raises(SpecError) as e:
        preflight.check(suite)
    keys = [p.key for p in e.value.problems]
    assert keys == ["settings.leaderboard_dir", "settings.storage", "settings.tracking_uri"]  # all at once


def read_only_dir(tmp_path: Path) -> Path:
    """A directory this process cannot write: a read-only tmpfs when root (root writes through
    permissions), else one without write permission; skipped when neither can be had."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        return target
    if shutil.which("mount") is None:
        pytest.skip("no `mount` to make a read-only file system")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a read-only tmpfs is not permitted here: {done.stderr.decode().strip()}")
    return target


def test_bench_run_with_a_read_only_leaderboard_dir_stops_before_creating_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ro = read_only_dir(tmp_path)
    try:
        monkeypatch.chdir(tmp_path)
        suite = write_suite(tmp_path, settings={"leaderboard_dir": str(ro / "boards")})
        assert main(["run", str(suite)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"error: {suite}: settings.leaderboard_dir: '{ro / 'boards'}' cannot be written: "
        )
        assert "Traceback" not in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "tiny.yaml"]  # no store, no mlruns/
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
