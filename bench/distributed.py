"""Multi-process trials (torchrun, srun): rank 0 leads, the other ranks follow.

Every rank runs the same `bench run suite.yaml`. `setup()` joins the processes into one
`torch.distributed` process group (gloo on CPU, NCCL for GPU training; rendezvous from torchrun's
`MASTER_ADDR`/`MASTER_PORT`/`RANK`/`WORLD_SIZE`, or derived from SLURM's variables under `srun`), which
Lightning's `ddp`/`fsdp` strategies then reuse (`_init_dist_connection` returns early when a group
exists, and its `TorchElasticEnvironment`/`SLURMEnvironment` read the same variables). Rank 0 alone
talks to Optuna and MLflow: before each trial it `announce`s `{"study", "hparams", "seed"}`, the other
ranks `follow` (train that trial with no logger and record nothing), and `announce(None)` releases them
at the end. Announcements travel on a separate gloo group with a long timeout, because rank 0 may wait
a long time between trials (for other workers of a shared study) while the followers sit in `follow`.

Batch size: a task's `batch_size` is the *global* batch of one forward/backward, summed over processes,
so adding devices never changes what a trial computes; each process loads `batch_size / world_size`
examples (`per_device_batch`). `trainer.accumulate_grad_batches` multiplies it: one optimizer step sees
`batch_size * accumulate_grad_batches` examples (`global_batch`). `shard_loader` gives each process its
interleaved share of the task's own stream, so the ranks' batches at step k together are exactly the
single-process batch k: a data-parallel trial reproduces the single-process run (up to float
summation order). Pruning is off in multi-process trials (the pruner needs the trial on every rank).

`check_suite(suite)` needs no launch (for `bench validate`): FSDP with an optimizer whose entry lacks
the `fsdp` flag, a batch that does not split over `trainer.devices * trainer.num_nodes`. `check(suite,
workers)` adds the launch, before any process group exists (so no rank hangs): a multi-device trainer
without an external launcher, a process count that does not match `devices * num_nodes`, `--workers`
under a launcher.
"""

from __future__ import annotations

import atexit
import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, Sampler

if TYPE_CHECKING:
    from bench.spec import Suite

# Followers block in `follow` while rank 0 records a trial, opens studies, or waits for other workers'
# trials to finish; that can take hours, and a launcher (torchrun, srun -K) tears the job down anyway
# when a rank dies, so the control channel's timeout is a week rather than torch's 30 minutes.
CONTROL_TIMEOUT = timedelta(days=7)
FSDP_STRATEGIES = re.compile(r"fsdp", re.IGNORECASE)

_control: Any = None  # the gloo group announcements travel on


def launcher() -> str | None:
    """`torchrun`, `slurm` (a task of `srun`) or None (a plain process). torchrun wins inside SLURM, as
    in Lightning; an interactive SLURM shell (job name `bash`/`interactive`) counts as no launcher."""
    if os.environ.get("TORCHELASTIC_RUN_ID") is not None:
        return "torchrun"
    if "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return "slurm"
    return None


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    which = launcher()
    if which == "torchrun":
        return int(os.environ.get("RANK", "0"))
    if which == "slurm":
        return int(os.environ.get("SLURM_PROCID", "0"))
    return 0


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    which = launcher()
    if which == "torchrun":
        return int(os.environ.get("WORLD_SIZE", "1"))
    if which == "slurm":
        return int(os.environ.get("SLURM_NTASKS", "1"))
    return 1


def local_rank() -> int:
    which = launcher()
    if which == "torchrun":
        return int(os.environ.get("LOCAL_RANK", "0"))
    if which == "slurm":
        return int(os.environ.get("SLURM_LOCALID", "0"))
    return 0


def is_leader() -> bool:
    return rank() == 0


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `node[03-05,9],gpu1` -> `node03` (Lightning's rule, so the
    address we derive is the one its SLURMEnvironment would)."""
    nodes = re.sub(r"\[(.*?)[,-].*\]", "\\1", nodelist)
    nodes = re.sub(r"\[(.*?)\]", "\\1", nodes)
    return nodes.split(" ")[0].split(",")[0]


def slurm_port(job_id: str | None) -> int:
    """15000 + the job id's last four digits (Lightning's SLURMEnvironment default)."""
    return 15000 + int(job_id[-4:]) if job_id and job_id.isdigit() else 12910


def backend(accelerator: str = "auto") -> str:
    """NCCL when the trial trains on GPUs, gloo on CPU."""
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "nccl" if gpu and torch.cuda.is_available() else "gloo"


def setup(accelerator: str = "auto") -> None:
    """Initialise the process group when launched with several processes (no-op otherwise)."""
    global _control
    n = world_size()
    if n == 1 or _control is not None:
        return
    if launcher() == "slurm":
        os.environ.setdefault("MASTER_ADDR", first_host(os.environ.get("SLURM_NODELIST", "127.0.0.1")))
        os.environ.setdefault("MASTER_PORT", str(slurm_port(os.environ.get("SLURM_JOB_ID"))))
        # Lightning's SLURM and torch's env:// read these; the rank variables are SLURM's under srun.
        os.environ.setdefault("RANK", os.environ.get("SLURM_PROCID", "0"))
        os.environ.setdefault("WORLD_SIZE", str(n))
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    name = backend(accelerator)
    if name == "nccl":
        torch.cuda.set_device(local_rank())
    if not dist.is_initialized():
        dist.init_process_group(name, init_method="env://", rank=rank(), world_size=n)
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
    the stream per rank, and pads the validation set with repeated examples.)"""
    if world == 1:
        return loader
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


def processes(devices: int | str, num_nodes: int) -> int | None:
    """Processes a trainer asks for (devices x nodes), None when Lightning decides (`auto`, `-1`)."""
    if isinstance(devices, int) and devices >= 1:
        return devices * num_nodes
    if isinstance(devices, str) and devices.isdigit() and int(devices) >= 1:
        return int(devices) * num_nodes
    if isinstance(devices, str) and re.fullmatch(r"\d+(,\d+)*,?", devices):  # "0,1": device indices
        return len([d for d in devices.split(",") if d]) * num_nodes
    return None


def uses_fsdp(strategy: str) -> bool:
    return bool(FSDP_STRATEGIES.search(strategy))


def check_suite(suite: Suite) -> None:
    """What can be checked without a launch (`bench validate` may call it): every optimizer supports
    the strategy (FSDP needs the entry flag `fsdp`), and each task's batch splits over the trainer's
    `devices x num_nodes`. Raises `SpecError`."""
    from bench.spec import SpecError

    t = suite.trainer
    wanted = processes(t.devices, t.num_nodes)
    if wanted is not None and wanted > 1:
        _check_batches(suite, wanted)
    if uses_fsdp(t.strategy):
        supported = fsdp_optimizers()
        for i, opt in enumerate(suite.optimizers):
            if "fsdp" not in opt.entry.flags:
                raise SpecError(
                    suite.path,
                    f"optimizers[{i}]",
                    f"'{opt.label}' ({opt.entry.source}) does not support FSDP (strategy: {t.strategy}): its "
                    "update needs whole parameters (matrix preconditioners, layer-wise norms or Hessian "
                    "products) but FSDP hands each rank a flat shard. Use strategy: ddp for it. Optimizers "
                    f"flagged `fsdp`: {', '.join(supported) or '(none)'}",
                )


def _check_batches(suite: Suite, n: int) -> None:
    from bench.spec import SpecError

    for i, task in enumerate(suite.tasks):
        if task.batch_size % n:
            raise SpecError(
                suite.path,
                f"tasks[{i}].batch_size",
                f"{task.batch_size} does not split evenly over {n} processes (the batch size is global: "
                f"each process loads batch_size / {n}); use a multiple of {n}",
            )


def check(suite: Suite, workers: int = 1) -> None:
    """`check_suite`, then this launch against the trainer: raise `SpecError` for what cannot run (see
    the module docstring). Every rank runs it before `setup()`, so a bad launch fails everywhere at
    once instead of hanging."""
    from bench.spec import SpecError

    check_suite(suite)
    t = suite.trainer
    n, which = world_size(), launcher()
    wanted = processes(t.devices, t.num_nodes)
    if wanted is not None and wanted > 1 and n == 1:
        raise SpecError(
            suite.path,
            "trainer",
            f"devices: {t.devices} x num_nodes: {t.num_nodes} needs {wanted} processes, one per device, "
            f"started by a launcher: `torchrun --nproc_per_node {wanted // t.num_nodes} -m bench.cli run "
            f"{suite.path.name}` on each node, or `srun` under SLURM (see examples/slurm.sbatch)",
        )
    gpus = torch.cuda.device_count() if t.accelerator in ("auto", "gpu", "cuda") else 0
    if wanted is None and n == 1 and gpus > 1:  # `devices: auto` / -1: Lightning would use every GPU
        raise SpecError(
            suite.path,
            "trainer.devices",
            f"{t.devices} means all {gpus} GPUs, one process each, started by a launcher: `torchrun "
            f"--nproc_per_node {gpus} -m bench.cli run {suite.path.name}` (or set devices: 1)",
        )
    if n > 1 and wanted is not None and wanted != n:
        raise SpecError(
            suite.path,
            "trainer",
            f"launched as {n} processes ({which}), but devices: {t.devices} x num_nodes: {t.num_nodes} "
            f"= {wanted}; make them agree (e.g. `--set trainer.devices={n // t.num_nodes}`)"
            + (" and start one task per device with `srun`" if which == "slurm" else ""),
        )
    if n > 1 and workers > 1:
        raise SpecError(
            suite.path,
            "workers",
            f"--workers {workers} cannot be combined with a {which} launch; start more "
            f"`bench run {suite.path.name}` jobs against a shared storage instead",
        )
    if n > 1:
        _check_batches(suite, n)


def fsdp_optimizers() -> list[str]:
    """Registered optimizers whose entry carries the `fsdp` flag (elementwise update rules)."""
    from bench.registry import OPTIMIZERS

    out = []
    for name in OPTIMIZERS.names():
        try:
            if "fsdp" in OPTIMIZERS.get(name).flags:
                out.append(name)
        except Exception:  # an entry whose library is missing: not usable under any strategy
            continue
    return sorted(out)
