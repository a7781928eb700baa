"""bench.run's cost measurements: StepClock's step and update times (hooks driven by hand with a fake
clock, then a real trial) and optimizer_state_bytes (exact byte counts of known optimizers)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.run import StepClock, optimizer_state_bytes


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(clock: StepClock, steps: int, *, step_s: float, update_s: float, accumulate: int = 1,
          validate_after: tuple[int, ...] = (), validation_s: float = 5.0, heavy_every: int = 0,
          start: int = 0, slow_first: int = 0) -> None:  # fmt: skip
    """The hooks Lightning calls for `steps` optimizer steps of `accumulate` micro-batches each, with
    `step_s` seconds per step of which the last `update_s` are the update; from step `start` (a fit
    resumed from a checkpoint), its first `slow_first` steps' forward and backward 10x slower (warm-up)."""
    now = FakeTime()
    clock._mark = now  # type: ignore[method-assign]
    trainer, module = (
        SimpleNamespace(global_step=start, optimizers=[]),
        SimpleNamespace(device=torch.device("cpu")),
    )
    clock.on_train_start(trainer, module)  # type: ignore[arg-type]
    for i in range(steps):
        for micro in range(accumulate):
            now.now += (step_s - update_s) / accumulate * (10 if i < slow_first else 1)
            if micro == accumulate - 1:
                clock.on_before_optimizer_step(trainer, module, None)  # type: ignore[arg-type]
                heavy = heavy_every and (trainer.global_step + 1) % heavy_every == 0
                now.now += update_s * (11 if heavy else 1)
                trainer.global_step += 1
            clock.on_train_batch_end(trainer, module, None, None, 0)  # type: ignore[arg-type]
        if trainer.global_step in validate_after:
            clock.on_validation_start(trainer, module)  # type: ignore[arg-type]
            now.now += validation_s


def test_step_clock_times_steps_and_updates_after_the_first_steps():
    clock = StepClock(stop_at=50)
    assert clock.skip == 5
    drive(clock, 50, step_s=0.1, update_s=0.02)
    result = clock.result()
    assert result["step_time_s"] == pytest.approx(0.1) and result["update_time_s"] == pytest.approx(0.02)
    assert clock.timed == {"step": 50 - 5, "update": 50 - 5}


def test_step_clock_of_a_resumed_segment_skips_its_own_first_steps_counted_from_where_it_starts():
    # a cooldown branch resumed at step 800 of a 1000-step run: 200 steps trained, the first 20 skipped
    clock = StepClock(stop_at=1000)
    drive(clock, 200, step_s=0.1, update_s=0.02, start=800, slow_first=3)
    assert clock.first == 800 and clock.skip == 20
    assert clock.timed == {"step": 200 - 20, "update": 200 - 20}
    result = clock.result()
    assert result["step_time_s"] == pytest.approx(0.1) and result["update_time_s"] == pytest.approx(0.02)


def test_step_clock_counts_periodic_work_at_its_amortised_cost():
    # every 5th update costs 11x (a preconditioner refresh): a median would not see it, a mean does
    clock = StepClock(stop_at=100)
    drive(clock, 100, step_s=0.1, update_s=0.01, heavy_every=5)
    result = clock.result()
    assert result["update_time_s"] == pytest.approx(0.01 * (4 + 11) / 5)
    assert result["step_time_s"] == pytest.approx(0.1 + 0.01 * 10 / 5)


def test_step_clock_leaves_out_validation_and_counts_accumulated_micro_batches_as_one_step():
    clock = StepClock(stop_at=40)
    drive(clock, 40, step_s=0.2, update_s=0.05, accumulate=4, validate_after=(10, 20, 30))
    result = clock.result()
    assert result["step_time_s"] == pytest.approx(0.2) and result["update_time_s"] == pytest.approx(0.05)
    assert clock.timed["step"] == 40 - 4 - 3  # the first steps, 3 intervals with a validation
    assert clock.timed["update"] == 40 - 4


def test_step_clock_times_every_step_of_a_long_run_so_periodic_work_cannot_alias():
    # a refresh every 90 steps, as many as a sampling stride of 90 would have taken: every step is timed
    clock = StepClock(stop_at=10_000, max_pending=100)
    assert clock.skip == 1000
    drive(clock, 2000, step_s=0.01, update_s=0.001, heavy_every=90)
    heavy = sum(1 for done in range(1001, 2001) if done % 90 == 0)
    assert clock.timed == {"step": 1000, "update": 1000} and not clock.pending
    assert clock.result()["update_time_s"] == pytest.approx(0.001 * (1000 + 10 * heavy) / 1000)


class FakeEvent:
    """A CUDA event stand-in: recorded at a time, completed once the fake GPU has passed that time."""

    def __init__(self, at: float, gpu: list[float]) -> None:
        self.at, self.gpu = at, gpu

    def query(self) -> bool:
        return self.gpu[0] >= self.at

    def elapsed_time(self, end: FakeEvent) -> float:
        return (end.at - self.at) * 1000.0


def test_step_clock_on_cuda_folds_only_events_the_gpu_has_passed_and_waits_at_the_end(monkeypatch):
    gpu = [-1.0]  # the time the fake GPU has reached: nothing done yet
    now = FakeTime()
    clock = StepClock(stop_at=100, max_pending=20)
    trainer, module = SimpleNamespace(global_step=0), SimpleNamespace(device=torch.device("cpu"))
    clock._mark = lambda: FakeEvent(now(), gpu)  # type: ignore[method-assign]
    clock.cuda = True
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: synced.append(gpu.__setitem__(0, math.inf)))
    for _ in range(60):
        now.now += 0.08
        clock.on_before_optimizer_step(trainer, module, None)  # type: ignore[arg-type]
        now.now += 0.02
        trainer.global_step += 1
        clock.on_train_batch_end(trainer, module, None, None, 0)  # type: ignore[arg-type]
        gpu[0] = now.now - 1.0  # the GPU runs a second behind the CPU
        assert len(clock.pending) < 30  # the last second's intervals (20), not all 100 of the run
    assert clock.timed["update"] > 0 and clock.pending and not synced  # folded what was done, no waiting
    result = clock.result()
    assert synced and not clock.pending and clock.timed == {"step": 60 - 10, "update": 60 - 10}
    assert result["step_time_s"] == pytest.approx(0.1) and result["update_time_s"] == pytest.approx(0.02)


def test_step_clock_reports_nan_when_nothing_was_timed():
    empty = StepClock(stop_at=100).result()
    assert math.isnan(empty["step_time_s"]) and math.isnan(empty["update_time_s"])
    assert math.isnan(empty["state_bytes"])


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def stepped(opt: torch.optim.Optimizer, net: torch.nn.Module) -> torch.optim.Optimizer:
    net(torch.randn(3, 8)).square().sum().backward()
    opt.step()
    return opt


def param_bytes(net: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def test_state_bytes_of_adamw_sgd_and_none():
    net = model()
    n_tensors = len(list(net.parameters()))
    adamw = stepped(torch.optim.AdamW(net.parameters()), net)
    # exp_avg and exp_avg_sq per parameter, plus a float32 `step` per parameter
    assert optimizer_state_bytes([adamw]) == 2 * param_bytes(net) + 4 * n_tensors
    net = model()
    sgd = stepped(torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), net)
    assert optimizer_state_bytes([sgd]) == param_bytes(net)
    net = model()
    plain = stepped(torch.optim.SGD(net.parameters(), lr=0.1), net)
    assert optimizer_state_bytes([plain]) == 0
    assert optimizer_state_bytes([]) == 0


def test_state_bytes_count_shared_storage_once_and_parameters_not_at_all():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    w = next(net.parameters())
    buf = torch.zeros(100)  # 400 bytes
    opt.state[w] = {"buf": buf, "view": buf[:10], "nested": [{"again": buf}], "param": w, "n": 3}
    assert optimizer_state_bytes([opt]) == 400


@pytest.mark.slow
def test_a_trial_reports_its_step_time_update_time_and_state_bytes(tmp_path: Path) -> None:
    from test_engine import runner_spec

    from bench.run import train_trial

    spec = runner_spec(tmp_path, steps=30, eval_every=10)
    result = train_trial(spec)
    assert result.outcome == "completed"
    assert 0 < result.update_time_s < result.step_time_s < 5
    task = spec.task.entry.build({**spec.task.options, "batch_size": spec.task.batch_size}, 0, spec.data_root)
    net = task.build_model()
    n_tensors = len(list(net.parameters()))
    assert result.state_bytes == 2 * param_bytes(net) + 4 * n_tensors  # AdamW
