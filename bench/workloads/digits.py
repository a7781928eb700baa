"""Digits: scikit-learn's 1,797 real 8x8 handwritten-digit scans, a CPU task that trains in seconds.

`digits_cnn` (a three-layer CNN) and `digits_mlp` (a two-hidden-layer MLP) share the data: a fixed
stratified 1,437 / 360 train/val split (split seed 0, independent of the trial seed), pixels scaled
from 0..16 and standardised with the training set's mean and std. The data ships with scikit-learn
(`sklearn.datasets.load_digits`), so nothing is downloaded. No augmentation.

Options: `width` (channels of the first conv layer / hidden units of the MLP).
Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from bench.registry import TASKS
from bench.tasks.base import TaskEntry
from bench.tasks.image_data import ClassificationTask, TensorPairs, check_options, seeded_loader

VAL_EXAMPLES = 360
SPLIT_SEED = 0  # the split never changes with the trial seed
BATCH_SIZE = 64
VERSION = 1
Arch = Literal["cnn", "mlp"]


class DigitsCNN(nn.Module):
    """conv3x3(1->w) ReLU, conv3x3(w->2w) ReLU, maxpool 2, conv3x3(2w->2w) ReLU, linear -> 10."""

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),  # [B, w, 8, 8]
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),  # [B, 2w, 8, 8]
            nn.ReLU(),
            nn.MaxPool2d(2),  # [B, 2w, 4, 4]
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 1, 8, 8]
        return self.head(self.features(x).flatten(1))


class DigitsMLP(nn.Module):
    """64 -> width -> width -> 10 with ReLU."""

    def __init__(self, width: int = 128, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),  # [B, 1, 8, 8] -> [B, 64]
            nn.Linear(64, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@functools.cache
def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train [1437, 1, 8, 8], y_train, x_val [360, 1, 8, 8], y_val), standardised, stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=VAL_EXAMPLES, stratify=y, random_state=SPLIT_SEED
    )
    mean, std = x_tr.mean(), x_tr.std()

    def tensor(a: Any) -> torch.Tensor:
        return torch.tensor((a - mean) / std, dtype=torch.float32).reshape(-1, 1, 8, 8)

    return tensor(x_tr), torch.tensor(y_tr), tensor(x_va), torch.tensor(y_va)


@dataclass(frozen=True)
class DigitsTask(ClassificationTask):
    arch: Arch
    width: int
    batch_size: int
    seed: int

    def build_model(self) -> nn.Module:
        return DigitsCNN(self.width) if self.arch == "cnn" else DigitsMLP(self.width)

    def train_loader(self) -> Iterable[Any]:
        x, y, _, _ = digits_split()
        return seeded_loader(TensorPairs(x, y), self.batch_size, self.seed, train=True)

    def val_loader(self) -> Iterable[Any]:
        _, _, x, y = digits_split()
        return seeded_loader(TensorPairs(x, y), VAL_EXAMPLES, 0, train=False)  # one batch


def _build(arch: Arch, defaults: Mapping[str, Any]) -> Callable[[Mapping[str, Any], int, Path], DigitsTask]:
    def build(options: Mapping[str, Any], seed: int, data_root: Path) -> DigitsTask:
        opts = check_options(f"digits_{arch}", options, defaults)
        if int(opts["width"]) < 1:
            raise ValueError(f"task digits_{arch}: option width must be >= 1, got {opts['width']}")
        return DigitsTask(arch, int(opts["width"]), int(opts.get("batch_size", BATCH_SIZE)), seed)

    return build


def _entry(arch: Arch, width: int, target: float, flops_per_step: float) -> TaskEntry:
    defaults = {"width": width}
    return TaskEntry(
        name=f"digits_{arch}",
        family="digits",
        size="tiny",
        description=f"scikit-learn digits (8x8 scans, 1,437/360 split), small {arch.upper()}",
        metric="val/error",
        mode="min",
        target=target,
        steps=200,
        batch_size=BATCH_SIZE,
        version=VERSION,
        build=_build(arch, defaults),
        options=defaults,
        eval_every=25,  # validation is one 360-example batch: cheap, and time-to-target is finer
        metrics={"val/error": "min", "val/loss": "min"},
        flops_per_step=flops_per_step,
    )


# flops_per_step: forward + backward at the default width and batch size, measured with
# torch.utils.flop_counter.FlopCounterMode (tests/tasks/test_vision.py checks they still match).
@TASKS.register("digits_cnn")
def digits_cnn() -> TaskEntry:
    return _entry("cnn", width=16, target=0.05, flops_per_step=DIGITS_CNN_FLOPS)


@TASKS.register("digits_mlp")
def digits_mlp() -> TaskEntry:
    return _entry("mlp", width=128, target=0.05, flops_per_step=DIGITS_MLP_FLOPS)


DIGITS_CNN_FLOPS = 174_194_688.0
DIGITS_MLP_FLOPS = 8_880_128.0
