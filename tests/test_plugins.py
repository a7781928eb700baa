"""A package outside bench adds a task and an optimizer: the example under examples/plugin, named by
import path from a suite, and installed with pip (a real wheel build into a target directory) so that
its entry points register both; `bench ls` shows where they come from and `bench run` trains them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.catalog import REGISTRIES
from bench.loader import load_suite

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin"


def test_a_suite_names_the_plugin_task_and_optimizer_by_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))  # on the path, not installed: no entry points
    suite = tmp_path / "s.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "tasks": ["bench_example.tasks:ENTRIES"],
                "optimizers": ["adamw", "bench_example.nsgd:NormalizedSGD"],
            }
        )
    )
    resolved = load_suite(suite, registries=REGISTRIES)
    assert resolved.tasks[0].name == "iris_mlp" and resolved.tasks[0].options == {"hidden": 32}
    assert resolved.optimizers[1].label == "NormalizedSGD"
    assert resolved.optimizers[1].entry.defaults == {
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "eps": 1e-8,
    }
    for name in [m for m in sys.modules if m.startswith("bench_example")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/plugin built and installed by pip into a directory (a copy is built: nothing is written
    into the repository)."""
    work = tmp_path_factory.mktemp("plugin")
    shutil.copytree(
        EXAMPLE, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = work / "site"
    # Offline, with the setuptools at hand; where there is none (Python >= 3.12 venvs), pip's isolated build.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(target),
         str(work / "src")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


def bench(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_an_installed_plugin_is_listed_checked_and_trained(installed: Path, tmp_path: Path) -> None:
    listing = bench(["ls"], installed, tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines() if line.strip()}
    assert "plugin bench-example (bench_example.tasks:ENTRIES)" in rows["iris_mlp"]
    assert "[plugin bench-example (bench_example.optimizers:ENTRIES)]" in rows["nsgd"]
    assert "plugin" not in rows["adamw"]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    checks = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert checks.returncode == 0 and " passed" in checks.stdout, checks.stdout[-2000:]

    run = bench(
        ["run", str(EXAMPLE / "suite.yaml"), "--set", f"settings.leaderboard_dir={tmp_path / 'boards'}",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--storage", f"sqlite:///{tmp_path / 'optuna.db'}"],
        installed, tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    board = (tmp_path / "boards" / "plugin_example.md").read_text()
    assert "nsgd" in board and "adamw" in board and "iris_mlp" in board
    assert "8 tune trials" in board and "8 completed" in board, board[:600]
