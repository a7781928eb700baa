"""Vision Transformers on ImageNet-1k: timm ViTs trained from scratch with the standard transforms.

Tasks: `imagenet_vit_small` (timm `vit_small_patch16_224`, full size, GPU) and `imagenet_vit_tiny`
(a 4-layer, 96-wide ViT on 64 px images with 8 px patches, 64 tokens, for CPUs).

Model: `timm.create_model(model, num_classes=..., img_size=..., **model_kwargs)`; option `model` takes
any timm name and `model_kwargs` any of its constructor arguments (depth, embed_dim, num_heads,
patch_size, drop_path_rate, ...).

Data: ImageNet-1k in the Hugging Face hub schema (`ILSVRC/imagenet-1k`: `image`, `label`; the hub
copy is gated: accept its terms and `huggingface-cli login` once), or any local copy in that schema:
option `data_files`, option `data_dir` (parquet/arrow files named by split, or an imagefolder tree
`train/<class>/*.JPEG`, `validation/<class>/*.JPEG`), or `<data_root>/imagenet` (see
`bench.tasks.image_data`). Rows are decoded per example in the loader, so on a CPU a pre-resized copy
(e.g. 64 px) keeps the tiny task from waiting on JPEG decoding.

Transforms (timm's `create_transform`, mean/std/interpolation from the model's timm config):
train: RandomResizedCrop(img_size, scale=(min_scale, 1)) and horizontal flip, seeded per example;
eval: resize to img_size / crop_pct and centre crop. Label smoothing applies to the training loss.

Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.registry import TASKS
from bench.tasks.base import TaskEntry
from bench.tasks.image_data import ClassificationTask, PilTransformed, Source, check_options, seeded_loader

VERSION = 1


def vit(model: str, num_classes: int, img_size: int, model_kwargs: Mapping[str, Any]) -> nn.Module:
    """`timm.create_model`; `img_size` is passed only when it differs from the model's own, so a
    non-ViT name (resnet50, convnext_tiny, ...) works at its native size."""
    import timm
    from timm.models import get_pretrained_cfg

    kwargs = {"num_classes": num_classes, **dict(model_kwargs)}
    cfg = get_pretrained_cfg(model)
    if cfg is None or tuple(cfg.input_size[-2:]) != (img_size, img_size):
        kwargs.setdefault("img_size", img_size)
    return timm.create_model(model, **kwargs)


def transforms(
    model: str, img_size: int, min_scale: float, auto_augment: str | None
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor], float]:
    """(train, eval, crop_pct) with the model's mean, std, interpolation and crop_pct."""
    from timm.data import create_transform, resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    config = resolve_data_config(
        {"input_size": (3, img_size, img_size)}, pretrained_cfg=cfg.to_dict() if cfg else None
    )
    common = {
        "input_size": config["input_size"],
        "interpolation": config["interpolation"],
        "mean": config["mean"],
        "std": config["std"],
    }
    train = create_transform(
        **common,
        is_training=True,
        scale=(min_scale, 1.0),
        hflip=0.5,
        color_jitter=0.0,  # plain RandomResizedCrop + flip unless auto_augment is set
        auto_augment=auto_augment,
    )
    evaluate = create_transform(**common, is_training=False, crop_pct=config["crop_pct"])
    return train, evaluate, float(config["crop_pct"])


@functools.cache
def _split(source: Source, split: str, limit: int | None) -> Any:
    """A split with undecoded images (`PilTransformed` decodes them), cached per process."""
    import datasets

    ds = source.load(split).cast_column(source.image_key, datasets.Image(decode=False))
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


@dataclass(frozen=True)
class VitTask(ClassificationTask):
    name: str
    opts: Mapping[str, Any]
    batch_size: int
    seed: int
    source: Source
    label_smoothing: float = 0.0

    def build_model(self) -> nn.Module:
        o = self.opts
        return vit(o["model"], int(o["num_classes"]), int(o["img_size"]), o["model_kwargs"] or {})

    def _data(self, split_key: str, limit_key: str, train: bool) -> PilTransformed:
        o = self.opts
        ds = _split(self.source, o[split_key], int(o[limit_key] or 0) or None)
        labels = ds.features[o["label_key"]]
        if getattr(labels, "num_classes", 0) > int(o["num_classes"]):
            raise ValueError(
                f"task {self.name}: split '{o[split_key]}' has {labels.num_classes} classes, more than "
                f"option num_classes {o['num_classes']}"
            )
        size, min_scale = int(o["img_size"]), float(o["min_scale"])
        train_tf, eval_tf, crop_pct = transforms(o["model"], size, min_scale, o["auto_augment"])
        # The smallest side a decoded image needs: the smallest random crop (area fraction min_scale),
        # or the eval resize (img_size / crop_pct), must still cover img_size pixels.
        min_side = math.ceil(size / math.sqrt(min_scale) if train else size / crop_pct)
        return PilTransformed(ds, o["image_key"], o["label_key"], train_tf if train else eval_tf, min_side)

    def train_loader(self) -> Iterable[Any]:
        data = self._data("train_split", "train_examples", train=True)
        return seeded_loader(
            data, self.batch_size, self.seed, train=True, num_workers=self.opts["num_workers"]
        )

    def val_loader(self) -> Iterable[Any]:
        data = self._data("val_split", "val_examples", train=False)
        batch = int(self.opts["eval_batch_size"])
        return seeded_loader(data, batch, 0, train=False, num_workers=self.opts["num_workers"])


def _options(**overrides: Any) -> dict[str, Any]:
    return {
        "model": "vit_small_patch16_224",  # any timm model name
        "model_kwargs": {},  # extra timm create_model arguments: depth, embed_dim, drop_path_rate, ...
        "img_size": 224,
        "num_classes": 1000,
        "label_smoothing": 0.1,
        "min_scale": 0.08,  # RandomResizedCrop scale range is (min_scale, 1)
        "auto_augment": None,  # a timm auto-augment string, e.g. "rand-m9-mstd0.5"
        "dataset": "ILSVRC/imagenet-1k",
        "data_files": None,
        "data_dir": None,  # default: <data_root>/imagenet when it exists
        "image_key": "image",
        "label_key": "label",
        "train_split": "train",
        "val_split": "validation",
        "train_examples": 0,  # use only the first N examples of a split (0: all)
        "val_examples": 0,
        "eval_batch_size": 250,
        "num_workers": 8,
        **overrides,
    }


def _build(
    name: str, defaults: Mapping[str, Any], batch_size: int
) -> Callable[[Mapping[str, Any], int, Path], VitTask]:
    def build(options: Mapping[str, Any], seed: int, data_root: Path) -> VitTask:
        opts = check_options(name, options, defaults)
        if not 0.0 <= float(opts["label_smoothing"]) < 1.0:
            raise ValueError(
                f"task {name}: option label_smoothing must be in [0, 1), got {opts['label_smoothing']}"
            )
        if not 0.0 < float(opts["min_scale"]) <= 1.0:
            raise ValueError(f"task {name}: option min_scale must be in (0, 1], got {opts['min_scale']}")
        source = Source.from_options(opts, data_root, "imagenet")
        return VitTask(
            name=name,
            opts=opts,
            batch_size=int(opts.get("batch_size", batch_size)),
            seed=seed,
            source=source,
            label_smoothing=float(opts["label_smoothing"]),
        )

    return build


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
    defaults = _options(**overrides)
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
        build=_build(name, defaults, batch_size),
        options=defaults,
        eval_every=eval_every,
        metrics={"val/error": "min", "val/loss": "min"},
        flops_per_step=flops_per_step,
        requires_gpu=requires_gpu,
    )


# flops_per_step: forward + backward at the defaults, from torch.utils.flop_counter.FlopCounterMode
# (tests/tasks/test_vision.py recounts the tiny one).
@TASKS.register("imagenet_vit_small")
def imagenet_vit_small() -> TaskEntry:
    return _entry(
        "imagenet_vit_small",
        size="small",
        description="ViT-S/16 on ImageNet-1k at 224 px, 90 epochs at batch 1024 (Beyer et al. 2022)",
        target=0.25,  # 75% top-1; the 90-epoch plain ViT-S/16 baseline reaches 76.5%
        steps=112_590,  # 90 epochs of 1,281,167 images
        batch_size=1024,
        eval_every=5_000,
        flops_per_step=SMALL_FLOPS,
        requires_gpu=True,
    )


@TASKS.register("imagenet_vit_tiny")
def imagenet_vit_tiny() -> TaskEntry:
    return _entry(
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
    )


SMALL_FLOPS = 28.137e12
TINY_FLOPS = 6.313e9
