"""What a suite run shows while it runs: one line per trial, and a live display on a terminal.

    display = Display(total=plan.estimate.runs, workers=2)       # live when stdout is a terminal
    with display:
        display.say("bench: suite 'quickstart': 6 studies, 24 trials")
        display.begin("quickstart.digits_cnn.adamw adamw#0", steps=300)
        ... train_trial(spec, on_step=display.step) ...
        display.trial("quickstart.digits_cnn.adamw", "adamw#0", summary, hparams, "val/error")

On a terminal (and not under CI) the display is `rich`'s: the trial lines scroll above a bar of trials
done and a bar of the current trial's steps. Anywhere else (a pipe, a CI log, a file) every line is
printed and flushed at once, nothing else. Each trial's line reads

    [3/24] quickstart.digits_cnn.adamw adamw#2: completed val/error=0.0417 (300 steps, 4.1s) lr=0.00123,
    weight_decay=0.0151 | elapsed 0m14s, remaining ~1m10s

and a failed trial's outcome is followed by its exception line: `error (FileNotFoundError: ...)`.

The remaining time (`estimate_remaining`) counts each task's trials still to run at that task's typical
trial time: the median of its trials after the first, which pays the one-time costs (imports, building
the data, the first steps' allocations) and took 7x the others on the quickstart's GPT. Until a second
trial has ended, the line says `remaining ~?`.

Worker processes (`bench run --workers N`) print nothing themselves: their `Relay` sends each line to
the first process's display through a queue (`Display.serve`), so the count runs over every worker's
trials and the live display is never written over.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.records import Summary


def say(line: str) -> None:
    """Print a line now, also when stdout is a pipe or a CI log (block-buffered)."""
    print(line, flush=True)


def is_terminal() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI") is None


def last_line(text: str, width: int = 160) -> str:
    """The last non-empty line of an error (a traceback's exception line), cut to `width`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else text
    return last if len(last) <= width else last[: width - 3] + "..."


def hms(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def estimate_remaining(
    times: Mapping[str, Sequence[float]],
    left: Mapping[str, int],
    workers: int = 1,
    work: Mapping[str, float] | None = None,
) -> float | None:
    """Seconds until the trials still to run are done.

    times: task -> the seconds of its trials, in the order they ended; left: task -> its trials still to
    run; work: task -> the FLOPs of one of its trials, where declared. A task's typical trial is the
    median of its times after the first (the first pays one-time costs), or its only time. A task with no
    time yet is priced by its FLOPs at the seconds per FLOP of the tasks seen (the quickstart's CNN trial
    has 1/50 of its GPT trial's FLOPs and took 1/18 of its time: a rough price, far better than none),
    else at the median typical time of the tasks seen. None while fewer than two trials have ended."""
    if sum(len(v) for v in times.values()) < 2:
        return None
    work = work or {}
    typical = {task: statistics.median(v[1:] or v) for task, v in times.items() if v}
    per_flop = [t / work[task] for task, t in typical.items() if work.get(task)]
    fallback = statistics.median(typical.values())

    def price(task: str) -> float:
        if task in typical:
            return typical[task]
        if per_flop and work.get(task):
            return statistics.median(per_flop) * work[task]
        return fallback

    return sum(n * price(task) for task, n in left.items() if n > 0) / max(1, workers)


def trial_line(
    done: int,
    total: int,
    study: str,
    label: str,
    summary: Summary,
    hparams: Mapping[str, Any],
    metric: str,
    elapsed: float,
    remaining: float | None,
) -> str:
    """One trial's progress line (see the module docstring)."""
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in hparams.items())
    value = f"{metric}={summary.value:.4g}" if math.isfinite(summary.value) else f"{metric}=n/a"
    why = f" ({last_line(summary.error)})" if summary.error and summary.outcome != "completed" else ""
    left = "?" if remaining is None else hms(remaining)
    return (
        f"[{done}/{total}] {study} {label}: {summary.outcome}{why} {value} "
        f"({summary.steps} steps, {summary.time_s:.1f}s) {shown} | elapsed {hms(elapsed)}, remaining ~{left}"
    )


class Display:
    """The run's output: trial lines with elapsed and remaining-time estimates (over every worker's
    trials), messages, and on a terminal a live bar. `live=None` decides by `is_terminal()`; lines go
    to `out` when not live. `studies` maps each study's name to (its task, its trials), which the
    remaining-time estimate counts per task (without it, every trial counts alike); `work` maps a task
    to the FLOPs of one trial, where declared (`estimate_remaining`)."""

    def __init__(
        self,
        total: int,
        *,
        workers: int = 1,
        live: bool | None = None,
        out: Callable[[str], None] = say,
        studies: Mapping[str, tuple[str, int]] | None = None,
        work: Mapping[str, float] | None = None,
    ):
        self.total, self.workers, self.out = total, max(1, workers), out
        self.studies, self.work = dict(studies or {}), dict(work or {})
        self.done = 0
        self.started = time.monotonic()
        self.times: dict[str, list[float]] = {}  # task -> seconds of its trials, in order
        self.left = {s: n for s, (_, n) in self.studies.items()} if self.studies else {"": total}
        self._lock = threading.RLock()
        self._live: Progress | None = None
        if live if live is not None else is_terminal():
            self._live = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(highlight=False),
                transient=True,
            )
            self._trials = self._live.add_task("trials", total=total)
            self._current = self._live.add_task("", total=None, visible=False)

    @property
    def live(self) -> bool:
        return self._live is not None

    def recorded(self, done: Mapping[str, int]) -> None:
        """Trials already recorded before this run (study -> count): counted as done, not timed."""
        with self._lock:
            for study, n in done.items():
                self.done += n
                key = study if study in self.left else ""
                if key in self.left:
                    self.left[key] = max(0, self.left[key] - n)
            if self._live is not None:
                self._live.update(self._trials, completed=min(self.done, self.total))

    def remaining(self) -> float | None:
        """`estimate_remaining` over this run's trials so far."""
        left: dict[str, int] = {}
        for study, n in self.left.items():
            task = self.studies[study][0] if study in self.studies else ""
            left[task] = left.get(task, 0) + n
        return estimate_remaining(self.times, left, self.workers, self.work)

    def __enter__(self) -> Display:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.stop()

    def say(self, line: str) -> None:
        with self._lock:
            if self._live is not None:
                self._live.console.print(line, markup=False, soft_wrap=True)
            else:
                self.out(line)

    def begin(self, name: str, steps: int) -> None:
        """A trial of `steps` steps starts in this process."""
        if self._live is not None:
            self._live.update(self._current, description=name, total=steps, completed=0, visible=True)

    def step(self, step: int) -> None:
        """The current trial has done `step` optimizer steps (the runner's `on_step`)."""
        if self._live is not None:
            self._live.update(self._current, completed=step)

    def trial(
        self, study: str, label: str, summary: Summary, hparams: Mapping[str, Any], metric: str
    ) -> None:
        """A trial ended (here or in a worker process): count it and print its line."""
        with self._lock:
            self.done += 1
            key = study if study in self.left else ""
            if key in self.left:
                self.left[key] = max(0, self.left[key] - 1)
            task = self.studies[study][0] if study in self.studies else ""
            self.times.setdefault(task, []).append(summary.time_s)
            elapsed = time.monotonic() - self.started
            line = trial_line(
                self.done, self.total, study, label, summary, hparams, metric, elapsed, self.remaining()
            )
            if self._live is not None:
                self._live.update(self._trials, completed=min(self.done, self.total))
                self._live.update(self._current, visible=False)
            self.say(line)

    def serve(self, queue: Any) -> threading.Thread:
        """Show what worker processes' `Relay`s send, in a thread, until `None` arrives on `queue`."""

        def pump() -> None:
            while (message := queue.get()) is not None:
                kind, args = message
                getattr(self, kind)(*args)

        thread = threading.Thread(target=pump, name="bench-progress", daemon=True)
        thread.start()
        return thread


class Relay:
    """A worker process's display: sends its messages and trial lines to the first process's
    `Display` (see `Display.serve`); per-step progress stays local (it would flood the queue)."""

    def __init__(self, queue: Any):
        self.queue = queue

    def say(self, line: str) -> None:
        self.queue.put(("say", (line,)))

    def begin(self, name: str, steps: int) -> None:
        pass

    def step(self, step: int) -> None:
        pass

    def trial(
        self, study: str, label: str, summary: Summary, hparams: Mapping[str, Any], metric: str
    ) -> None:
        self.queue.put(("trial", (study, label, summary, dict(hparams), metric)))
