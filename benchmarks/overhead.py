"""Wall-time overhead of a bench trial over a bare PyTorch loop doing the same work.

Both sides train the same task (default `pydocs_gpt_tiny`) from the same seed with the same optimizer
(AdamW, cosine schedule with warmup) for the same steps on the same batches, and validate on the same
held-out set at the same steps. The bench side is the real thing: `bench.run.train_trial` (a Lightning
`Trainer.fit`) logging curves to a real MLflow run through bench's batched MLflow writer.
Repeats alternate the two sides so drifting machine load hits both; the median ratio is printed.

    python benchmarks/overhead.py                 # target: ratio <= 1.05
    python benchmarks/overhead.py --task digits_cnn --steps 200 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from bench import records  # noqa: E402
from bench.catalog import OPTIMIZERS, SCHEDULES, TASKS  # noqa: E402
from bench.optimizers.schedules import lr_lambda  # noqa: E402
from bench.run import TrialSpec, train_trial  # noqa: E402
from bench.schema import FrozenMap  # noqa: E402
from bench.spec import OptimizerSpec, ScheduleSpec, TaskSpec  # noqa: E402
from bench.track import Tracker  # noqa: E402


def bare_loop(spec: TrialSpec) -> tuple[float, float]:
    """The same trial written by hand: (seconds, final metric)."""
    started = time.perf_counter()
    torch.manual_seed(spec.seed)
    task = spec.task.entry.build(
        {**spec.task.options, "batch_size": spec.task.batch_size}, spec.seed, spec.data_root
    )
    model = task.build_model()
    opt_spec = spec.optimizer
    optimizer = opt_spec.entry.build(
        model, {**opt_spec.fixed, **spec.hparams}, decay_filter=opt_spec.decay_filter
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(opt_spec.schedule, spec.task.steps))
    steps, every = spec.task.steps, spec.task.eval_every or spec.task.steps
    value = float("nan")

    def evaluate() -> float:
        model.eval()
        totals: dict[str, float] = {}
        count = 0
        with torch.no_grad():
            for batch in task.val_loader():
                sums, n = task.validation_sums(model, batch)
                for k, v in sums.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                count += n
        model.train()
        return totals[spec.task.metric.split("/", 1)[1]] / count

    step = 0
    model.train()
    while step < steps:
        for batch in task.train_loader():
            loss = task.training_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % spec.log_every_n_steps == 0:
                loss.item()  # bench reads the loss as often for its curve
            if step % every == 0 or step == steps:
                value = evaluate()
            if step == steps:
                break
    return time.perf_counter() - started, value


def bench_trial(spec: TrialSpec, tracker: Tracker) -> tuple[float, float]:
    started = time.perf_counter()
    run_id = tracker.create_run("overhead", {records.KIND: "benchmark"})
    with tracker.metrics_writer(run_id) as log_metrics:
        result = train_trial(spec, log_metrics=log_metrics)
    tracker.finish(run_id)
    assert result.outcome == "completed", result.error
    return time.perf_counter() - started, result.value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pydocs_gpt_tiny")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    entry, adamw = TASKS.get(args.task), OPTIMIZERS.get("adamw")
    task = TaskSpec(
        name=args.task, entry=entry, steps=args.steps, batch_size=entry.batch_size, options=FrozenMap(entry.default_options),
        metric=entry.metric, mode=entry.mode, target=entry.target, eval_every=args.eval_every,
    )  # fmt: skip
    optimizer = OptimizerSpec(
        label="adamw",
        entry=adamw,
        search_space=FrozenMap(),
        fixed=FrozenMap(),
        schedule=ScheduleSpec(SCHEDULES.get("cosine"), warmup=0.05),
    )
    spec = TrialSpec(task=task, optimizer=optimizer, hparams={"lr": 1e-3}, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{Path(tmp) / 'mlflow.db'}", "overhead")
        bare_loop(spec), bench_trial(spec, tracker)  # warm-up: lazy imports, allocator, data caches
        bare, ours = [], []
        for _ in range(args.repeats):
            b, bv = bare_loop(spec)
            o, ov = bench_trial(spec, tracker)
            bare.append(b)
            ours.append(o)
            print(
                f"bare {b:7.2f}s ({task.metric}={bv:.4f})   bench {o:7.2f}s ({task.metric}={ov:.4f})   ratio {o / b:.3f}"
            )
    ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
    print(
        f"\n{args.task}, {args.steps} steps, eval every {args.eval_every}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"median wall time: bare loop {statistics.median(bare):.2f}s, bench trial {statistics.median(ours):.2f}s"
    )
    print(f"overhead ratio (bench / bare, median of {args.repeats}): {ratio:.3f}   target <= 1.05")
    return 0


if __name__ == "__main__":
    sys.exit(main())
