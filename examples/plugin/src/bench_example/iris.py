"""The `iris_mlp` task's implementation: what bench's runner asks of a built task (bench.tasks.base.Task).

`build(options, seed, data_root)` returns an `IrisTask`; the data is read from this package's own
data/iris.csv through importlib.resources, so it works wherever the package is installed.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.tasks.base import ParamRoles

VAL_PER_CLASS = 10


@functools.cache
def iris_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train [120, 4], y_train, x_val [30, 4], y_val): the last 10 flowers of each species validate;
    standardised with the training mean and std. Fixed, whatever the trial's seed."""
    text = resources.files("bench_example").joinpath("data/iris.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))[1:]  # the header line holds counts and class names
    x = torch.tensor([[float(v) for v in r[:4]] for r in rows])
    y = torch.tensor([int(r[4]) for r in rows])
    val = torch.zeros(len(y), dtype=torch.bool)
    for c in range(3):
        val[torch.nonzero(y == c).flatten()[-VAL_PER_CLASS:]] = True
    mean, std = x[~val].mean(dim=0), x[~val].std(dim=0)
    x = (x - mean) / std
    return x[~val], y[~val], x[val], y[val]


@dataclass(frozen=True)
class IrisTask:
    hidden: int
    batch_size: int
    seed: int

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, self.hidden), nn.Tanh(), nn.Linear(self.hidden, 3))

    def param_roles(self, model: nn.Module) -> ParamRoles:
        # The output layer (Muon and friends leave it to AdamW); no embeddings.
        return ParamRoles(head=frozenset({"2.weight", "2.bias"}))

    def train_loader(self) -> Iterable[Any]:
        x, y, _, _ = iris_split()
        order = torch.Generator().manual_seed(self.seed)  # the same batches for every optimizer
        return DataLoader(TensorDataset(x, y), batch_size=self.batch_size, shuffle=True, generator=order)

    def val_loader(self) -> Iterable[Any]:
        _, _, x, y = iris_split()
        return [(x, y)]  # one batch

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def validation_sums(self, model: nn.Module, batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        x, y = batch
        logits = model(x)
        return {
            "loss": nn.functional.cross_entropy(logits, y, reduction="sum"),
            "error": (logits.argmax(dim=1) != y).sum().float(),
        }, len(y)


def build(options: Mapping[str, Any], seed: int, data_root: Path) -> IrisTask:
    """`options`: the validated IrisOptions as a dict, plus the per-process `batch_size`."""
    return IrisTask(options["hidden"], options["batch_size"], seed)
