"""The runner's per-step watch without host syncs (bench.monitor): lagged loss reads that still stop a
diverged trial within `lag` steps, and throughput timed (and the device synchronised) only at logging
steps. On a CPU the GPU's lag is forced, so the GPU path's logic runs here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import runner_spec

from bench import monitor
from bench.monitor import LossReadback, StepThroughput


def test_readback_without_lag_reads_at_once() -> None:
    reader = LossReadback(lag=0)
    assert reader.push(0, torch.tensor(2.5)) == [(0, 2.5)]
    assert reader.flush() == []


def test_readback_with_lag_hands_values_over_lag_steps_late_in_order() -> None:
    reader = LossReadback(lag=2)
    heard = [reader.push(step, torch.tensor(float(step))) for step in range(5)]
    assert heard == [[], [], [(0, 0.0)], [(1, 1.0)], [(2, 2.0)]]
    assert reader.flush() == [(3, 3.0), (4, 4.0)]
    assert reader.flush() == []


def test_lag_is_for_gpus_only() -> None:
    assert monitor.readback_lag(torch.device("cpu")) == 0
    assert monitor.readback_lag(torch.device("cuda", 0)) == monitor.CUDA_LAG >= 1


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_lagged_reads_stop_a_diverged_trial_within_the_lag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, optimizer: str
) -> None:
    from bench import run

    spec = runner_spec(tmp_path, steps=40, eval_every=40, lr=1e4, optimizer=optimizer)
    prompt = run.train_trial(spec)
    monkeypatch.setattr(run, "readback_lag", lambda device: 2)
    lagged = run.train_trial(spec)
    assert prompt.outcome == lagged.outcome == "diverged"
    assert prompt.steps < 40 and prompt.steps <= lagged.steps <= prompt.steps + 2
    assert prompt.curves["train"] == lagged.curves["train"]  # the same losses, heard later


@pytest.mark.slow
def test_lagged_reads_give_the_same_trial_as_immediate_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import run

    spec = runner_spec(tmp_path, steps=25, eval_every=10)
    logged: list[tuple[int, dict[str, float]]] = []
    prompt = run.train_trial(spec)
    monkeypatch.setattr(run, "readback_lag", lambda device: 2)
    lagged = run.train_trial(spec, log_metrics=lambda m, step: logged.append((step, m)))
    assert lagged.outcome == "completed" and lagged.steps == 25
    assert lagged.value == prompt.value and lagged.curves == prompt.curves
    # the curve is logged at the step each loss was measured, the last ones flushed at the end
    assert [step for step, m in logged if "train/loss" in m] == [0, 10, 20]


@pytest.mark.slow
def test_throughput_syncs_only_at_logging_steps_and_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import run

    synced: list[int] = []
    monkeypatch.setattr(StepThroughput, "_sync", lambda self, trainer: synced.append(trainer.global_step))
    logged: list[tuple[int, dict[str, float]]] = []
    spec = runner_spec(tmp_path, steps=40, eval_every=20)
    result = run.train_trial(spec, log_metrics=lambda m, step: logged.append((step, m)))
    assert result.outcome == "completed"
    # start, the logging steps 10..40, and the two ends of each of the two validations
    assert synced == [0, 10, 20, 20, 20, 30, 40, 40, 40]
    rates = [(step, m) for step, m in logged if "train/device/samples_per_sec" in m]
    assert [step for step, _ in rates] == [20, 30, 40]  # a window of two logging points
    assert all(m["train/device/samples_per_sec"] > 0 and math.isfinite(m["train/device/samples_per_sec"])
               for _, m in rates)  # fmt: skip
    assert all(m["train/samples"] == step * 64 for step, m in rates)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_no_host_sync_between_logging_steps_on_a_gpu(tmp_path: Path) -> None:
    """torch's sync debug mode warns at every host-device synchronisation: a 40-step trial logging every
    10 steps may sync at its logging steps and evaluations, never at every step."""
    import dataclasses
    import warnings

    from bench import run

    spec = runner_spec(tmp_path, steps=40, eval_every=40)
    spec = dataclasses.replace(spec, trainer=dataclasses.replace(spec.trainer, accelerator="gpu"))
    run.train_trial(spec)  # warm-up: lazy initialisation syncs once
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run.train_trial(spec)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert result.outcome == "completed"
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) < 40, f"{len(syncs)} host syncs in 40 steps"
