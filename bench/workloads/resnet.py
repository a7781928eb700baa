"""ResNets on CIFAR-10/100: timm ResNets with the CIFAR stem, trained from scratch on 32x32 images.

Tasks: `cifar10_resnet18` and `cifar100_resnet18` (full size, GPU) and `cifar10_resnet_tiny` (a
ResNet-10 at width 16 that runs at ~0.15 s/step on two CPU cores).

Model: `timm.create_model(model, num_classes, channels=(w, 2w, 4w, 8w), layers=...)` with the stem
replaced by the usual CIFAR one: a single 3x3 stride-1 conv and no max-pool, so the stages run at
32, 16, 8 and 4 px (the 7x7 stride-2 conv + max-pool of ImageNet would shrink 32 px to 8 at once).
timm is asked for its `deep` stem only so that the stem's output width is `w` (`stem_width = w / 2`);
that stem is then replaced.

Data: CIFAR-10/100 in the Hugging Face hub schema (`uoft-cs/cifar10`: `img`, `label`;
`uoft-cs/cifar100`: `img`, `fine_label`), from option `data_files`, option `data_dir`,
`<data_root>/cifar10` (`cifar100`) or the hub, in that order (see `bench.tasks.image_data`).
The official test split is the validation set. Splits are decoded once per process into uint8
tensors; batches are uint8 `[B, 3, 32, 32]` and are normalised on the device in `prepare`.
Augmentation: random crop with 4 px zero padding and horizontal flip, seeded per example.

Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.registry import TASKS
from bench.tasks.base import TaskEntry
from bench.tasks.image_data import (
    ClassificationTask,
    CroppedFlipped,
    Source,
    check_options,
    decode_uint8,
    seeded_loader,
)

VERSION = 1
EVAL_BATCH = 500
STATS = {  # per-channel mean and std of the training images, in [0, 1] units
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def cifar_resnet(model: str, num_classes: int, width: int, layers: tuple[int, ...] | None) -> nn.Module:
    """A timm ResNet with stage widths (w, 2w, 4w, 8w) and the CIFAR stem (3x3 conv, stride 1)."""
    import timm

    if width < 2 or width % 2:
        raise ValueError(f"option width must be an even number >= 2, got {width}")
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


@functools.cache
def _affine(
    stats: tuple[tuple[float, ...], tuple[float, ...]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalisation as one multiply-add, built once per device (no host-to-device copy per step)."""
    mean, std = (torch.tensor(s, device=device).view(1, 3, 1, 1) for s in stats)
    return 1 / (255 * std), -mean / std


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

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> normalised float, on the batch's device."""
        scale, shift = _affine(self.stats, x.device)
        return x.float() * scale + shift  # (x / 255 - mean) / std

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

    def train_loader(self) -> Iterable[Any]:
        images, labels = self._split("train_split", "train_examples")
        data = CroppedFlipped(images, labels, augment=True, padding=4)
        return seeded_loader(
            data, self.batch_size, self.seed, train=True, num_workers=self.opts["num_workers"]
        )

    def val_loader(self) -> Iterable[Any]:
        images, labels = self._split("val_split", "val_examples")
        data = CroppedFlipped(images, labels, augment=False)
        return seeded_loader(data, EVAL_BATCH, 0, train=False, num_workers=self.opts["num_workers"])


def _options(dataset: str, **overrides: Any) -> dict[str, Any]:
    name = dataset.split("/")[-1]
    return {
        "model": "resnet18",  # any timm ResNet name (resnet34, resnet50, ...)
        "width": 64,  # stage widths (w, 2w, 4w, 8w); 64 is ResNet-18
        "layers": None,  # blocks per stage; None keeps the timm model's
        "num_classes": 100 if name == "cifar100" else 10,
        "label_smoothing": 0.0,
        "dataset": dataset,  # hub name, used when no local files are given or found
        "data_files": None,  # a parquet/arrow path or glob, or {split: path}
        "data_dir": None,  # a directory load_dataset understands (default: <data_root>/<cifar10|cifar100>)
        "image_key": "img",
        "label_key": "fine_label" if name == "cifar100" else "label",
        "train_split": "train",
        "val_split": "test",
        "train_examples": 0,  # use only the first N examples of a split (0: all)
        "val_examples": 0,
        "num_workers": 4,
        **overrides,
    }


def _build(
    name: str, local_name: str, defaults: Mapping[str, Any], batch_size: int
) -> Callable[[Mapping[str, Any], int, Path], CifarTask]:
    def build(options: Mapping[str, Any], seed: int, data_root: Path) -> CifarTask:
        opts = check_options(name, options, defaults)
        if not 0.0 <= float(opts["label_smoothing"]) < 1.0:
            raise ValueError(
                f"task {name}: option label_smoothing must be in [0, 1), got {opts['label_smoothing']}"
            )
        source = Source.from_options(opts, data_root, local_name)
        return CifarTask(
            name=name,
            opts=opts,
            stats=STATS[local_name],
            batch_size=int(opts.get("batch_size", batch_size)),
            seed=seed,
            source=source,
            label_smoothing=float(opts["label_smoothing"]),
        )

    return build


def _entry(
    name: str,
    dataset: str,
    *,
    size: str,
    description: str,
    target: float,
    steps: int,
    batch_size: int,
    eval_every: int,
    flops_per_step: float,
    requires_gpu: bool,
    **overrides: Any,
) -> TaskEntry:
    local_name = dataset.split("/")[-1]
    defaults = _options(dataset, **overrides)
    return TaskEntry(
        name=name,
        family="resnet",
        size=size,
        description=description,
        metric="val/error",
        mode="min",
        target=target,
        steps=steps,
        batch_size=batch_size,
        version=VERSION,
        build=_build(name, local_name, defaults, batch_size),
        options=defaults,
        eval_every=eval_every,
        metrics={"val/error": "min", "val/loss": "min"},
        flops_per_step=flops_per_step,
        requires_gpu=requires_gpu,
    )


# flops_per_step: forward + backward at the defaults, from torch.utils.flop_counter.FlopCounterMode
# (tests/tasks/test_vision.py recounts the tiny one). 390 steps of 128 are one epoch of CIFAR.
@TASKS.register("cifar10_resnet18")
def cifar10_resnet18() -> TaskEntry:
    return _entry(
        "cifar10_resnet18",
        "uoft-cs/cifar10",
        size="18",
        description="ResNet-18 (CIFAR stem) on CIFAR-10, 20 epochs at batch 128",
        target=0.06,  # 94% top-1: a well-tuned 20-epoch run gets there, a mistuned one does not
        steps=7_800,
        batch_size=128,
        eval_every=780,
        flops_per_step=426.11e9,
        requires_gpu=True,
    )


@TASKS.register("cifar100_resnet18")
def cifar100_resnet18() -> TaskEntry:
    return _entry(
        "cifar100_resnet18",
        "uoft-cs/cifar100",
        size="18",
        description="ResNet-18 (CIFAR stem) on CIFAR-100, 20 epochs at batch 128",
        target=0.30,  # 70% top-1
        steps=7_800,
        batch_size=128,
        eval_every=780,
        flops_per_step=426.15e9,
        requires_gpu=True,
    )


@TASKS.register("cifar10_resnet_tiny")
def cifar10_resnet_tiny() -> TaskEntry:
    return _entry(
        "cifar10_resnet_tiny",
        "uoft-cs/cifar10",
        size="tiny",
        description="ResNet-10 at width 16 (CIFAR stem) on CIFAR-10, CPU-sized: 600 steps of 64",
        target=0.50,  # 50% top-1 after 38,400 images (0.8 epoch): an estimate, calibrate on real data
        steps=600,
        batch_size=64,
        eval_every=150,
        flops_per_step=TINY_FLOPS,
        requires_gpu=False,
        width=16,
        layers=(1, 1, 1, 1),
        val_examples=2_000,  # the first 2,000 test images: a CPU evaluates them in about a second
        num_workers=0,
    )


TINY_FLOPS = 6.15e9
