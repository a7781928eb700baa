"""Check before any training that everything a run writes can be written.

`bench run` writes the Optuna storage and the MLflow store (SQLite files or journal files: their
directory too, for SQLite's journal), the MLflow artifacts (curves aside, the resolved suite, error
tracebacks, the leaderboard files), the offline stand-in datasets when `settings.standins` asks for
them, and the leaderboard directory at the very end. A read-only or misnamed location used to be found
after all the training; `check(suite)` finds it first, with the key it came from:

    suites/s.yaml: settings.leaderboard_dir: '/ro/boards' cannot be written: [Errno 30] Read-only file system

A directory that does not exist yet is fine when its nearest existing parent is a writable directory
(it is created when needed). Probing writes a temporary file and removes it: nothing is left behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.faults import sqlite_path
from bench.spec import Problems, Suite


def unwritable(directory: Path) -> str | None:
    """Why files cannot be created in `directory` (or in it once created), or None when they can."""
    target = directory
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if not target.is_dir():
        return f"'{target}' is not a directory" if target != directory else "it is not a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=".bench-probe-", dir=target)
    except OSError as exc:
        return f"[Errno {exc.errno}] {exc.strerror}" + ("" if target == directory else f" (in '{target}')")
    os.close(fd)
    os.unlink(probe)
    return None


def _store_dir(url: str) -> Path | None:
    path = sqlite_path(url)
    if path is None and (url.endswith(".log") or url.startswith("journal:")):
        path = Path(url.removeprefix("journal:"))
    return None if path is None else path.parent


def check(suite: Suite, *, leaderboard: bool = True, stores: bool = True) -> None:
    """Raise one `SpecError` naming every output of the run that cannot be written (see module doc)."""
    s = suite.settings
    problems = Problems(str(suite.path))
    wanted: list[tuple[tuple[str, ...], str, Path]] = []
    if leaderboard:
        wanted.append((("settings", "leaderboard_dir"), s.leaderboard_dir, Path(s.leaderboard_dir)))
    if stores:
        for key, url in (("storage", s.storage), ("tracking_uri", s.tracking_uri)):
            directory = _store_dir(url)
            if directory is not None:
                wanted.append((("settings", key), url, directory))
        if s.standins:
            wanted.append((("settings", "data_root"), s.data_root, Path(s.data_root)))
    for key, shown, directory in wanted:
        reason = unwritable(directory)
        if reason is not None:
            problems.add(key, f"'{shown}' cannot be written: {reason}")
    if stores:
        for key, url in (("storage", s.storage), ("tracking_uri", s.tracking_uri)):
            path = sqlite_path(url)
            if path is not None and path.exists() and not os.access(path, os.R_OK | os.W_OK):
                problems.add(("settings", key), f"'{url}' cannot be written: {path} is read-only")
    problems.raise_if_any()


def check_artifacts(suite: Suite, location: str) -> None:
    """The MLflow experiment's artifact location, when it is a local directory, must be writable."""
    if "://" in location and not location.startswith("file://"):
        return  # a server or object store answers for itself
    directory = Path(location.removeprefix("file://"))
    reason = unwritable(directory)
    if reason is not None:
        problems = Problems(str(suite.path))
        problems.add(
            ("settings", "tracking_uri"),
            f"the MLflow artifact directory '{directory}' of experiment '{suite.name}' cannot be written: "
            f"{reason}",
        )
        problems.raise_if_any()
