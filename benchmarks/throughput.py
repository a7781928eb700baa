"""Throughput of a bench trial against a bare PyTorch loop doing the same work, and of the data alone.

For each task, in one process, on one device:

- **bench**: `bench.run.train_trial` (a Lightning `Trainer.fit`), logging its curves to a real MLflow
  run through bench's batched writer, exactly as the engine runs a trial.
- **bare**: the same training written by hand: the task built from the same options and seed, the
  same model, AdamW with the same cosine schedule, the same batches, validation at the same steps,
  the loss read on the host as often as bench logs it, the same precision (autocast) and
  `torch.compile` when asked for.
- **pipeline**: the task's training loader alone, batches moved to the device, for as many batches.

Both trainings run `--steps` steps; repeats alternate the two so that drifting machine load hits both
alike. Printed per task: samples/s (tokens/s for language models), the ratio bench / bare of the whole
trial's wall time (median of the repeats: what bench costs over a hand-written loop, fixed costs
included), the pipeline's samples/s against what the training step consumes, and MFU on a GPU whose
peak Lightning knows (`n/a` on a CPU). Stand-in data (`bench standins`) is written under `--data-root`
when missing.

    OMP_NUM_THREADS=1 python benchmarks/throughput.py            # CPU: the tiny tasks of each family
    python benchmarks/throughput.py --accelerator gpu --precision bf16-mixed --compile \\
        --tasks c4_gpt_124m cifar10_resnet18 imagenet_vit_small imagenet_vit_small:stored_size=256 \\
        --steps 60 --repeats 2

A task may carry options after a colon, `name:key=value,key=value` (YAML values).

Targets on a CPU: bench / bare <= 1.03 for the tiny GPT and the tiny ResNet, pipeline >= 3x consumption.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
import yaml  # noqa: E402

from bench import distributed, records  # noqa: E402
from bench.catalog import OPTIMIZERS, SCHEDULES, TASKS  # noqa: E402
from bench.optimizers.schedules import lr_lambda  # noqa: E402
from bench.run import TrialSpec, train_trial  # noqa: E402
from bench.schema import FrozenMap, TrainerSpec  # noqa: E402
from bench.spec import OptimizerSpec, ScheduleSpec, TaskSpec  # noqa: E402
from bench.track import Tracker  # noqa: E402
from bench.workloads import standins  # noqa: E402

RATIO_TARGET = 1.03  # bench / bare, tiny GPT and tiny ResNet on a CPU
PIPELINE_TARGET = 3.0  # the loader's samples/s over the training step's
CPU_TASKS = ("pydocs_gpt_tiny", "c4_gpt_tiny", "cifar10_resnet_tiny", "digits_cnn", "imagenet_vit_tiny")
TARGETED = ("pydocs_gpt_tiny", "cifar10_resnet_tiny")


def task_options(spec: str) -> tuple[str, dict[str, Any]]:
    """`name` or `name:key=value,key=value` (YAML values) -> (name, the task's options)."""
    name, _, rest = spec.partition(":")
    given = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in rest.split(",") if kv)}
    entry = TASKS.get(name)
    return name, entry.options.model_validate({**entry.default_options, **given}).model_dump()


def trial_spec(label: str, args: argparse.Namespace) -> TrialSpec:
    name, options = task_options(label)
    entry, adamw = TASKS.get(name), OPTIMIZERS.get("adamw")
    steps = args.steps
    eval_every = args.eval_every or steps
    task = TaskSpec(
        name=name, entry=entry, steps=steps, batch_size=entry.batch_size, options=FrozenMap(options),
        metric=entry.metric, mode=entry.mode, target=entry.target, eval_every=eval_every,
    )  # fmt: skip
    optimizer = OptimizerSpec(
        label="adamw",
        entry=adamw,
        search_space=FrozenMap(),
        fixed=FrozenMap(),
        schedule=ScheduleSpec(SCHEDULES.get("cosine"), warmup=0.05),
    )
    trainer = TrainerSpec(accelerator=args.accelerator, precision=args.precision, compile=args.compile)
    return TrialSpec(
        task=task,
        optimizer=optimizer,
        hparams={"lr": 1e-3},
        seed=0,
        trainer=trainer,
        data_root=args.data_root,
    )


def device_of(spec: TrialSpec) -> torch.device:
    gpu = spec.trainer.accelerator in ("gpu", "cuda") or (
        spec.trainer.accelerator == "auto" and torch.cuda.is_available()
    )
    return torch.device("cuda" if gpu else "cpu")


def autocast(spec: TrialSpec, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    precision = spec.trainer.precision
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "32-true":
        raise SystemExit(f"the bare loop knows 32-true and bf16-mixed, not {precision}")
    return contextlib.nullcontext()


def build_task(spec: TrialSpec) -> Any:
    options = {**spec.task.options, "batch_size": spec.task.batch_size}
    return spec.task.entry.build(options, spec.seed, spec.data_root)


def moved(batch: Any, device: torch.device) -> Any:
    """A batch on `device`, as Lightning moves it (a no-op for device-resident data)."""
    if isinstance(batch, tuple | list):
        return type(batch)(t.to(device, non_blocking=True) for t in batch)
    return batch.to(device, non_blocking=True)


def passes(loader: Any, device: torch.device) -> Iterator[Any]:
    """Endless passes over one loader (a new iterator per pass, as Lightning's fit loop cycles a finite
    loader: the sampler's stream continues), each batch on `device`."""
    loader = distributed.on_device(loader, device)
    while True:
        for batch in loader:
            yield moved(batch, device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(spec: TrialSpec) -> tuple[float, float]:
    """The same trial written by hand: (seconds, final metric)."""
    device = device_of(spec)
    sync(device)
    started = time.perf_counter()
    torch.manual_seed(spec.seed)
    task = build_task(spec)
    model = task.build_model().to(device)
    opt_spec = spec.optimizer
    optimizer = opt_spec.entry.build(
        model, {**opt_spec.fixed, **spec.hparams}, decay_filter=opt_spec.decay_filter
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(opt_spec.schedule, spec.task.steps))
    forward = torch.compile(model) if spec.trainer.compile else model
    steps, every = spec.task.steps, spec.task.eval_every or spec.task.steps
    value = math.nan
    val_loader = distributed.on_device(task.val_loader(), device)

    def evaluate() -> float:
        model.eval()
        totals: dict[str, torch.Tensor] = {}
        count = 0
        with torch.no_grad(), autocast(spec, device):
            for batch in val_loader:
                sums, n = task.validation_sums(forward, moved(batch, device))
                for k, v in sums.items():
                    totals[k] = totals.get(k, 0.0) + v.double()
                count += n
        model.train()
        return float(totals[spec.task.metric.split("/", 1)[1]]) / count

    model.train()
    for step, batch in enumerate(passes(task.train_loader(), device), start=1):
        with autocast(spec, device):
            loss = task.training_loss(forward, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % spec.log_every_n_steps == 0:
            loss.item()  # bench reads the loss as often for its curve
        if step % every == 0 or step == steps:
            value = evaluate()
        if step == steps:
            break
    sync(device)
    return time.perf_counter() - started, value


def bench_trial(spec: TrialSpec, tracker: Tracker) -> tuple[float, float]:
    started = time.perf_counter()
    run_id = tracker.create_run("throughput", {records.KIND: "benchmark"})
    with tracker.metrics_writer(run_id) as log_metrics:
        result = train_trial(spec, log_metrics=log_metrics)
    tracker.finish(run_id)
    if result.outcome != "completed":
        raise SystemExit(f"{spec.task.name}: the bench trial ended {result.outcome}: {result.error}")
    return time.perf_counter() - started, result.value


def pipeline(spec: TrialSpec, batches: int) -> float:
    """Samples per second of the training loader alone (on the device), over `batches` batches."""
    device = device_of(spec)
    it = passes(build_task(spec).train_loader(), device)
    next(it)  # data read or decoded once, workers started, first batch assembled
    sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        next(it)
    sync(device)
    return batches * spec.task.batch_size / (time.perf_counter() - started)


def peak_flops(spec: TrialSpec) -> float | None:
    """The device's peak FLOP/s in the trial's compute dtype, as Lightning's ThroughputMonitor knows it."""
    device = device_of(spec)
    if device.type != "cuda":
        return None
    from lightning.fabric.utilities.throughput import get_available_flops

    dtype = torch.bfloat16 if spec.trainer.precision.startswith("bf16") else torch.float32
    return get_available_flops(device, dtype)


@dataclasses.dataclass
class Row:
    task: str
    unit: str
    bare_rate: float
    bench_rate: float
    ratio: float
    spread: tuple[float, float]
    pipeline_rate: float
    consumed: float
    mfu: float | None
    same_value: bool


def measure(name: str, args: argparse.Namespace, tracker: Tracker) -> Row:
    """`name`: a task, optionally with options (`imagenet_vit_tiny:stored_size=72`)."""
    spec = trial_spec(name, args)
    entry = spec.task.entry
    bare_loop(spec), bench_trial(spec, tracker)  # warm-up: lazy imports, decoded splits, compilation
    bare, ours, values = [], [], []
    for _ in range(args.repeats):
        b, bv = bare_loop(spec)
        o, ov = bench_trial(spec, tracker)
        bare.append(b)
        ours.append(o)
        values.append((bv, ov))
        print(f"  {name}: bare {b:7.2f}s   bench {o:7.2f}s   ratio {o / b:.3f}   "
              f"{spec.task.metric} bare {bv:.4f} bench {ov:.4f}", flush=True)  # fmt: skip
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    per_step = entry.tokens_per_step or spec.task.batch_size
    unit = "tokens/s" if entry.tokens_per_step else "samples/s"
    bare_rate = spec.task.steps * per_step / statistics.median(bare)
    bench_rate = spec.task.steps * per_step / statistics.median(ours)
    feed = pipeline(spec, args.pipeline_batches)
    consumed = spec.task.steps * spec.task.batch_size / statistics.median(bare)
    peak = peak_flops(spec)
    mfu = (
        entry.flops_per_step * spec.task.steps / statistics.median(ours) / peak
        if peak and entry.flops_per_step
        else None
    )
    return Row(
        task=name,
        unit=unit,
        bare_rate=bare_rate,
        bench_rate=bench_rate,
        ratio=statistics.median(ratios),
        spread=(min(ratios), max(ratios)),
        pipeline_rate=feed,
        consumed=consumed,
        mfu=mfu,
        same_value=all(math.isclose(bv, ov, rel_tol=1e-6) for bv, ov in values),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(CPU_TASKS))
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=50, help="0: only at the end")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pipeline-batches", type=int, default=200)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--data-root", type=Path, default=Path("data/standins"))
    args = p.parse_args()

    if standins.missing(args.data_root):
        print(f"writing the stand-ins under {args.data_root}/ (once)", flush=True)
        standins.write_standins(args.data_root)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{Path(tmp) / 'mlflow.db'}", "throughput")
        for name in args.tasks:
            rows.append(measure(name, args, tracker))

    device = device_of(trial_spec(args.tasks[0], args))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{where}, torch threads {torch.get_num_threads()}, {args.precision}"
          f"{', compiled' if args.compile else ''}; {args.steps} steps, eval every {args.eval_every or args.steps}, "
          f"median of {args.repeats} alternating repeats after a warm-up\n")  # fmt: skip
    print("| task | bare loop | bench | bench / bare (min-max) | same final metric | pipeline alone | "
          "pipeline / step's demand | MFU |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    ok = True
    for r in rows:
        mfu = f"{r.mfu:.2f}" if r.mfu is not None else "n/a (CPU)"
        print(f"| `{r.task}` | {r.bare_rate:,.0f} {r.unit} | {r.bench_rate:,.0f} {r.unit} | "
              f"{r.ratio:.3f} ({r.spread[0]:.3f}-{r.spread[1]:.3f}) | {'yes' if r.same_value else 'no'} | "
              f"{r.pipeline_rate:,.0f} samples/s | {r.pipeline_rate / r.consumed:.1f}x | {mfu} |")  # fmt: skip
        ok &= r.pipeline_rate / r.consumed >= PIPELINE_TARGET
        if r.task in TARGETED and device.type == "cpu":
            ok &= r.ratio <= RATIO_TARGET
    print(f"\ntargets: bench / bare <= {RATIO_TARGET} for {', '.join(TARGETED)} on a CPU; "
          f"pipeline >= {PIPELINE_TARGET}x the step's demand: {'met' if ok else 'NOT met'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
