"""The run's display (bench.progress): trial lines, plain output off a terminal, worker relays."""

from __future__ import annotations

import math
import multiprocessing

import pytest

from bench.progress import Display, Relay, estimate_remaining, trial_line
from bench.records import Summary

DONE = Summary(outcome="completed", value=0.0417, steps=300, time_s=4.1)
FIRST = Summary(outcome="completed", value=0.0417, steps=300, time_s=30.0)  # paid the one-time costs


def test_a_trial_line_gives_outcome_value_budget_hyperparameters_and_times() -> None:
    line = trial_line(3, 24, "q.digits_cnn.adamw", "adamw#2", DONE, {"lr": 0.00123, "nesterov": True}, "val/error",
                      elapsed=14, remaining=70)  # fmt: skip
    assert line == (
        "[3/24] q.digits_cnn.adamw adamw#2: completed val/error=0.0417 (300 steps, 4.1s) lr=0.00123, "
        "nesterov=True | elapsed 0m14s, remaining ~1m10s"
    )


def test_a_failed_trial_line_says_why() -> None:
    error = 'Traceback (most recent call last):\n  File "x.py", line 1\nFileNotFoundError: tokenizer file not found: x\n'
    failed = Summary(outcome="error", value=math.nan, steps=0, time_s=0.1, error=error)
    line = trial_line(1, 1, "s.t.adamw", "adamw#0", failed, {"lr": 0.1}, "val/loss", 0, 0)
    assert "error (FileNotFoundError: tokenizer file not found: x) val/loss=n/a" in line


def test_off_a_terminal_every_line_goes_out_at_once_and_remaining_time_counts_the_workers() -> None:
    lines: list[str] = []
    display = Display(total=5, workers=2, live=False, out=lines.append)
    with display:
        display.say("bench: starting")
        display.begin("s adamw#0", 300)
        display.step(10)  # nothing to show off a terminal
        display.trial("s", "adamw#0", FIRST, {}, "val/error")
        display.trial("s", "adamw#1", DONE, {}, "val/error")
    assert lines[0] == "bench: starting" and lines[1].startswith("[1/5] s adamw#0: completed")
    assert lines[1].endswith("remaining ~?")  # the first trial alone says nothing about the others
    assert lines[2].endswith("remaining ~0m06s")  # 3 trials left x 4.1 s / 2 workers
    assert len(lines) == 3 and not display.live


def test_the_estimate_leaves_out_each_tasks_first_trial_and_counts_trials_per_task() -> None:
    # the quickstart's shape: a slow GPT whose first trial pays one-time costs, then a fast CNN
    times = {"gpt": [140.0, 19.0, 18.0, 20.0]}
    assert estimate_remaining(times, {"gpt": 8}) == 8 * 19.0
    assert estimate_remaining(times | {"cnn": [3.0, 1.0, 1.0]}, {"gpt": 0, "cnn": 9}) == 9 * 1.0
    assert estimate_remaining(times, {"gpt": 2, "cnn": 4}) == (2 + 4) * 19.0  # a task not started yet
    work = {"gpt": 1.75e12, "cnn": 3.5e10}  # ... priced by its FLOPs, where declared
    assert estimate_remaining(times, {"gpt": 2, "cnn": 4}, work=work) == pytest.approx(
        2 * 19.0 + 4 * 19.0 / 50
    )
    assert estimate_remaining({"gpt": [140.0]}, {"gpt": 11}) is None
    assert estimate_remaining(times, {"gpt": 8}, workers=2) == 4 * 19.0


def test_a_display_continues_from_what_is_recorded_and_estimates_by_task() -> None:
    lines: list[str] = []
    studies = {"q.gpt.adamw": ("gpt", 4), "q.cnn.adamw": ("cnn", 4)}
    display = Display(total=8, live=False, out=lines.append, studies=studies)
    display.recorded({"q.gpt.adamw": 2, "q.cnn.adamw": 0})
    for label, seconds in (("adamw#2", 30.0), ("adamw#3", 20.0)):
        display.trial("q.gpt.adamw", label, Summary("completed", 0.5, 150, seconds), {}, "val/loss")
    assert [line.split(" ", 1)[0] for line in lines] == ["[3/8]", "[4/8]"]
    assert display.remaining() == 4 * 20.0  # 4 cnn trials at the gpt's typical time (cnn not seen yet)
    display.trial("q.cnn.adamw", "adamw#0", Summary("completed", 0.1, 200, 2.0), {}, "val/error")
    display.trial("q.cnn.adamw", "adamw#1", Summary("completed", 0.1, 200, 1.0), {}, "val/error")
    assert display.remaining() == 2 * 1.0


def test_worker_processes_relay_their_lines_to_the_first_display() -> None:
    lines: list[str] = []
    display = Display(total=3, live=False, out=lines.append)
    queue = multiprocessing.get_context("spawn").Queue()
    pump = display.serve(queue)
    relay = Relay(queue)
    relay.say("bench: worker says hi")
    relay.begin("s sgd#0", 10)
    relay.step(5)
    relay.trial("s", "sgd#0", DONE, {"lr": 0.1}, "val/error")
    display.trial("s", "adamw#0", DONE, {}, "val/error")  # the first process's own trial
    relay.trial("s", "sgd#1", DONE, {}, "val/error")
    queue.put(None)
    pump.join(timeout=10)
    assert not pump.is_alive()
    assert "bench: worker says hi" in lines
    counted = sorted(line.split(" ", 1)[0] for line in lines if line.startswith("["))
    assert counted == ["[1/3]", "[2/3]", "[3/3]"]  # one count over every worker's trials


def test_the_live_display_prints_lines_above_its_bars(capsys) -> None:
    out: list[str] = []
    with Display(total=2, live=True, out=out.append) as display:
        display.begin("s adamw#0", 20)
        display.step(20)
        display.trial("s", "adamw#0", DONE, {}, "val/error")
    assert out == [] and display.live  # through rich's console, not `out`
    assert "[1/2] s adamw#0: completed val/error=0.0417" in capsys.readouterr().out
