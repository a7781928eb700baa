"""Seconds per training step of the tiny GPT with OpenMP's idle threads spinning or sleeping.

torch's intra-op threads are OpenMP threads. GNU OpenMP's default (`OMP_WAIT_POLICY` unset: active)
lets a thread that finished its share spin, holding its core; when other processes want the cores
too, the spinning thread and the thread that still has work take turns and a step slows down several
times. `bench` sets `OMP_WAIT_POLICY=PASSIVE` (idle threads sleep) before torch loads. This script
times `--steps` AdamW steps of `pydocs_gpt_tiny` (batch 16) in fresh processes, for each setting
(threads x policy), alternating the settings `--repeats` times, and prints the load average beside
each round: the ratio it shows depends on what else the machine runs.

    python benchmarks/openmp_wait.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

SETTINGS = (("1", "PASSIVE"), ("2", "ACTIVE"), ("2", "PASSIVE"))
CHILD = """
import sys, time, torch
from itertools import islice
from bench.catalog import TASKS
entry = TASKS.get("pydocs_gpt_tiny")
task = entry.build({**entry.default_options, "batch_size": 16}, 0, "data")
torch.manual_seed(0)
model = task.build_model()
opt = torch.optim.AdamW(model.parameters(), 1e-3)
warm, steps = 5, int(sys.argv[1])
for i, batch in enumerate(islice(iter(task.train_loader()), warm + steps)):
    if i == warm:
        started = time.perf_counter()
    loss = task.training_loss(model, batch)
    opt.zero_grad()
    loss.backward()
    opt.step()
print((time.perf_counter() - started) / steps)
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    times: dict[tuple[str, str], list[float]] = {s: [] for s in SETTINGS}
    for _ in range(args.repeats):
        print(f"load average {os.getloadavg()[0]:.2f}")
        for threads, policy in SETTINGS:
            env = {**os.environ, "OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": policy, "HF_HUB_OFFLINE": "1"}
            run = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.steps)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = float(run.stdout.strip().splitlines()[-1])
            times[(threads, policy)].append(seconds)
            print(f"  {threads} thread(s), {policy:7s}: {seconds:.3f} s/step")
    print(f"\nmedian s/step over {args.repeats} rounds ({os.cpu_count()} cores):")
    for (threads, policy), values in times.items():
        print(f"  {threads} thread(s), OMP_WAIT_POLICY={policy}: {statistics.median(values):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
