"""ResNets on CIFAR-10/100: timm ResNets with the CIFAR stem, trained from scratch on 32x32 images.

Declarations only (no torch): the implementation is `bench.workloads.resnet`.

Tasks: `cifar10_resnet18` and `cifar100_resnet18` (full size, GPU) and `cifar10_resnet_tiny` (a
ResNet-10 at width 16 that runs at ~0.15 s/step on two CPU cores).

Options (`ResnetOptions`): the timm `model`, stage `width` and `layers`, and the image data options
of `bench.tasks.image_data.ImageDataOptions`. Data: CIFAR-10/100 in the hub schema
(`uoft-cs/cifar10`: `img`, `label`; `uoft-cs/cifar100`: `img`, `fine_label`), read from option
`data_files`, option `data_dir`, `<data_root>/cifar10` (`cifar100`) or the hub; the official test
split is the validation set. The splits are held on the training device whole, augmented there as
tensor ops: no loader workers to set.

Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
Parameter roles: the head is the classifier `fc`; no embeddings.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from bench.registry import Lazy
from bench.tasks.base import ChanceClassifier, TaskEntry
from bench.tasks.image_data import ImageDataOptions
from bench.tasks.options import with_defaults

VERSION = 1

# Forward + backward at the defaults, from torch.utils.flop_counter.FlopCounterMode
# (tests/tasks/test_vision.py recounts them).
RESNET18_CIFAR10_FLOPS = 426.11e9
RESNET18_CIFAR100_FLOPS = 426.15e9
TINY_FLOPS = 6.15e9

# Blocks per stage: four stages (widths w, 2w, 4w, 8w), at least one block each. A YAML list is taken.
Layers = Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(strict=False, min_length=4, max_length=4)]


class ResnetOptions(ImageDataOptions):
    """A timm ResNet with the CIFAR stem, and its data."""

    model: str = Field("resnet18", description="any timm ResNet name (resnet34, resnet50, ...)")
    width: int = Field(
        64,
        ge=2,
        multiple_of=2,  # timm's deep stem, asked for w / 2 channels, must output w
        description="stage widths (w, 2w, 4w, 8w); 64 is ResNet-18",
    )
    layers: Layers | None = Field(None, description="blocks per stage; None keeps the timm model's")


def cifar_options(name: str, dataset: str, **overrides: Any) -> type[ResnetOptions]:
    """The schema of a CIFAR task, its defaults for `dataset` (`uoft-cs/cifar10` or `uoft-cs/cifar100`)."""
    cifar100 = dataset.split("/")[-1] == "cifar100"
    defaults: dict[str, Any] = {
        "num_classes": 100 if cifar100 else 10,
        "dataset": dataset,
        "image_key": "img",
        "label_key": "fine_label" if cifar100 else "label",
        "val_split": "test",
        **overrides,
    }
    return with_defaults(ResnetOptions, name, **defaults)


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
    schema_name = "".join(part.capitalize() for part in name.split("_")) + "Options"
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
        # <data_root>/<local_name> is where the task looks for a local copy, and names its statistics
        build=Lazy("bench.workloads.resnet:build", name=name, local_name=dataset.split("/")[-1]),
        options=cifar_options(schema_name, dataset, **overrides),
        eval_every=eval_every,
        metrics={"val/error": "min", "val/loss": "min"},
        failure=ChanceClassifier(option="num_classes"),
        flops_per_step=flops_per_step,
        requires_gpu=requires_gpu,
    )


# 390 steps of 128 are one epoch of CIFAR.
ENTRIES: tuple[TaskEntry, ...] = (
    _entry(
        "cifar10_resnet18",
        "uoft-cs/cifar10",
        size="18",
        description="ResNet-18 (CIFAR stem) on CIFAR-10, 20 epochs at batch 128",
        target=0.06,  # 94% top-1: a well-tuned 20-epoch run gets there, a mistuned one does not
        steps=7_800,
        batch_size=128,
        eval_every=780,
        flops_per_step=RESNET18_CIFAR10_FLOPS,
        requires_gpu=True,
    ),
    _entry(
        "cifar100_resnet18",
        "uoft-cs/cifar100",
        size="18",
        description="ResNet-18 (CIFAR stem) on CIFAR-100, 20 epochs at batch 128",
        target=0.30,  # 70% top-1
        steps=7_800,
        batch_size=128,
        eval_every=780,
        flops_per_step=RESNET18_CIFAR100_FLOPS,
        requires_gpu=True,
    ),
    _entry(
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
    ),
)
