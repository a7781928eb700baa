"""The ways a trial can end, shared by the runner (`bench.run`), the engine and scoring (`bench.score`).

A module of its own, with no imports, so scoring stays pure and cheap without importing Lightning.
What each outcome means is documented in `bench.run`.
"""

from __future__ import annotations

FAILED: tuple[str, ...] = ("diverged", "oom", "timeout", "error")  # scored as the task's worst value
OUTCOMES: tuple[str, ...] = ("completed", "pruned", *FAILED)
