"""Shared test setup: never touch the hub, and keep every store inside a temporary directory."""

from __future__ import annotations

import os

# Without these a hub call hangs ~25 s before failing on a machine with no internet.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
