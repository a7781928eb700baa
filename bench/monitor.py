"""What the runner watches every step without stalling the device: the loss and the throughput.

Part of the runner layer (with `bench.run`, the only modules that import Lightning). On a GPU every
read of a device value by the host (`float(loss)`, `loss.item()`, `torch.cuda.synchronize()`) waits
until the device has finished all the work queued so far, so the host stops queueing the next step
and the device idles while it does. Two per-step reads of that kind are replaced here:

- `LossReadback`: the training loss, which the runner needs on the host for the divergence check and
  the `train/loss` curve, is copied to pinned host memory asynchronously and read `lag` steps later,
  when the copy has long finished: `lag = 2` on CUDA (the device keeps a step queued while the host
  reads), 0 on a CPU, where reading a tensor waits for nothing. Every rank of a multi-process trial
  reads the same (all-reduced) values at the same steps, so all take the same decision at the same
  step. A diverged trial is stopped `lag` steps after its loss went bad, and the runner reports the
  step whose loss was bad.
- `StepThroughput`: the figures of Lightning's `ThroughputMonitor` (`train/device/samples_per_sec`,
  `train/device/batches_per_sec`, `train/device/flops_per_sec`, `train/device/mfu` on GPUs whose
  peak Lightning knows), computed with Lightning's `Throughput`, but timed only at logging steps.
  `ThroughputMonitor` calls `torch.cuda.synchronize()` after every batch so that each batch's time
  is exact; throughput over a window only needs exact times at the window's ends, and those are the
  logging steps. Validation time is left out, as `ThroughputMonitor` does.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput, get_available_flops
from lightning.pytorch.callbacks import Callback

# Lightning's own mapping from a precision plugin to the dtype its matmuls run in (the peak FLOPs
# of a GPU depend on it); private in Lightning 2.x, so imported in one place.
from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype

CUDA_LAG = 2  # steps between queueing a loss's copy and reading it on a GPU


def readback_lag(device: torch.device) -> int:
    """How many steps late the host reads a loss computed on `device` (see the module docstring)."""
    return CUDA_LAG if device.type == "cuda" else 0


class LossReadback:
    """Scalars of a training run read back on the host `lag` steps after they were computed.

    `push(step, value)` queues a device scalar and returns the `(step, float)` pairs that are due:
    with `lag = 0` the value itself, at once; otherwise the value pushed `lag` steps earlier, whose
    asynchronous copy has finished. `flush()` returns whatever is still queued (waiting for it)."""

    def __init__(self, lag: int):
        self.lag = lag
        self._queued: deque[tuple[int, torch.Tensor, Any]] = deque()

    def push(self, step: int, value: torch.Tensor) -> list[tuple[int, float]]:
        if self.lag == 0:
            return [(step, float(value))]
        event = None
        if value.device.type == "cuda":
            value = value.to("cpu", non_blocking=True)  # into pinned memory, queued behind the step
            event = torch.cuda.Event()
            event.record()
        self._queued.append((step, value, event))
        due = []
        while len(self._queued) > self.lag:
            due.append(self._read(self._queued.popleft()))
        return due

    def flush(self) -> list[tuple[int, float]]:
        due = [self._read(item) for item in self._queued]
        self._queued.clear()
        return due

    @staticmethod
    def _read(item: tuple[int, torch.Tensor, Any]) -> tuple[int, float]:
        step, value, event = item
        if event is not None:
            event.synchronize()  # done long ago: this step's copy was queued `lag` steps back
        return step, float(value)


class StepThroughput(Callback):
    """Lightning's throughput figures, timed at every `every`-th optimizer step (see the module
    docstring), over a window of `window` such points, logged under `train/` at the step they
    describe. `batch_size` gives a batch's number of samples on this device."""

    def __init__(self, batch_size: Callable[[Any], int], every: int, window: int):
        super().__init__()
        self.batch_size, self.every, self.window = batch_size, max(1, every), max(2, window)
        self.throughput: Throughput | None = None
        self._batches = self._samples = self._last_step = 0
        self._flops_since = 0.0
        self._started = self._paused = self._val_started = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dtype = _plugin_to_compute_dtype(trainer.precision_plugin)
        self.throughput = Throughput(
            available_flops=get_available_flops(trainer.strategy.root_device, dtype),
            world_size=trainer.world_size,
            window_size=self.window,
            separator="/",
        )

    def _sync(self, trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sync(trainer)
        self._started, self._paused = time.perf_counter(), 0.0
        self._batches = self._samples = self._last_step = 0
        self._flops_since = 0.0
        if self.throughput is not None:
            self.throughput.reset()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches += 1
        self._samples += self.batch_size(batch)
        self._flops_since += getattr(pl_module, "flops_per_batch", None) or 0.0
        step = trainer.global_step
        if step == self._last_step or step % self.every or not trainer.loggers or self.throughput is None:
            return  # accumulating gradients, or not a logging step
        self._last_step = step
        self._sync(trainer)
        self.throughput.update(
            time=time.perf_counter() - self._started - self._paused,
            batches=self._batches,
            samples=self._samples,
            flops=self._flops_since or None,  # this device's FLOPs since the last update
        )
        self._flops_since = 0.0
        metrics = {f"train/{k}": v for k, v in self.throughput.compute().items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._sync(trainer)
            self._val_started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self._val_started:
            self._sync(trainer)
            self._paused += time.perf_counter() - self._val_started
            self._val_started = 0.0
