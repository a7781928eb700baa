"""Offline stand-ins for C4, CIFAR-10 and ImageNet: written in the hub layouts, read by the real loaders,
reproducible from the seed, and `suites/cpu.yaml` runs end to end on them (a few steps per task)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
from helpers import trial_runs
from task_helpers import build

from bench.cli import main
from bench.workloads import standins

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("standins")
    assert main(["standins", str(root)]) == 0
    return root


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.slow  # writes the three stand-in datasets (~10 s)
def test_layouts_are_the_ones_the_tasks_look_for(root: Path) -> None:
    c4 = sorted(p.name for p in (root / "c4").iterdir())
    assert c4 == ["c4-train.00000-of-00001.json.gz", "c4-validation.00000-of-00001.json.gz"]
    rows = [json.loads(line) for line in gzip.decompress((root / "c4" / c4[1]).read_bytes()).splitlines()]
    assert rows and set(rows[0]) == {"text", "timestamp", "url"}
    train = gzip.decompress((root / "c4" / c4[0]).read_bytes()).splitlines()
    train_urls = {json.loads(line)["url"] for line in train}
    assert train_urls.isdisjoint(r["url"] for r in rows)  # validation documents are held out
    assert sorted(p.name for p in (root / "cifar10" / "plain_text").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]
    classes = sorted(p.name for p in (root / "imagenet" / "train").iterdir())
    assert classes == [f"digit_{d}" for d in range(10)]
    assert sorted(p.name for p in (root / "imagenet" / "validation").iterdir()) == classes


@pytest.mark.slow  # writes the three stand-in datasets (~10 s)
def test_the_real_loaders_read_them(root: Path) -> None:
    c4 = build("c4_gpt_tiny", {}, 0, root)
    x = next(iter(c4.train_loader()))
    assert x.shape[0] == 16 and int(x.max()) < 256
    cifar = build("cifar10_resnet_tiny", {"val_examples": 0}, 0, root)
    images, labels = next(iter(cifar.val_loader()))
    assert images.shape[1:] == (3, 32, 32) and set(labels.tolist()) <= set(range(10))
    assert sum(len(y) for _, y in cifar.val_loader()) == round(0.2 * 1797) * 2
    vit = build("imagenet_vit_tiny", {"num_classes": 10, "val_examples": 0}, 0, root)
    images, labels = next(iter(vit.train_loader()))
    assert images.shape[1:] == (3, 64, 64) and len(set(labels.tolist())) > 1


def test_train_and_held_out_digits_are_disjoint() -> None:
    """The renders of a held-out digit never appear in training: error measures unseen handwriting."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    n_test = round(standins.HELD_OUT * len(order))
    assert set(order[:n_test]).isdisjoint(order[n_test:]) and len(order) == 1797
    renders = standins.digit_renders(16, 1, 1, seed=0)
    assert len(renders["train"][0]) == 1797 - n_test and len(renders["test"][0]) == n_test
    assert np.bincount(renders["test"][1], minlength=10).min() > 20  # every class is tested


@pytest.mark.slow  # writes the three stand-in datasets (~10 s)
def test_same_seed_same_bytes(root: Path, tmp_path: Path) -> None:
    standins.write_c4_standin(tmp_path / "c4", seed=0)
    standins.write_imagenet_standin(tmp_path / "imagenet", seed=0)
    for name in ("c4", "imagenet"):
        assert digest(tmp_path / name) == digest(root / name), name


def test_existing_data_is_kept_unless_forced_and_writes_are_whole(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []

    def fake(name: str):
        def write(folder: Path, seed: int) -> None:
            calls.append(name)
            folder.mkdir(parents=True)
            (folder / "data").write_text(f"{name} {seed}")
            if name == "imagenet" and seed == 13:
                raise KeyboardInterrupt  # interrupted half way

        return write

    monkeypatch.setattr(standins, "WRITERS", {n: fake(n) for n in standins.NAMES})
    standins.write_standins(tmp_path, seed=1)
    assert calls == ["c4", "cifar10", "imagenet"]
    standins.write_standins(tmp_path, seed=2)
    assert calls == ["c4", "cifar10", "imagenet"]  # nothing rewritten
    assert (tmp_path / "c4" / "data").read_text() == "c4 1"
    standins.write_standins(tmp_path, seed=3, force=True)
    assert (tmp_path / "c4" / "data").read_text() == "c4 3"
    with pytest.raises(KeyboardInterrupt):
        standins.write_standins(tmp_path, seed=13, force=True)
    assert (tmp_path / "imagenet" / "data").read_text() == "imagenet 3"  # the old copy, whole


@pytest.mark.slow
def test_cpu_suite_runs_end_to_end_on_the_standins(root: Path, tmp_path: Path, monkeypatch) -> None:
    """suites/cpu.yaml as shipped, cut to a few steps and one trial per task."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    shutil.copytree(root, data)
    sets = [
        f"settings.data_root={data}",
        f"settings.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"settings.storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"settings.leaderboard_dir={tmp_path / 'boards'}",
        "tuning.trials=1",
        "tuning.seeds=1",
        *(f"tasks[{i}].{k}={v}" for i in range(3) for k, v in (("steps", 4), ("eval_every", 4))),
    ]
    args = ["run", str(REPO / "suites" / "cpu.yaml"), "--quiet-bars"]
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    runs = trial_runs(tmp_path)
    assert sorted(r["bench.task"] for r in runs) == [
        "c4_gpt_tiny",
        "cifar10_resnet_tiny",
        "imagenet_vit_tiny",
    ]
    assert all(r["bench.outcome"] == "completed" for r in runs)
    board = (tmp_path / "boards" / "cpu.md").read_text()
    assert "c4_gpt_tiny" in board and "imagenet_vit_tiny" in board
