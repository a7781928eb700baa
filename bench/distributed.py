"""Multi-process trials (torchrun, srun): rank 0 leads, the other ranks follow.

Placeholder with the single-process behaviour; the full implementation initialises the process group
and broadcasts each trial's configuration from rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_leader() -> bool:
    return rank() == 0


def setup() -> None:
    """Initialise the process group when launched with several processes."""


def announce(payload: dict[str, Any] | None) -> None:
    """Rank 0: tell the followers which trial to train next (None: the suite is done)."""


def follow(run: Callable[[dict[str, Any]], None]) -> None:
    """Ranks > 0: train every announced trial until rank 0 announces None."""
