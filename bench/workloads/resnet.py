"""ResNets on CIFAR-10/100: timm ResNets with the CIFAR stem, trained from scratch on 32x32 images.

The implementation of the tasks declared in `bench.tasks.resnet` (options, budgets, FLOPs live there).

Tasks: `cifar10_resnet18` and `cifar100_resnet18` (full size, GPU) and `cifar10_resnet_tiny` (a
ResNet-10 at width 16 that runs at ~0.15 s/step on two CPU cores).

Model: `timm.create_model(model, num_classes, channels=(w, 2w, 4w, 8w), layers=...)` with the stem
replaced by the usual CIFAR one: a single 3x3 stride-1 conv and no max-pool, so the stages run at
32, 16, 8 and 4 px (the 7x7 stride-2 conv + max-pool of ImageNet would shrink 32 px to 8 at once).
timm is asked for its `deep` stem only so that the stem's output width is `w` (`stem_width = w / 2`);
that stem is then replaced.

Data: CIFAR-10/100 in the Hugging Face hub schema (`uoft-cs/cifar10`: `img`, `label`;
`uoft-cs/cifar100`: `img`, `fine_label`), from option `data_files`, option `data_dir`,
`<data_root>/cifar10` (`cifar100`) or the hub, in that order (see `bench.workloads.image_data`).
The official test split is the validation set. Splits are decoded once per process into uint8
tensors, which the runner moves to the training device whole (150 MB for CIFAR's 50,000 training
images): batches are drawn and augmented there as tensor ops (`image_data.ResidentImages`), uint8
`[B, 3, 32, 32]`, normalised in `prepare`. Augmentation: random crop with 4 px zero padding and
horizontal flip, seeded per example.

Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
Parameter roles: the head is timm's classifier (`fc`); no embeddings.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.tasks.base import ParamRoles
from bench.workloads.image_data import (
    ClassificationTask,
    ResidentImages,
    Source,
    decode_uint8,
    normalized,
    timm_param_roles,
)

EVAL_BATCH = 500
STATS = {  # per-channel mean and std of the training images, in [0, 1] units
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def cifar_resnet(model: str, num_classes: int, width: int, layers: tuple[int, ...] | None) -> nn.Module:
    """A timm ResNet with stage widths (w, 2w, 4w, 8w) and the CIFAR stem (3x3 conv, stride 1).
    `width` is even (`bench.tasks.resnet.ResnetOptions` checks it): timm's deep stem outputs 2 * (w / 2)."""
    import timm

    kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "channels": tuple(width * 2**i for i in range(4)),
        "stem_type": "deep",
        "stem_width": width // 2,  # a deep stem outputs 2 * stem_width = w channels
    }
    if layers is not None:
        kwargs["layers"] = tuple(layers)
    net = timm.create_model(model, **kwargs)
    net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)  # [B, w, 32, 32]
    net.maxpool = nn.Identity()
    return net


@functools.cache
def _decoded(source: Source, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as uint8 images + labels, decoded once per process (the first call takes seconds)."""
    return decode_uint8(source.load(split), source.image_key, source.label_key, limit)


@dataclass(frozen=True)
class CifarTask(ClassificationTask):
    name: str
    opts: Mapping[str, Any]
    stats: tuple[tuple[float, ...], tuple[float, ...]]
    batch_size: int
    seed: int
    source: Source
    label_smoothing: float = 0.0

    def build_model(self) -> nn.Module:
        layers = self.opts["layers"]
        return cifar_resnet(
            self.opts["model"], int(self.opts["num_classes"]), int(self.opts["width"]), layers
        )

    def param_roles(self, model: nn.Module) -> ParamRoles:
        return timm_param_roles(model)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> normalised float, on the batch's device."""
        return normalized(x, *self.stats)

    def _split(self, key: str, limit_key: str) -> tuple[torch.Tensor, torch.Tensor]:
        limit = int(self.opts[limit_key] or 0)
        images, labels = _decoded(self.source, self.opts[key], limit or None)
        top = int(labels.max()) if len(labels) else -1
        if top >= int(self.opts["num_classes"]):
            raise ValueError(
                f"task {self.name}: split '{self.opts[key]}' has label {top} >= num_classes "
                f"{self.opts['num_classes']}"
            )
        return images, labels

    def train_loader(self) -> ResidentImages:
        images, labels = self._split("train_split", "train_examples")
        return ResidentImages(images, labels, self.batch_size, self.seed, train=True, augment=True)

    def val_loader(self) -> ResidentImages:
        images, labels = self._split("val_split", "val_examples")
        return ResidentImages(images, labels, EVAL_BATCH, 0, train=False)


def build(options: Mapping[str, Any], seed: int, data_root: Path, *, name: str, local_name: str) -> CifarTask:
    """`options`: the validated `bench.tasks.resnet.ResnetOptions` as a dict, plus `batch_size`.
    `local_name` (`cifar10`, `cifar100`) is the folder under `data_root` and names the statistics."""
    return CifarTask(
        name=name,
        opts=options,
        stats=STATS[local_name],
        batch_size=options["batch_size"],
        seed=seed,
        source=Source.from_options(options, data_root, local_name),
        label_smoothing=options["label_smoothing"],
    )
