"""One trial: a LightningModule around a task, an optimizer and a schedule, trained by Lightning.

With `bench.distributed` this is the runner layer, the only code that imports Lightning.
`train_trial(spec)` builds the task for the trial's seed, the model (recording the parameter roles the
task declares, `Task.param_roles`), the optimizer (from its registry entry) and the schedule, runs
`Trainer.fit` for `spec.task.steps` steps with validation every `eval_every` steps and at the end, and
returns a `TrialResult`. Every way a trial can end is an outcome, never an exception:

- completed: ran its steps;  diverged: NaN/inf loss, or train loss above `divergence_factor` times its
  first value (noticed two steps late on a GPU, whose loss is read back without waiting: `bench.monitor`),
  or a non-finite validation metric;  oom: out of memory;  timeout: hit its wall-clock cap;
  pruned: the caller's `on_eval` said stop;  error: anything else, with the traceback in `error`.
  Not outcomes, raised instead: Ctrl-C/SIGTERM, and failures that are not the trial's (a full disk, or
  a `bench.faults.RecordError` from a callable that records; see `bench.faults.not_the_trials`).

What crosses into the runner is plain callables, so neither the tuner nor the tracker is imported here:

    result = train_trial(
        spec,
        log_metrics=writer,     # (metrics: dict[str, float], step: int) -> None: curves, throughput
        on_eval=pruner,         # (step, value of the task metric) -> True to stop the trial as pruned
        on_step=display.step,   # (optimizer steps done) -> None: progress
    )

Every trial also measures what its optimizer costs (`StepClock`): the mean step time and update time
after the first steps, and the bytes of the optimizer state; `bench check` gates them.
A trial can also be one segment of a longer run (`TrialSpec.segment`, used by `bench.branches` for the
horizons of a WSD schedule): it resumes from a Lightning checkpoint (`trainer.fit(ckpt_path=...,
weights_only=True)`), stops at a given step, and saves Lightning checkpoints at given steps. Such a
trial reads its batches through `ResumableLoader`, a stream Lightning checkpoints with the rest (the
batches consumed), and its checkpoints also hold the torch RNG state and what the module has recorded
so far (curves, time to target), so a resumed segment continues exactly where the saved one stood.

Optimizer special needs are read from the entry's flags: schedule-free optimizers are switched with
`.train()`/`.eval()` around evaluation and run without a schedule; `create_graph` optimizers (Sophia-H)
get `loss.backward(create_graph=True)`; `closure` optimizers (SAM) train under Lightning's manual
optimization: backward, then `step(closure)` with a closure that recomputes the loss and its gradient on
the same batch, then the schedule's step.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bench.distributed import on_device, per_device_batch, shard_loader
from bench.faults import failpoint, not_the_trials
from bench.monitor import LossReadback, StepThroughput, readback_lag
from bench.optimizers.param_groups import remember
from bench.optimizers.schedules import lr_lambda, needs_schedule
from bench.outcomes import OUTCOMES as OUTCOMES  # re-exported: the names `train_trial` returns
from bench.plan import step_scale, tokens_per_step
from bench.spec import OptimizerSpec, TaskSpec, TrainerSpec
from bench.tasks.base import Task

for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Lightning warnings that say nothing about a trial, silenced while it trains (`_quiet`).
QUIET = (
    r".*does not have many workers.*",
    r".*`isinstance\(treespec, LeafSpec\)`.*",
    # Validation metrics are reduced over ranks by hand (sums and counts), not by `sync_dist`.
    r".*when logging on epoch level in distributed setting.*",
    # A diverged trial skips its step by returning None on purpose; the outcome says so.
    r".*`training_step` returned `None`.*",
    # heavyball notes that a scheduled lr is "experimental" unless multi_tensor=True, which is its default.
    r".*Learning rate changed between steps.*",
    # Sophia's backward(create_graph=True): the runner drops the gradients (set_to_none) every step.
    r".*Using backward\(\) with create_graph=True.*",
    # A small task's epoch is shorter than the logging interval; bench logs by global step anyway.
    r".*smaller than the logging interval.*",
)

LogMetrics = Callable[[dict[str, float], int], None]
OnEval = Callable[[int, float], bool]
OnStep = Callable[[int], None]


@dataclass(frozen=True)
class Segment:
    """Part of a longer run: resume from the Lightning checkpoint `resume_from`, stop after `stop_at`
    optimizer steps (default: the task's steps), and save a checkpoint at each step of `checkpoints`
    (step -> path). Steps count from the start of the whole run."""

    resume_from: Path | None = None
    stop_at: int | None = None
    checkpoints: Mapping[int, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs. `hparams` are search names (see bench.space.to_kwargs)."""

    task: TaskSpec
    optimizer: OptimizerSpec
    hparams: Mapping[str, Any]
    seed: int
    trainer: TrainerSpec = field(default_factory=TrainerSpec)
    data_root: Path = Path("data")
    divergence_factor: float = 3.0
    time_budget_s: float | None = None
    log_every_n_steps: int = 10
    segment: Segment | None = None  # one part of a longer run (horizons: a trunk or a cooldown branch)

    @property
    def stop_at(self) -> int:
        """The optimizer step this trial trains to."""
        return self.segment.stop_at if self.segment and self.segment.stop_at is not None else self.task.steps


@dataclass
class TrialResult:
    outcome: str
    value: float  # final value of the task metric (NaN when none was measured)
    metrics: dict[str, float]  # final validation metrics, e.g. {"val/loss": ..., "val/error": ...}
    steps: int
    time_s: float
    steps_to_target: float = math.nan
    seconds_to_target: float = math.nan
    tokens_to_target: float = math.nan
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # "train", "val", ...
    error: str | None = None
    step_time_s: float = math.nan  # StepClock: mean seconds per optimizer step after the first steps
    update_time_s: float = math.nan  # of which the optimizer's update
    state_bytes: float = math.nan  # bytes of the optimizer state after training (this process)
    eval_seconds: dict[int, float] = field(default_factory=dict)  # step -> training seconds at its evaluation

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"


class BenchModule(L.LightningModule):
    """Trains `model` on `task` with the optimizer built from `optimizer`; records curves. `on_eval`
    hears the task metric after every evaluation and stops the trial (pruned) by returning True;
    `on_step` hears the optimizer steps done."""

    def __init__(
        self, task: Task, spec: TrialSpec, on_eval: OnEval | None = None, on_step: OnStep | None = None
    ):
        super().__init__()
        self.task, self.spec = task, spec
        self.on_eval, self.on_step = on_eval, on_step
        self.model = task.build_model()
        roles = task.param_roles(self.model)
        # before FSDP flattens the parameters (configure_optimizers runs on the wrapped model)
        remember(self.model, head=roles.head, embedding=roles.embedding)
        entry = spec.optimizer.entry
        self.schedule_free = "schedule_free" in entry.flags
        self.create_graph = "create_graph" in entry.flags
        # A closure optimizer needs its first gradient before `step(closure)`: Lightning's automatic
        # optimization computes it inside the closure, so these run under manual optimization.
        self.automatic_optimization = "closure" not in entry.flags
        self.ema: AveragedModel | None = None
        if spec.optimizer.ema:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(spec.optimizer.ema))
            self.ema.requires_grad_(False)
        self.first_loss: float | None = None
        self.losses = LossReadback(lag=0)  # replaced in on_train_start, once the device is known
        self.diverged_at: int | None = None
        self.pruned_at: int | None = None
        self.curves: dict[str, list[tuple[int, float]]] = {"train": [], "val": []}
        self.final: dict[str, float] = {}
        self.last_val_step = -1
        self.started = time.perf_counter()
        self.to_target: dict[str, float] = {}
        self._sums: dict[str, dict[str, torch.Tensor]] = {}
        self._count: dict[str, int] = {}
        self.stream: ResumableLoader | None = None  # the checkpointable batch stream of a segment
        self.eval_seconds: dict[int, float] = {}
        self.seconds_before = 0.0  # training seconds of the segments before this one (from the checkpoint)
        segment = spec.segment
        self.checkpoint_at = CheckpointAt(segment.checkpoints) if segment and segment.checkpoints else None

    @property
    def flops_per_batch(self) -> float | None:
        """Forward+backward FLOPs of one micro-batch on one device, for Lightning's ThroughputMonitor
        (its `device/mfu` on GPUs whose peak it knows). None when the task declares no FLOPs."""
        per_step = self.spec.task.entry.flops_per_step
        if per_step is None:
            return None
        world = self.trainer.world_size if self._trainer is not None else 1
        return per_step * step_scale(self.spec.task) / world

    # -- optimization ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        opt_spec = self.spec.optimizer
        sampled = {**opt_spec.fixed, **self.spec.hparams}
        optimizer = opt_spec.entry.build(self.model, sampled, decay_filter=opt_spec.decay_filter)
        if self.schedule_free or not needs_schedule(opt_spec.entry):
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(opt_spec.schedule, self.spec.task.steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _set_optimizer_mode(self, train: bool) -> None:
        if not self.schedule_free or self._trainer is None:
            return
        for opt in self.trainer.optimizers:
            getattr(opt, "train" if train else "eval")()

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if self.create_graph:
            loss.backward(create_graph=True)
        else:
            super().backward(loss, *args, **kwargs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.create_graph:
            # Hessian-vector products differentiate the backward pass; the fused attention kernels
            # have no double backward, the math one does.
            with sdpa_kernel(SDPBackend.MATH):
                loss = self.task.training_loss(self.model, batch)
        else:
            loss = self.task.training_loss(self.model, batch)
        # The mean over all ranks (the global batch's loss): every rank takes the same divergence decision
        # (one rank skipping its backward alone would hang DDP) and logs what a single process would.
        # Read back on the host without waiting for the device (bench.monitor.LossReadback): at once on
        # a CPU, two steps late on a GPU.
        mean = self.trainer.strategy.reduce(loss.detach().float().clone(), reduce_op="mean")
        for step, value in self.losses.push(self.global_step, mean):
            self._heard_loss(step, value)
        if self.diverged_at is not None:
            self.trainer.should_stop = True
            return None  # skip this step: Lightning performs no backward and no optimizer step
        if not self.automatic_optimization:
            self._closure_step(loss, batch)
            return loss.detach()
        return loss

    def _heard_loss(self, step: int, value: float) -> None:
        """The train loss of `step` arrived on the host: check divergence, record the curve."""
        if self.diverged_at is not None:
            return
        if self.first_loss is None:
            self.first_loss = value
        if not math.isfinite(value) or value > self.spec.divergence_factor * max(self.first_loss, 1e-8):
            self.diverged_at = step
            return
        if step % self.spec.log_every_n_steps == 0:
            self.curves["train"].append((step, value))
            for logger in self.trainer.loggers:
                logger.log_metrics({"train/loss": value}, step=step)

    def _closure_step(self, loss: torch.Tensor, batch: Any) -> None:
        """One optimizer step of a `closure` optimizer (manual optimization; the global step counts it)."""
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            again = self.task.training_loss(self.model, batch)
            self.manual_backward(again)
            return again

        opt.step(closure=closure)
        opt.zero_grad()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def on_train_start(self) -> None:
        self.started = time.perf_counter() - self.seconds_before
        self.losses = LossReadback(readback_lag(self.device))
        self._set_optimizer_mode(True)

    def on_train_end(self) -> None:
        for step, value in self.losses.flush():  # the last steps' losses, still on their way on a GPU
            self._heard_loss(step, value)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.stream is not None:
            self.stream.consumed += 1  # Lightning prefetches: the stream's own count runs ahead

    # -- checkpoints (segments of a longer run) ----------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What a resumed segment needs besides Lightning's own state: the RNG, the divergence reference,
        the curves and time to target so far, the training seconds. Tensors and plain data only, so
        the checkpoint loads with `weights_only=True`."""
        for step, value in self.losses.flush():  # losses still on their way (a GPU) belong to this segment
            self._heard_loss(step, value)
        checkpoint["bench"] = {
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "first_loss": self.first_loss,
            "curves": {k: [list(p) for p in v] for k, v in self.curves.items()},
            "to_target": dict(self.to_target),
            "eval_seconds": dict(self.eval_seconds),
            "seconds": time.perf_counter() - self.started,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("bench", {})
        if "rng" in state:
            torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.first_loss = state.get("first_loss")
        self.curves = {k: [(int(a), float(b)) for a, b in v] for k, v in state.get("curves", {}).items()}
        self.to_target = dict(state.get("to_target", {}))
        self.eval_seconds = {int(k): float(v) for k, v in state.get("eval_seconds", {}).items()}
        self.seconds_before = float(state.get("seconds", 0.0))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None and outputs is not None:
            self.ema.update_parameters(self.model)
        failpoint("trial.step")
        if self.checkpoint_at is not None:
            self.checkpoint_at(self.trainer)
        if self.on_step is not None:
            self.on_step(self.global_step)

    # -- evaluation -----------------------------------------------------------------------------
    def on_validation_model_eval(self) -> None:
        super().on_validation_model_eval()
        self._set_optimizer_mode(False)

    def on_validation_model_train(self) -> None:
        super().on_validation_model_train()
        self._set_optimizer_mode(True)

    def on_validation_epoch_start(self) -> None:
        self._sums, self._count = {}, {}

    def _accumulate(self, prefix: str, model: nn.Module, batch: Any) -> None:
        sums, count = self.task.validation_sums(model, batch)
        acc = self._sums.setdefault(prefix, {})
        for name, value in sums.items():
            acc[name] = acc.get(name, 0.0) + value.detach().double()
        self._count[prefix] = self._count.get(prefix, 0) + int(count)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._accumulate("val", self.model, batch)
        if self.ema is not None:
            self._accumulate("val_ema", self.ema.module, batch)

    def on_validation_epoch_end(self) -> None:
        metrics: dict[str, float] = {}
        for prefix, sums in self._sums.items():
            for name, total in sums.items():
                total = self.trainer.strategy.reduce(total, reduce_op="sum")
                count = self.trainer.strategy.reduce(
                    torch.tensor(float(self._count[prefix]), device=total.device), reduce_op="sum"
                )
                metrics[f"{prefix}/{name}"] = float(total / count)
        if "val/loss" in metrics and "val/ppl" not in metrics and self.spec.task.entry.family == "gpt":
            metrics["val/ppl"] = math.exp(min(metrics["val/loss"], 50.0))
        step = self.global_step
        self.final, self.last_val_step = metrics, step
        self.eval_seconds[step] = time.perf_counter() - self.started
        value = metrics.get(self.spec.task.metric, math.nan)
        self.curves["val"].append((step, value))
        for name, v in metrics.items():
            if name != self.spec.task.metric:
                self.curves.setdefault(name, []).append((step, v))
        self.log_dict(metrics, prog_bar=True, sync_dist=False)
        if not math.isfinite(value):
            self.diverged_at = step
            self.trainer.should_stop = True
            return
        target = self.spec.task.target
        reached = target is not None and (
            value <= target if self.spec.task.mode == "min" else value >= target
        )
        if reached and not self.to_target:
            tokens = tokens_per_step(self.spec.task, self.spec.trainer.accumulate_grad_batches)
            self.to_target = {
                "steps": float(step),
                "seconds": time.perf_counter() - self.started,
                "tokens": float(step * tokens) if tokens else math.nan,
            }
        if self.on_eval is not None and not self.trainer.sanity_checking and self.on_eval(step, value):
            self.pruned_at = step
            self.trainer.should_stop = True

    # -- data -----------------------------------------------------------------------------------
    # Multi-process trials: each rank keeps its interleaved share of the task's own stream, so the ranks'
    # batches together are the single-process batch (see bench.distributed.shard_loader). A loader with
    # `to(device)` keeps its data on the training device (see bench.tasks.base.Task.train_loader).
    def train_dataloader(self) -> Any:
        loader = on_device(one_loader(self.task.train_loader()), self.device)
        loader = shard_loader(loader, self.global_rank, self.trainer.world_size, train=True)
        if self.spec.segment is not None:
            self.stream = ResumableLoader(loader)
            return self.stream
        return loader

    def val_dataloader(self) -> Any:
        loader = on_device(one_loader(self.task.val_loader()), self.device)
        return shard_loader(loader, self.global_rank, self.trainer.world_size, train=False)


class Batches:
    """A task's list (or tuple, or mapping) of batches as one loader: Lightning reads a bare list as
    several loaders. Sized when the batches are."""

    def __init__(self, batches: Iterable[Any]):
        self.batches = batches

    def __iter__(self) -> Iterator[Any]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def one_loader(batches: Iterable[Any]) -> Any:
    """What a task's `train_loader`/`val_loader` returned, as a single loader for Lightning."""
    return Batches(batches) if isinstance(batches, list | tuple | Mapping) else batches


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(exc).lower()


class CallableLogger(Logger):
    """Lightning's logger interface around a plain `log_metrics(metrics, step)`: whatever Lightning logs
    (the module's curves, the throughput monitor's figures, `epoch`) goes to the callable."""

    def __init__(self, log_metrics: LogMetrics):
        super().__init__()
        self._log_metrics = log_metrics

    @property
    def name(self) -> str:
        return "bench"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._log_metrics(dict(metrics), step or 0)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the caller records the trial's configuration itself


def build_trainer(spec: TrialSpec, callbacks: Sequence[Callback], logger: Logger | None) -> L.Trainer:
    t = spec.trainer
    steps = spec.stop_at
    eval_every = spec.task.eval_every or spec.task.steps
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches,
        max_steps=steps,
        max_epochs=-1,
        max_time=timedelta(seconds=spec.time_budget_s) if spec.time_budget_s else None,
        val_check_interval=min(eval_every, spec.task.steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=spec.log_every_n_steps,
        logger=logger if logger is not None else False,
        callbacks=[*callbacks, throughput_monitor(steps, spec.log_every_n_steps)],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,  # progress is the caller's (on_step)
        deterministic=False,
        use_distributed_sampler=False,  # BenchModule shards the loaders itself
        default_root_dir=str(Path(".bench") / "lightning"),
    )


# -- the cost of a step ---------------------------------------------------------------------------------
class StepClock(Callback):
    """Times the optimizer steps of a trial and counts the bytes of its optimizer state.

    - step time: between the ends of consecutive optimizer steps (data, forward, backward and update:
      what one waits for per step); an interval that contains a validation run is left out;
    - update time: from the end of the backward pass (`on_before_optimizer_step`, after all accumulated
      micro-batches) to the end of the step (`on_train_batch_end`): gradient clipping, the optimizer's
      update and the lr scheduler's step.

    Both are means over every step after the first `skip` of the steps this fit trains (10% of them, at
    least 3: compilation, allocator and cache warm-up), counted from the step it starts at: a segment
    resumed from a checkpoint at step k trains steps k+1..`stop_at`, and its own first steps warm up. A
    mean, not a median, so that work an optimizer does every k steps (a preconditioner update) is counted
    at its amortised cost, and every step rather than a sample, so such work cannot alias with a sampling
    stride. Intervals are folded into running sums as they
    complete, so a long run keeps at most about `max_pending` of them. On CUDA they are read from CUDA
    events recorded in the stream, folded once the GPU has passed them (`Event.query`), so nothing
    synchronises per step; elsewhere from `time.perf_counter`.

    State bytes (`optimizer_state_bytes`) are counted when training ends, on this process: what the
    optimizer adds to each device's memory (under FSDP, its shard).
    """

    def __init__(self, stop_at: int, max_pending: int = 1000):
        """`stop_at`: the optimizer step training stops after (counted from the start of the whole run)."""
        self.stop_at = stop_at
        self.first = 0  # the step training starts from: set by `on_train_start` (a resumed checkpoint's)
        self.skip = self._skip(stop_at)
        self.max_pending = max_pending
        self.cuda = False
        self.pending: list[tuple[str, Any, Any]] = []  # ("step" | "update", start, end) not yet folded
        self.seconds = {"step": 0.0, "update": 0.0}
        self.timed = {"step": 0, "update": 0}
        self.state_bytes = math.nan
        self._update_start: Any = None
        self._last_end: Any = None
        self._stepped = self._validated = False

    @staticmethod
    def _skip(steps: int) -> int:
        """How many of `steps` trained steps warm up and are not timed."""
        return min(max(3, steps // 10), max(steps - 2, 0))

    def _mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _fold(self, wait: bool) -> None:
        """Add the pending intervals to the sums: on CUDA those whose end the GPU has passed (all of
        them after a synchronisation when `wait`), events completing in the order they were recorded."""
        if self.cuda and wait:
            torch.cuda.synchronize()
        done = 0
        for kind, start, end in self.pending:
            if self.cuda:
                if not wait and not end.query():
                    break
                seconds = start.elapsed_time(end) / 1000.0
            else:
                seconds = end - start
            self.seconds[kind] += seconds
            self.timed[kind] += 1
            done += 1
        del self.pending[:done]

    def _add(self, kind: str, start: Any, end: Any) -> None:
        self.pending.append((kind, start, end))
        if not self.cuda or len(self.pending) >= self.max_pending:
            self._fold(wait=False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.cuda = pl_module.device.type == "cuda"
        # Lightning restores a checkpoint's loops before this hook: global_step is where this fit starts
        self.first = trainer.global_step
        self.skip = self._skip(self.stop_at - self.first)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        self._stepped = True
        self._update_start = self._mark() if trainer.global_step - self.first + 1 > self.skip else None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._stepped:  # a micro-batch of an accumulation
            return
        self._stepped = False
        done = trainer.global_step - self.first  # steps this fit trained
        if done < self.skip:
            return
        end = self._mark()
        if done > self.skip:
            if self._update_start is not None:
                self._add("update", self._update_start, end)
            if self._last_end is not None and not self._validated:
                self._add("step", self._last_end, end)
        self._update_start, self._last_end, self._validated = None, end, False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state_bytes = float(optimizer_state_bytes(trainer.optimizers))

    def _mean(self, kind: str) -> float:
        return self.seconds[kind] / self.timed[kind] if self.timed[kind] else math.nan

    def result(self) -> dict[str, float]:
        """step_time_s, update_time_s (NaN when no step was timed) and state_bytes."""
        try:
            self._fold(wait=True)
        except RuntimeError:  # the device failed (the trial's outcome says so): nothing more to time
            self.pending.clear()
            return {"step_time_s": math.nan, "update_time_s": math.nan, "state_bytes": self.state_bytes}
        return {
            "step_time_s": self._mean("step"),
            "update_time_s": self._mean("update"),
            "state_bytes": self.state_bytes,
        }


def optimizer_state_bytes(optimizers: Sequence[Any]) -> int:
    """Bytes of the tensors an optimizer keeps in `optimizer.state` (nested lists, tuples and dicts
    included; a wrapped `.optimizer`/`.base_optimizer` too). Each storage counts once, and storages of
    the parameters themselves count not at all: this is the memory the optimizer adds."""
    seen: set[tuple[Any, int]] = set()
    for opt in optimizers:
        for group in getattr(opt, "param_groups", ()):
            seen |= {_storage_key(p) for p in group["params"] if isinstance(p, torch.Tensor)}
    total = 0

    def visit(value: Any) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            key = _storage_key(value)
            if key not in seen:
                seen.add(key)
                total += _storage_bytes(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                visit(v)
        elif isinstance(value, list | tuple):
            for v in value:
                visit(v)

    stack = list(optimizers)
    while stack:
        opt = stack.pop()
        visit(getattr(opt, "state", {}))
        stack += [
            getattr(opt, a)
            for a in ("optimizer", "base_optimizer")
            if isinstance(getattr(opt, a, None), torch.optim.Optimizer)
        ]
    return total


def _storage_key(t: torch.Tensor) -> tuple[Any, int]:
    try:
        return (str(t.device), t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # tensor subclasses without a plain storage
        return (str(t.device), id(t))


def _storage_bytes(t: torch.Tensor) -> int:
    try:
        return int(t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()


def throughput_monitor(steps: int, every: int) -> StepThroughput:
    """Lightning's throughput figures (`train/device/samples_per_sec`, `train/device/mfu` on GPUs...)
    timed every `every` steps (`bench.monitor.StepThroughput`), over a sliding window of about a fifth
    of the run (at most 100 steps), logged with the curves."""
    return StepThroughput(_batch_size, every=every, window=min(100, steps // 5) // every)


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, tuple | list) else batch
    return len(first)


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        yield


def train_trial(
    spec: TrialSpec,
    *,
    log_metrics: LogMetrics | None = None,
    on_eval: OnEval | None = None,
    on_step: OnStep | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrialResult:
    """Train one trial and return its result (see the module docstring for the callables)."""
    started = time.perf_counter()
    module: BenchModule | None = None
    trainer: L.Trainer | None = None
    outcome, error = "completed", None
    clock = StepClock(spec.stop_at)
    with _quiet():
        try:
            L.seed_everything(spec.seed, workers=True, verbose=False)
            # The suite's batch_size is global; each process of a multi-process trial loads its share.
            options = {**spec.task.options, "batch_size": per_device_batch(spec.task.batch_size)}
            task = spec.task.entry.build(options, spec.seed, spec.data_root)
            module = BenchModule(task, spec, on_eval=on_eval, on_step=on_step)
            if spec.trainer.compile:
                module.model = torch.compile(module.model)
            logger = CallableLogger(log_metrics) if log_metrics is not None else None
            trainer = build_trainer(spec, [*callbacks, clock], logger)
            resume = spec.segment.resume_from if spec.segment is not None else None
            trainer.fit(module, ckpt_path=resume, weights_only=True if resume is not None else None)
            if module.diverged_at is not None:
                outcome = "diverged"
            elif module.pruned_at is not None:
                outcome = "pruned"
            elif trainer.global_step < spec.stop_at:
                outcome = "timeout" if spec.time_budget_s else "error"
                if outcome == "error":
                    error = f"training stopped early at step {trainer.global_step} of {spec.stop_at}"
            # A segment that stops before the task's end (a trunk) is evaluated on the task's schedule only.
            final_eval = spec.stop_at == spec.task.steps or outcome == "timeout"
            if (
                module.last_val_step != trainer.global_step
                and outcome not in ("diverged", "pruned")
                and final_eval
            ):
                trainer.validate(module, verbose=False)
                if module.diverged_at is not None:
                    outcome = "diverged"
                elif module.pruned_at is not None:  # `on_eval` hears the final evaluation too
                    outcome = "pruned"
        except BaseException as exc:  # every ending is an outcome; Ctrl-C and SIGTERM stop the suite
            # ... and so does a failure that is not the trial's: a full disk, a callable that records
            if isinstance(exc, KeyboardInterrupt | SystemExit) or not_the_trials(exc):
                raise
            if _is_oom(exc):
                outcome, error = "oom", f"{type(exc).__name__}: {exc}"
            else:
                outcome, error = "error", traceback.format_exc()
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    final = module.final if module is not None else {}
    value = final.get(spec.task.metric, math.nan)
    to_target = module.to_target if module is not None else {}
    return TrialResult(
        outcome=outcome,
        value=value,
        metrics=dict(final),
        steps=trainer.global_step if trainer is not None else 0,
        time_s=time.perf_counter() - started,
        steps_to_target=to_target.get("steps", math.nan),
        seconds_to_target=to_target.get("seconds", math.nan),
        tokens_to_target=to_target.get("tokens", math.nan),
        curves=module.curves if module is not None else {},
        error=error,
        **clock.result(),
        eval_seconds=dict(module.eval_seconds) if module is not None else {},
    )


# ---------------------------------------------------------------------------------------------------
# Segments of a longer run: a checkpointable batch stream and checkpoints at given steps


class ResumableLoader:
    """The task's training batches as one endless stream (epoch after epoch, as Lightning would iterate
    the loader) that Lightning checkpoints with the rest of the run: `state_dict()` holds the batches
    consumed (counted by the module as each batch starts, since Lightning fetches ahead), and after
    `load_state_dict` the stream replays the loader to that point. Replaying reads and drops the batches
    in between: data loading, no training. A loader that is itself stateful would not need this."""

    def __init__(self, loader: Any):
        self.loader = loader
        self.consumed = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        seen = 0
        while True:
            empty = True
            for batch in self.loader:
                empty = False
                seen += 1
                if seen > skip:
                    yield batch
            if empty:
                raise RuntimeError("the task's training loader yielded no batch")

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.consumed = self._skip = int(state["consumed"])


class CheckpointAt:
    """Save a Lightning checkpoint (`trainer.save_checkpoint`: model, optimizer, schedulers, loops, the
    batch stream, and the module's own state) after each listed optimizer step. The module calls it at
    the end of its `on_train_batch_end`, after the EMA update (callbacks' hooks run before the module's,
    which would save the EMA one step behind). Written to a temporary file and renamed, so a kill never
    leaves half a checkpoint under the final name."""

    def __init__(self, at: Mapping[int, Path]):
        self.at = {int(k): Path(v) for k, v in at.items()}

    def __call__(self, trainer: L.Trainer) -> None:
        path = self.at.get(trainer.global_step)
        if path is None or path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, path)
