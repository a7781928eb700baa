"""Vision Transformers on ImageNet-1k: timm ViTs trained from scratch with the standard transforms.

Declarations only (no torch): the implementation is `bench.workloads.vit`.

Tasks: `imagenet_vit_small` (timm `vit_small_patch16_224`, full size, GPU) and `imagenet_vit_tiny`
(a 4-layer, 96-wide ViT on 64 px images with 8 px patches, 64 tokens, for CPUs).

Options (`VitOptions`): the timm `model` and its `model_kwargs`, `img_size`, the augmentation
(`min_scale`, `auto_augment`), `eval_batch_size`, how images are decoded (`num_workers` loader
processes decoding every image, or `stored_size`: decoded once into the datasets cache, cropped on the
device), and the image data options of
`bench.tasks.image_data.ImageDataOptions`. Data: ImageNet-1k in the hub schema (`ILSVRC/imagenet-1k`:
`image`, `label`), or a local copy in that schema (option `data_files`, option `data_dir`, or
`<data_root>/imagenet`).

Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
Parameter roles: the head is the classifier `head`; the embeddings are what the timm model lists in
`no_weight_decay()` (`pos_embed`, `cls_token`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from bench.registry import Lazy
from bench.tasks.base import ChanceClassifier, TaskEntry
from bench.tasks.image_data import ImageDataOptions
from bench.tasks.options import with_defaults

VERSION = 1

# Forward + backward at the defaults, from torch.utils.flop_counter.FlopCounterMode
# (tests/tasks/test_vision.py recounts them).
SMALL_FLOPS = 28.137e12
TINY_FLOPS = 6.313e9


class VitOptions(ImageDataOptions):
    """A timm model (a ViT unless `model` names another) on ImageNet-schema data, timm's transforms."""

    model: str = Field("vit_small_patch16_224", description="any timm model name")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="extra timm create_model arguments: depth, embed_dim, num_heads, patch_size, drop_path_rate, ...",
    )
    img_size: int = Field(224, ge=1, description="training and evaluation resolution in pixels")
    min_scale: float = Field(
        0.08, gt=0.0, le=1.0, description="RandomResizedCrop scale range is (min_scale, 1)"
    )
    auto_augment: str | None = Field(None, description='a timm auto-augment string, e.g. "rand-m9-mstd0.5"')
    eval_batch_size: int = Field(250, ge=1, description="validation batch size")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    stored_size: int | None = Field(
        None,
        ge=8,
        description="decode every image once, resized to stored_size x stored_size, into the datasets "
        "cache; crops and flips then run on the training device (None: decode and transform every image "
        "in the loader with PIL and timm's transforms)",
    )

    @model_validator(mode="after")
    def _stored_images_take_no_auto_augment(self) -> VitOptions:
        if self.stored_size is not None and self.auto_augment is not None:
            raise ValueError("auto_augment runs timm's PIL transforms per image: it needs stored_size: null")
        return self


def imagenet_options(name: str, **overrides: Any) -> type[VitOptions]:
    """The schema of an ImageNet task with its defaults."""
    defaults: dict[str, Any] = {
        "num_classes": 1000,
        "label_smoothing": 0.1,
        "dataset": "ILSVRC/imagenet-1k",
        "num_workers": 8,
        **overrides,
    }
    return with_defaults(VitOptions, name, **defaults)


def _entry(
    name: str,
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
        family="vit",
        size=size,
        description=description,
        metric="val/error",
        mode="min",
        target=target,
        steps=steps,
        batch_size=batch_size,
        version=VERSION,
        build=Lazy("bench.workloads.vit:build", name=name),
        options=imagenet_options(schema_name, **overrides),
        eval_every=eval_every,
        metrics={"val/error": "min", "val/loss": "min"},
        failure=ChanceClassifier(option="num_classes"),
        flops_per_step=flops_per_step,
        requires_gpu=requires_gpu,
    )


ENTRIES: tuple[TaskEntry, ...] = (
    _entry(
        "imagenet_vit_small",
        size="small",
        description="ViT-S/16 on ImageNet-1k at 224 px, 90 epochs at batch 1024 (Beyer et al. 2022)",
        target=0.25,  # 75% top-1; the 90-epoch plain ViT-S/16 baseline reaches 76.5%
        steps=112_590,  # 90 epochs of 1,281,167 images
        batch_size=1024,
        eval_every=5_000,
        flops_per_step=SMALL_FLOPS,
        requires_gpu=True,
    ),
    _entry(
        "imagenet_vit_tiny",
        size="tiny",
        description="4-layer ViT (width 96, 8 px patches) on ImageNet-1k at 64 px, CPU-sized",
        target=0.97,  # 3% top-1 (30x chance) after 19,200 images: an estimate, calibrate on real data
        steps=600,
        batch_size=32,
        eval_every=150,
        flops_per_step=TINY_FLOPS,
        requires_gpu=False,
        model="vit_tiny_patch16_224",
        model_kwargs={"patch_size": 8, "depth": 4, "embed_dim": 96, "num_heads": 3},
        img_size=64,
        min_scale=0.35,  # 0.08 is for long runs; few steps at 64 px learn little from tiny crops
        val_examples=2_000,
        eval_batch_size=200,
        num_workers=0,
    ),
)
