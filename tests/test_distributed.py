"""Multi-process trials on CPU: launcher detection and launch checks, data sharding, SLURM rendezvous, and a
2-process DDP trial under torchrun that must reproduce the single-process run on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import optuna_states, trial_runs, write_suite
from torch.utils.data import DataLoader, IterableDataset

from bench import distributed
from bench.loader import load_suite
from bench.spec import SpecError
from bench.workloads.image_data import ResidentImages, SeededSampler

CPU_DDP = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}


LAUNCH_VARS = ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE",
               "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID",
               "SLURM_NTASKS_PER_NODE", "SLURM_JOB_NAME", "SLURM_JOB_ID", "SLURM_NODELIST")  # fmt: skip


@pytest.fixture
def plain_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No launcher variables, whatever the machine running the tests has set."""
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)


def launched(monkeypatch: pytest.MonkeyPatch, world: int, rank: int = 0) -> None:
    """The variables `torchrun --nproc_per_node {world}` sets in process `rank`."""
    for var, value in {"TORCHELASTIC_RUN_ID": "test", "RANK": rank, "LOCAL_RANK": rank, "GROUP_RANK": 0,
                       "WORLD_SIZE": world, "LOCAL_WORLD_SIZE": world, "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": 29500}.items():  # fmt: skip
        monkeypatch.setenv(var, str(value))


def srun_task(monkeypatch: pytest.MonkeyPatch, ntasks: int, procid: int, **extra: str) -> None:
    """The variables `srun --ntasks-per-node {ntasks}` sets in task `procid` (one node)."""
    for var, value in {"SLURM_NTASKS": ntasks, "SLURM_PROCID": procid, "SLURM_LOCALID": procid, "SLURM_NODEID": 0,
                       "SLURM_NTASKS_PER_NODE": ntasks, "SLURM_NNODES": 1, "SLURM_JOB_NAME": "bench",
                       **extra}.items():  # fmt: skip
        monkeypatch.setenv(var, str(value))


# -- launchers, as Lightning's cluster environments detect them -------------------------------------
def test_a_plain_process_is_rank_0_of_1(plain_process) -> None:
    assert distributed.launcher() is None and distributed.environment() is None
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    assert distributed.is_leader()


def test_torchrun_and_srun_ranks_come_from_lightnings_environments(plain_process, monkeypatch) -> None:
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    srun_task(monkeypatch, 4, 3)
    assert distributed.launcher() == "slurm" and isinstance(distributed.environment()[1], SLURMEnvironment)
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (3, 4, 3)
    assert not distributed.is_leader()

    launched(monkeypatch, 2, rank=1)  # torchrun inside a SLURM allocation: torchrun wins, as in Lightning
    assert distributed.launcher() == "torchrun"
    assert isinstance(distributed.environment()[1], TorchElasticEnvironment)
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (1, 2, 1)

    for var in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # an interactive SLURM shell is no launcher
    assert distributed.launcher() is None and distributed.world_size() == 1


def test_slurm_rendezvous_is_lightnings_and_set_variables_win(plain_process, monkeypatch) -> None:
    srun_task(monkeypatch, 2, 0, SLURM_NODELIST="node[03-05,9],gpu1", SLURM_JOB_ID="4719123")
    assert distributed.rendezvous() == ("node03", 15000 + 9123)  # first host; 15000 + the job id's last 4
    assert (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]) == ("node03", "24123")  # for env://
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.7")
    monkeypatch.setenv("MASTER_PORT", "29400")
    assert distributed.rendezvous() == ("10.0.0.7", 29400)


# -- launch checks ---------------------------------------------------------------------------------
def test_multi_device_trainer_without_a_launcher_names_the_torchrun_command(
    tmp_path, plain_process, monkeypatch
) -> None:
    suite = load_suite(write_suite(tmp_path, trainer=CPU_DDP))
    with pytest.raises(SpecError, match=r"torchrun --nproc_per_node 2 -m bench.cli run tiny.yaml") as e:
        distributed.check(suite)
    assert "tiny.yaml: trainer:" in str(e.value) and "srun" in str(e.value)

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # `devices: auto` on a 4-GPU machine
    every_gpu = load_suite(write_suite(tmp_path, trainer={"accelerator": "gpu", "devices": "auto"}))
    with pytest.raises(SpecError, match=r"trainer.devices: auto means all 4 GPUs.*--nproc_per_node 4"):
        distributed.check(every_gpu)


def test_gpus_this_machine_does_not_have_are_refused_before_anything_runs(
    tmp_path, plain_process, monkeypatch
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    no_gpu = load_suite(write_suite(tmp_path, trainer={"accelerator": "gpu", "devices": 1}))
    with pytest.raises(SpecError, match=r"tiny.yaml: trainer.accelerator: gpu asks for CUDA GPUs, but this machine has none"):  # fmt: skip
        distributed.check(no_gpu)

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    launched(monkeypatch, 4)  # torchrun --nproc_per_node 4 on a 2-GPU machine
    four = load_suite(write_suite(tmp_path, trainer={"accelerator": "gpu", "devices": 4, "strategy": "ddp"}))
    with pytest.raises(SpecError, match=r"trainer.devices: 4 GPUs per node, but this machine has 2"):
        distributed.check(four)
    for var in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var)
    named = load_suite(write_suite(tmp_path, trainer={"accelerator": "cuda", "devices": "0,3"}))
    with pytest.raises(SpecError, match=r"'0,3' names GPU 3, but this machine has GPUs 0-1"):
        distributed.check(named)
    distributed.check(load_suite(write_suite(tmp_path, trainer={"accelerator": "gpu", "devices": 1})))


def test_launch_must_match_devices_batch_must_split_and_workers_are_refused(
    tmp_path, plain_process, monkeypatch
) -> None:
    launched(monkeypatch, 4)
    with pytest.raises(SpecError, match=r"launched as 4 processes \(torchrun\).*= 2"):
        distributed.check(load_suite(write_suite(tmp_path, trainer=CPU_DDP)))

    # a single-device suite with an odd batch under a 2-process launch: every problem, at once
    launched(monkeypatch, 2)
    tasks = [{"name": "digits_cnn", "steps": 20, "batch_size": 63}]
    odd = load_suite(write_suite(tmp_path, trainer={"accelerator": "cpu", "devices": 1}, tasks=tasks))
    with pytest.raises(SpecError) as e:
        distributed.check(odd, workers=2)
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(str(odd.path)) for line in lines)
    assert "trainer: launched as 2 processes (torchrun), but devices: 1 x num_nodes: 1 = 1" in lines[0]
    assert "workers: --workers 2 cannot be combined with a torchrun launch" in lines[1]
    assert "tasks[0].batch_size: 63 does not split evenly over 2 processes" in lines[2]

    suite = load_suite(write_suite(tmp_path, trainer=CPU_DDP))
    with pytest.raises(SpecError, match=r"--workers 3 cannot be combined"):
        distributed.check(suite, workers=3)
    distributed.check(suite)  # 2 processes for devices: 2: fine


def test_batch_sizes() -> None:
    assert distributed.per_device_batch(64, 2) == 32 and distributed.per_device_batch(64, 1) == 64
    with pytest.raises(ValueError, match="does not split evenly"):
        distributed.per_device_batch(10, 4)
    assert distributed.global_batch(32, accumulate_grad_batches=4) == 128


# -- data sharding ---------------------------------------------------------------------------------
def _labels(loader) -> list[list[int]]:
    return [batch[1].tolist() for batch in loader]


class Pairs(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[item[0]], self.y[item[0]]


@pytest.mark.parametrize("resident", [False, True])
def test_ranks_together_see_exactly_the_single_process_batches(resident: bool) -> None:
    """For a DataLoader over `SeededSampler` and for the device-resident loader that reproduces it."""
    x, y = torch.zeros(103, 1), torch.arange(103)

    def loader(batch: int, train: bool) -> Any:
        if resident:
            return ResidentImages(x, y, batch, 7, train=train)
        sampler = SeededSampler(103, torch.Generator().manual_seed(7), shuffle=train)
        return DataLoader(Pairs(x, y), batch_size=batch, sampler=sampler, drop_last=train)

    def two_passes(ld: Any) -> list[list[int]]:  # the second pass continues the sampler's stream
        return _labels(ld) + _labels(ld)

    single = two_passes(loader(12, True))
    ranks = [two_passes(distributed.shard_loader(loader(4, True), r, 3, train=True)) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == len(single) == 16  # 103 // 12 per pass
    for k, batch in enumerate(single):
        assert sorted(sum((ranks[r][k] for r in range(3)), [])) == sorted(batch)
        assert ranks[1][k] == batch[1::3]

    val = [sum(_labels(distributed.shard_loader(loader(50, False), r, 3, train=False)), []) for r in range(3)]
    assert sorted(sum(val, [])) == list(range(103))  # every example exactly once: exact validation sums


def test_iterable_datasets_are_split_per_rank() -> None:
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(10))

    shards = [
        sum((b.tolist() for b in distributed.shard_loader(DataLoader(Stream(), batch_size=2), r, 2, train=True)), [])
        for r in range(2)
    ]  # fmt: skip
    assert shards == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    with pytest.raises(TypeError, match="DataLoaders"):
        distributed.shard_loader([1, 2], 0, 2, train=True)
    assert distributed.shard_loader("as is", 0, 1, train=True) == "as is"


# -- processes -------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC", "MASTER_"))}
    env.update(
        OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", **extra
    )
    return env


@pytest.mark.slow  # two processes importing torch and Lightning: ~8 s on 2 cores
def test_srun_tasks_join_one_group_and_followers_get_every_announcement(tmp_path: Path) -> None:
    """Two processes with the variables `srun --ntasks-per-node 2` sets (no SLURM needed)."""
    script = textwrap.dedent("""
        import os
        from bench import distributed
        distributed.setup("cpu")
        assert distributed.launcher() == "slurm" and distributed.world_size() == 2
        assert os.environ["MASTER_ADDR"] == "127.0.0.1"
        if distributed.is_leader():
            for i in range(3):
                distributed.announce({"study": "s", "hparams": {"i": i}, "seed": i})
            distributed.announce(None)
            print("leader done")
        else:
            got = []
            distributed.follow(got.append)
            print("follower got", [p["hparams"]["i"] for p in got])
    """)
    port = str(_free_port())  # (the default, 15000 + the job id's last digits, is checked above)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=_env(
                SLURM_NTASKS="2",
                SLURM_PROCID=str(r),
                SLURM_LOCALID=str(r),
                SLURM_NODEID="0",
                SLURM_NTASKS_PER_NODE="2",
                SLURM_NNODES="1",
                SLURM_JOB_ID="4242",
                MASTER_PORT=port,
                SLURM_NODELIST="127.0.0.1",
                SLURM_JOB_NAME="bench",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for r in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "leader done" in outs[0] and "follower got [0, 1, 2]" in outs[1]


@pytest.mark.slow
def test_two_process_ddp_trial_reproduces_the_single_process_run(tmp_path: Path, monkeypatch) -> None:
    """`torchrun --nproc_per_node 2` on CPU (gloo): per-device batch 32, global batch 64, same curves as
    one process on batch 64 (the ranks' batches together are the single-process batch, by design)."""
    from mlflow import MlflowClient

    from bench.cli import main

    monkeypatch.chdir(tmp_path)
    common = dict(
        optimizers=["adamw"],
        tasks=[{"name": "digits_cnn", "steps": 20, "eval_every": 5, "batch_size": 64}],
        tuning={"protocol": "random", "trials": 2, "seeds": 1},
    )
    single = write_suite(tmp_path, name="single", trainer={"accelerator": "cpu", "devices": 1}, **common)
    ddp = write_suite(tmp_path, name="ddp", trainer=CPU_DDP, **common)
    assert main(["run", str(single), "--no-leaderboard"]) == 0

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "bench.cli", "run", str(ddp), "--no-leaderboard", "--quiet-bars"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "each trial runs on 2 processes (torchrun)" in proc.stdout
    assert proc.stdout.count("completed val/error") == 2  # rank 0 alone reports (and records)

    runs = {s: sorted((r for r in trial_runs(tmp_path) if r["bench.suite"] == s), key=lambda r: r["bench.number"])
            for s in ("single", "ddp")}  # fmt: skip
    assert [len(runs["single"]), len(runs["ddp"])] == [2, 2]
    assert optuna_states(tmp_path, "ddp.digits_cnn.adamw") == ["COMPLETE", "COMPLETE"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for one, two in zip(runs["single"], runs["ddp"], strict=True):
        assert one["bench.params"] == two["bench.params"]  # the same configuration
        params = client.get_run(two["run_id"]).data.params
        assert (params["world_size"], params["batch_size_per_device"], params["global_batch_size"]) == (
            "2",
            "32",
            "64",
        )
        assert client.get_run(one["run_id"]).data.params["batch_size_per_device"] == "64"
        for metric in ("train/loss", "val/loss", "val/error"):
            a, b = ([(m.step, m.value) for m in sorted(client.get_metric_history(r["run_id"], metric), key=lambda m: m.step)]
                    for r in (one, two))  # fmt: skip
            assert [s for s, _ in a] == [s for s, _ in b] and len(a) >= 2, metric
            gap = max(abs(x - y) for (_, x), (_, y) in zip(a, b, strict=True))
            print(f"{one['bench.trial_id']} {metric}: {len(a)} points, max |ddp - single| = {gap:.2e}")
            assert gap < 1e-4, (metric, a, b)
        val = [
            m.value
            for m in sorted(client.get_metric_history(two["run_id"], "val/loss"), key=lambda m: m.step)
        ]
        assert len(val) == 4 and val[-1] < val[0]  # it trained: the agreement is not two flat lines
