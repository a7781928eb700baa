"""Multi-process trials (torchrun, srun): rank 0 leads, the other ranks follow.

Every rank runs the same `bench run suite.yaml`. Which launcher started the process, and this process's
rank, is what Lightning's own cluster environments say (`lightning.fabric.plugins.environments`:
`TorchElasticEnvironment` for torchrun, `SLURMEnvironment` for a task of `srun`, detected by their
`detect()` in Lightning's order, torchrun first, so `bench` and the Trainer never disagree). `setup()`
joins the processes into one `torch.distributed` process group (gloo on CPU, NCCL for GPU training) at
the environment's rendezvous (`MASTER_ADDR`/`MASTER_PORT`; under SLURM derived from the node list and the
job id, variables already set win), which Lightning's `ddp`/`fsdp` strategies then reuse
(`_init_dist_connection` returns early when a group exists). Rank 0 alone talks to Optuna and MLflow:
before each trial it `announce`s `{"study", "hparams", "seed"}`, the other ranks `follow` (train that
trial with no logger and record nothing), and `announce(None)` releases them at the end. Announcements
travel on a separate gloo group with a long timeout, because rank 0 may wait a long time between trials
(for other workers of a shared study) while the followers sit in `follow`.

Batch size: a task's `batch_size` is the *global* batch of one forward/backward, summed over processes,
so adding devices never changes what a trial computes; each process loads `batch_size / world_size`
examples (`per_device_batch`). `trainer.accumulate_grad_batches` multiplies it: one optimizer step sees
`batch_size * accumulate_grad_batches` examples (`global_batch`). `shard_loader` gives each process its
interleaved share of the task's own stream, so the ranks' batches at step k together are exactly the
single-process batch k: a data-parallel trial reproduces the single-process run (up to float
summation order). Pruning is off in multi-process trials (the engine hands the pruner to rank 0 only).

What needs no launch (FSDP with an optimizer whose entry lacks the `fsdp` flag, a batch that does not
split over `trainer.devices * trainer.num_nodes`) is checked when the suite is resolved
(`bench.resolve`). `check(suite, workers)` checks the launch, on every rank before any process group
exists (so no rank hangs): GPUs this machine does not have (`present`), a multi-device trainer without
an external launcher, a process count that does not match `devices * num_nodes`, a batch that does not split over the processes started,
`--workers` under a launcher. Every problem is reported at once.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import (
    ClusterEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from torch.utils.data import DataLoader, IterableDataset, Sampler

from bench.resolve import check_batches, processes
from bench.spec import Problems, Suite

# Followers block in `follow` while rank 0 records a trial, opens studies, or waits for other workers'
# trials to finish; that can take hours, and a launcher (torchrun, srun -K) tears the job down anyway
# when a rank dies, so the control channel's timeout is a week rather than torch's 30 minutes.
CONTROL_TIMEOUT = timedelta(days=7)

# Lightning's order (its accelerator connector): torchrun wins inside a SLURM allocation.
LAUNCHERS: tuple[tuple[str, type[ClusterEnvironment]], ...] = (
    ("torchrun", TorchElasticEnvironment),
    ("slurm", SLURMEnvironment),
)

_control: Any = None  # the gloo group announcements travel on


def environment() -> tuple[str, ClusterEnvironment] | None:
    """The launcher that started this process and Lightning's environment for it, or None (a plain
    process). An interactive SLURM shell (job name `bash`/`interactive`) counts as no launcher."""
    for name, env in LAUNCHERS:
        if env.detect():
            return name, env()
    return None


def launcher() -> str | None:
    """`torchrun`, `slurm` (a task of `srun`) or None (a plain process)."""
    found = environment()
    return found[0] if found else None


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    found = environment()
    return found[1].global_rank() if found else 0


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    found = environment()
    return found[1].world_size() if found else 1


def local_rank() -> int:
    found = environment()
    return found[1].local_rank() if found else 0


def is_leader() -> bool:
    return rank() == 0


def rendezvous() -> tuple[str, int]:
    """(MASTER_ADDR, MASTER_PORT) of this launch, as Lightning's environment derives them (and sets them
    in the environment): under SLURM the first host of the node list and 15000 + the job id's last four
    digits, unless MASTER_ADDR/MASTER_PORT are set."""
    found = environment()
    if found is None:
        return os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "12910"))
    return found[1].main_address, found[1].main_port


def backend(accelerator: str = "auto") -> str:
    """NCCL when the trial trains on GPUs, gloo on CPU."""
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "nccl" if gpu and torch.cuda.is_available() else "gloo"


def setup(accelerator: str = "auto") -> None:
    """Initialise the process group when launched with several processes (no-op otherwise)."""
    global _control
    found = environment()
    if found is None or _control is not None:
        return
    _, env = found
    n = env.world_size()
    if n == 1:
        return
    # torch's env:// rendezvous reads these; torchrun sets them all, under srun they are derived by
    # Lightning's SLURMEnvironment (the same values the Trainer will use) from SLURM's variables.
    os.environ.setdefault("MASTER_ADDR", env.main_address)
    os.environ.setdefault("MASTER_PORT", str(env.main_port))
    os.environ.setdefault("RANK", str(env.global_rank()))
    os.environ.setdefault("WORLD_SIZE", str(n))
    os.environ.setdefault("LOCAL_RANK", str(env.local_rank()))
    name = backend(accelerator)
    if name == "nccl":
        torch.cuda.set_device(env.local_rank())
    if not dist.is_initialized():
        dist.init_process_group(name, init_method="env://", rank=env.global_rank(), world_size=n)
        atexit.register(_teardown)
    _control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def announce(payload: dict[str, Any] | None) -> None:
    """Rank 0: tell the followers which trial to train next (None: the suite is done)."""
    if _control is None:
        return
    dist.broadcast_object_list([payload], src=0, group=_control, device=torch.device("cpu"))


def follow(run: Callable[[dict[str, Any]], None]) -> None:
    """Ranks > 0: train every announced trial until rank 0 announces None."""
    if _control is None:
        return
    while True:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=_control, device=torch.device("cpu"))
        if box[0] is None:
            return
        run(box[0])


# -- data ----------------------------------------------------------------------------------------------
def strided(items: Iterable[Any], rank: int, world: int, *, even: bool) -> Iterator[Any]:
    """Item `rank` of every consecutive group of `world` items. With `even`, an incomplete last group
    is dropped, so every rank gets the same count (the same number of steps: no rank waits alone in a
    collective); without, every item goes to exactly one rank (exact validation sums)."""
    group: list[Any] = []
    for item in items:
        group.append(item)
        if len(group) == world:
            yield group[rank]
            group = []
    if group and not even and rank < len(group):
        yield group[rank]


class RankSampler(Sampler):
    """This rank's share of another sampler's stream, interleaved (see `strided`)."""

    def __init__(self, sampler: Any, rank: int, world: int, *, even: bool):
        self.sampler, self.rank, self.world, self.even = sampler, rank, world, even

    def __iter__(self) -> Iterator[Any]:
        return strided(self.sampler, self.rank, self.world, even=self.even)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.world if self.even else (n - self.rank + self.world - 1) // self.world

    def set_epoch(self, epoch: int) -> None:  # forwarded, as Lightning's DistributedSamplerWrapper does
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch)


class RankStream(IterableDataset):
    """This rank's share of an iterable dataset's stream (per loader worker), interleaved."""

    def __init__(self, dataset: Any, rank: int, world: int, *, even: bool):
        self.dataset, self.rank, self.world, self.even = dataset, rank, world, even

    def __iter__(self) -> Iterator[Any]:
        return strided(self.dataset, self.rank, self.world, even=self.even)


def shard_loader(loader: Any, rank: int, world: int, *, train: bool) -> Any:
    """The loader a process of a `world`-process trial reads: every rank walks the task's own stream
    (same seed, same order as one process) and keeps item `rank` of each group of `world`. With each
    rank's batch being `batch_size / world` (see `per_device_batch`), step k's batches on all ranks
    together are exactly the single-process batch k, so a data-parallel trial computes the same
    gradients as one process on the global batch. (Lightning's own DistributedSampler would reshuffle
    the stream per rank, and pads the validation set with repeated examples.) A loader that is not a
    DataLoader shards itself the same way through its `shard(rank, world)`."""
    if world == 1:
        return loader
    if callable(getattr(loader, "shard", None)):
        return loader.shard(rank, world)
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        raise TypeError(
            f"a multi-process trial needs the task's loaders to be torch DataLoaders with a batch_size "
            f"(got {type(loader).__name__}); bench splits them over the {world} processes"
        )
    dataset, sampler = loader.dataset, None
    if isinstance(dataset, IterableDataset):
        dataset = RankStream(dataset, rank, world, even=train)
    else:
        sampler = RankSampler(loader.sampler, rank, world, even=train)
    return DataLoader(
        dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=loader.pin_memory_device,
        in_order=loader.in_order,
    )


def on_device(loader: Any, device: torch.device) -> Any:
    """A task's loader with its data on `device` when it can hold it there (it has `to(device)`, e.g.
    `bench.workloads.image_data.ResidentImages`), else the loader as it is (Lightning then moves
    each batch)."""
    return loader.to(device) if callable(getattr(loader, "to", None)) else loader


# -- batch sizes -----------------------------------------------------------------------------------
def per_device_batch(batch_size: int, world: int | None = None) -> int:
    """Examples each process loads per forward/backward: the task's (global) batch split evenly."""
    world = world_size() if world is None else world
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {world} processes")
    return batch_size // world


def global_batch(batch_size: int, accumulate_grad_batches: int = 1) -> int:
    """Examples behind one optimizer step."""
    return batch_size * accumulate_grad_batches


# -- launch checks ---------------------------------------------------------------------------------
def check(suite: Suite, workers: int = 1) -> None:
    """Check this launch against the trainer: raise one `SpecError` listing everything that cannot run
    (see the module docstring). Every rank runs it before `setup()`, so a bad launch fails everywhere
    at once instead of hanging."""
    problems = Problems(str(suite.path))
    t = suite.trainer
    n, which = world_size(), launcher()
    wanted = processes(t.devices, t.num_nodes)
    problems.require(
        not (wanted is not None and wanted > 1 and n == 1),
        ("trainer",),
        f"devices: {t.devices} x num_nodes: {t.num_nodes} needs {wanted} processes, one per device, "
        f"started by a launcher: `torchrun --nproc_per_node {(wanted or 1) // t.num_nodes} -m bench.cli run "
        f"{suite.path.name}` on each node, or `srun` under SLURM (see examples/slurm.sbatch)",
    )
    gpus = torch.cuda.device_count() if t.accelerator in ("auto", "gpu", "cuda") else 0
    present(t, torch.cuda.device_count(), problems)
    problems.require(  # `devices: auto` / -1: Lightning would use every GPU
        not (wanted is None and n == 1 and gpus > 1),
        ("trainer", "devices"),
        f"{t.devices} means all {gpus} GPUs, one process each, started by a launcher: `torchrun "
        f"--nproc_per_node {gpus} -m bench.cli run {suite.path.name}` (or set devices: 1)",
    )
    problems.require(
        not (n > 1 and wanted is not None and wanted != n),
        ("trainer",),
        f"launched as {n} processes ({which}), but devices: {t.devices} x num_nodes: {t.num_nodes} "
        f"= {wanted}; make them agree (e.g. `--set trainer.devices={n // t.num_nodes}`)"
        + (" and start one task per device with `srun`" if which == "slurm" else ""),
    )
    problems.require(
        not (n > 1 and workers > 1),
        ("workers",),
        f"--workers {workers} cannot be combined with a {which} launch; start more "
        f"`bench run {suite.path.name}` jobs against a shared storage instead",
    )
    if n > 1:
        check_batches(suite.tasks, n, problems)
    problems.raise_if_any()


def present(t: Any, gpus: int, problems: Problems) -> None:
    """The devices a trainer asks for exist on this machine (each process of a node uses one of its
    `devices`): a GPU accelerator needs GPUs, as many as `devices` per node, with the indices named."""
    if t.accelerator in ("gpu", "cuda"):
        if not problems.require(
            gpus > 0,
            ("trainer", "accelerator"),
            f"{t.accelerator} asks for CUDA GPUs, but this machine has none (torch sees 0); "
            "use `accelerator: cpu` (or auto)",
        ):
            return
        per_node = processes(t.devices, 1)
        problems.require(
            per_node is None or per_node <= gpus,
            ("trainer", "devices"),
            f"{t.devices} GPUs per node, but this machine has {gpus}",
        )
        if isinstance(t.devices, str) and "," in t.devices:
            missing = [int(d) for d in t.devices.split(",") if d and int(d) >= gpus]
            problems.require(
                not missing,
                ("trainer", "devices"),
                f"'{t.devices}' names GPU {', '.join(map(str, missing))}, but this machine has GPUs 0-{gpus - 1}",
            )
    if t.accelerator == "mps":
        problems.require(
            torch.backends.mps.is_available(),
            ("trainer", "accelerator"),
            "mps asks for Apple's Metal GPU, which this machine does not have; use `accelerator: cpu`",
        )
