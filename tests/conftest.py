"""Shared test setup: never touch the hub, and keep every store inside a temporary directory."""

from __future__ import annotations

import os

# Without these a hub call hangs ~25 s before failing on a machine with no internet.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# One torch thread per process: tests start several processes at once on a 2-core machine, where
# oversubscribed threads make steps several times slower. Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
