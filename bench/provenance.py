"""Where a trial's numbers come from: the git commit of the suite's repository, package versions and
hardware, collected once per process and recorded with every trial (see `bench.records`).

    meta = collect(suite.path.parent)    # a bench.records.Provenance
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from bench.records import Provenance

PACKAGES = (
    "bench",
    "torch",
    "lightning",
    "optuna",
    "mlflow",
    "timm",
    "pytorch_optimizer",
    "heavyball",
    "schedulefree",
)


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of `packages` (those not installed are left out)."""
    found = {}
    for pkg in packages:
        for dist in (pkg.replace("_", "-"), pkg):
            try:
                found[pkg] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def git_commit(directory: Path) -> str:
    """HEAD of the repository holding `directory`, or `unknown`."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return commit or "unknown"


def hardware() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"{platform.machine()} {os.cpu_count()} cpus, gpu: {gpu}, {platform.platform()}"


def collect(directory: Path) -> Provenance:
    """Provenance of trials run now for a suite file in `directory`."""
    return Provenance(
        git_commit=git_commit(directory),
        versions=versions(),
        hardware=hardware(),
    )
