"""The copyable CI workflow for an optimizer library (examples/optimizer-library), run the way GitHub
Actions would run it: each job's `run:` steps in order, with bash -eo pipefail, in a scratch copy of a
stand-in library's repository, bench installed from this checkout into a fresh virtual environment.

Offline: the new environment sees the installed packages (torch, Lightning, ...) through a path file, so
pip finds every requirement already satisfied (PIP_NO_INDEX=1 makes any download an error), and builds
bench and the library without an isolated build environment. `uses:` steps (checkout, setup-python,
upload-artifact) are GitHub's; here the copy is the checkout and the venv is the Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "optimizer-library"
WORKFLOW = EXAMPLE / ".github" / "workflows" / "bench.yml"

LIBRARY = '''\
"""mylib: a stand-in optimizer library."""
import torch


class MyOptimizer(torch.optim.AdamW):
    """AdamW at lr {lr} (better than torch's default 1e-3 on a 60-step digits run)."""

    def __init__(self, params, lr={lr}, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
'''


def test_the_workflow_names_what_the_test_runs():
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert set(flow["jobs"]) == {"gate", "baseline"}
    gate = "\n".join(s.get("run", "") for s in flow["jobs"]["gate"]["steps"])
    assert "bench check bench/ci.yaml --baseline bench/baseline.json --rerun" in gate
    assert "--junit reports/bench.xml" in gate and '--summary "$GITHUB_STEP_SUMMARY"' in gate
    assert flow["env"]["BENCH_PACKAGE"].startswith("bench @ git+https://")
    suite = yaml.safe_load((EXAMPLE / "bench" / "ci.yaml").read_text())
    assert suite["name"] == "mylib_ci" and "mylib_ci.json" in "\n".join(
        s.get("run", "") for s in flow["jobs"]["baseline"]["steps"]
    )


def venv(where: Path) -> Path:
    """A virtual environment whose Python also sees this interpreter's installed packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # a plain path (not addsitedir): the shared site's own .pth files, e.g. an editable bench, stay out
    Path(site, "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return where / "bin"


def library(repo: Path, lr: str) -> None:
    (repo / "mylib").mkdir(parents=True, exist_ok=True)
    (repo / "mylib" / "__init__.py").write_text("")
    (repo / "mylib" / "optim.py").write_text(LIBRARY.format(lr=lr))


def run_job(flow: dict, job: str, env: dict[str, str], cwd: Path, only_last: bool = False) -> list[int]:
    """The job's `run:` steps in order (bash -eo pipefail, as GitHub runs them); stops at a failure."""
    steps = [s for s in flow["jobs"][job]["steps"] if "run" in s]
    codes = []
    for step in steps[-1:] if only_last else steps:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=cwd, env={**env, **step.get("env", {})}, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        codes.append(done.returncode)
        if done.returncode:
            print(
                f"step {step.get('name')!r} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
            break
    return codes


@pytest.mark.slow
def test_the_example_workflow_installs_bench_gates_a_library_and_catches_its_regression(
    tmp_path: Path,
) -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    # the library's repository: the example's files, a pyproject and the stand-in optimizer
    repo = tmp_path / "mylib"
    shutil.copytree(EXAMPLE, repo)
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "mylib"\nversion = "0.1.0"\ndependencies = ["torch"]\n\n'
        '[tool.setuptools]\npackages = ["mylib"]\n'
    )
    library(repo, "3e-3")
    # bench as the workflow's pip would fetch it: this checkout's package (a copy: builds write into it)
    source = tmp_path / "bench-src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "bench", source / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir = venv(tmp_path / "venv")
    runner = tmp_path / "runner"
    runner.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        {k: str(v) for k, v in flow.get("env", {}).items()},
        BENCH_PACKAGE=str(source),  # instead of the git URL
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(bin_dir.parent),
        PIP_NO_INDEX="1",
        PIP_NO_BUILD_ISOLATION="0",  # pip's spelling of --no-build-isolation
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        OMP_NUM_THREADS="1",
        CI="true",
        GITHUB_ACTIONS="true",
        GITHUB_WORKSPACE=str(repo),
        RUNNER_TEMP=str(runner),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
    )

    # once: the baseline job, and the maintainer commits its artifact as bench/baseline.json
    assert run_job(flow, "baseline", env, repo) == [0, 0]
    shutil.copy(repo / "baseline" / "baseline.json", repo / "bench" / "baseline.json")
    assert (bin_dir / "bench").exists()  # installed into the new environment, not taken from here

    # a pull request that changes nothing: every gate passes
    for db in runner.glob("*.db"):
        db.unlink()  # a fresh runner
    (tmp_path / "summary.md").write_text("")
    assert run_job(flow, "gate", env, repo) == [0, 0, 0]
    summary = (tmp_path / "summary.md").read_text()
    assert "### bench check: ✅ passed" in summary and "Improvement over `adamw`" in summary
    report = ET.parse(repo / "reports" / "bench.xml").getroot()
    assert report.get("failures") == "0" and int(report.get("tests")) >= 6

    # a pull request that breaks the optimizer (its default lr drops tenfold): the gate fails with 1
    library(repo, "3e-4")
    for db in runner.glob("*.db"):
        db.unlink()
    assert run_job(flow, "gate", env, repo, only_last=True) == [1]
    summary = (tmp_path / "summary.md").read_text()
    assert "### bench check: ❌ failed" in summary and "regressed" in summary and "not shown" in summary
    report = ET.parse(repo / "reports" / "bench.xml").getroot()
    failed = {c.get("name") for c in report.iter("testcase") if c.find("failure") is not None}
    assert {"mine val/error vs baseline", "mine beats adamw"} <= failed
