"""Digits: scikit-learn's 1,797 real 8x8 handwritten-digit scans, a CPU task that trains in seconds.

The implementation of the tasks declared in `bench.tasks.digits` (options, budgets, FLOPs live there).

`digits_cnn` (a three-layer CNN) and `digits_mlp` (a two-hidden-layer MLP) share the data: a fixed
stratified 1,437 / 360 train/val split (split seed 0, independent of the trial seed), pixels scaled
from 0..16 and standardised with the training set's mean and std. The data ships with scikit-learn
(`sklearn.datasets.load_digits`), so nothing is downloaded. No augmentation. The split is held on the
training device whole (`image_data.ResidentImages`: 370 kB).

Options: `width` (channels of the first conv layer / hidden units of the MLP).
Parameter roles: the head is `head` (CNN) or the last linear layer of `net` (MLP); no embeddings.
Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from bench.tasks.base import ParamRoles
from bench.workloads import parameter_names
from bench.workloads.image_data import ClassificationTask, ResidentImages

VAL_EXAMPLES = 360
SPLIT_SEED = 0  # the split never changes with the trial seed
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

    def param_roles(self, model: nn.Module) -> ParamRoles:
        head = model.head if isinstance(model, DigitsCNN) else model.net[-1]
        return ParamRoles(head=parameter_names(model, head))

    def train_loader(self) -> ResidentImages:
        x, y, _, _ = digits_split()
        return ResidentImages(x, y, self.batch_size, self.seed, train=True)

    def val_loader(self) -> ResidentImages:
        _, _, x, y = digits_split()
        return ResidentImages(x, y, VAL_EXAMPLES, 0, train=False)  # one batch


def build(options: Mapping[str, Any], seed: int, data_root: Path, *, arch: Arch) -> DigitsTask:
    """`options`: the validated `bench.tasks.digits.DigitsOptions` as a dict, plus `batch_size`."""
    return DigitsTask(arch, options["width"], options["batch_size"], seed)
