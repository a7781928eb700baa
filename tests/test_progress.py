"""The run's display (bench.progress): trial lines, plain output off a terminal, worker relays."""

from __future__ import annotations

import math
import multiprocessing

from bench.progress import Display, Relay, trial_line
from bench.records import Summary

DONE = Summary(outcome="completed", value=0.0417, steps=300, time_s=4.1)


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
    display = Display(total=4, workers=2, live=False, out=lines.append)
    with display:
        display.say("bench: starting")
        display.begin("s adamw#0", 300)
        display.step(10)  # nothing to show off a terminal
        display.trial("s", "adamw#0", DONE, {}, "val/error")
    assert lines[0] == "bench: starting" and lines[1].startswith("[1/4] s adamw#0: completed")
    assert lines[1].endswith("remaining ~0m06s")  # 3 trials left x 4.1 s / 2 workers
    assert len(lines) == 2 and not display.live


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
