"""Vision Transformers on ImageNet-1k: timm ViTs trained from scratch with the standard transforms.

The implementation of the tasks declared in `bench.tasks.vit` (options, budgets, FLOPs live there).

Tasks: `imagenet_vit_small` (timm `vit_small_patch16_224`, full size, GPU) and `imagenet_vit_tiny`
(a 4-layer, 96-wide ViT on 64 px images with 8 px patches, 64 tokens, for CPUs).

Model: `timm.create_model(model, num_classes=..., img_size=..., **model_kwargs)`; option `model` takes
any timm name and `model_kwargs` any of its constructor arguments (depth, embed_dim, num_heads,
patch_size, drop_path_rate, ...).

Data: ImageNet-1k in the Hugging Face hub schema (`ILSVRC/imagenet-1k`: `image`, `label`; the hub
copy is gated: accept its terms and `huggingface-cli login` once), or any local copy in that schema:
option `data_files`, option `data_dir` (parquet/arrow files named by split, or an imagefolder tree
`train/<class>/*.JPEG`, `validation/<class>/*.JPEG`), or `<data_root>/imagenet` (see
`bench.workloads.image_data`). Two ways to decode:

- per image, in the loader (the default): PIL decodes each JPEG (at a reduced DCT scale when it is
  much larger than needed) and timm's transforms crop, flip and normalise it, in `num_workers`
  processes. ~3 ms of CPU per ImageNet-sized image, measured here: a GPU waits on the CPU's cores.
- `stored_size: S`: every image decoded once, resized to S x S, into the datasets cache
  (`image_data.stored_split`); the loader only gathers uint8 rows (~30 us per image here) and the
  crops, resizes and flips run on the device for the whole batch (`image_data.resized_crops`).
  Crop boxes are torchvision's RandomResizedCrop boxes of the original image, so the augmentation is
  the same distribution, sampled from S x S pixels instead of the original's (and bilinear instead
  of bicubic): other numbers than the per-image path's. Costs the disk: 3 S^2 bytes per image
  (ImageNet's 1.28M at S = 256: 252 GB).

Transforms (timm's `create_transform`, mean/std/interpolation from the model's timm config):
train: RandomResizedCrop(img_size, scale=(min_scale, 1)) and horizontal flip, seeded per example;
eval: resize to img_size / crop_pct and centre crop. Label smoothing applies to the training loss.

Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
Parameter roles: the head is timm's classifier (`head`); the embeddings are the parameters the model
names in `no_weight_decay()` (`pos_embed`, `cls_token`).
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

from bench.tasks.base import ParamRoles
from bench.workloads.image_data import (
    ClassificationTask,
    PilTransformed,
    Source,
    StoredImages,
    normalized,
    resized_crops,
    seeded_loader,
    stored_split,
    timm_param_roles,
)


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


@functools.cache
def data_config(model: str, img_size: int) -> dict[str, Any]:
    """timm's data configuration of `model` at `img_size`: mean, std, interpolation, crop_pct."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    return resolve_data_config(
        {"input_size": (3, img_size, img_size)}, pretrained_cfg=cfg.to_dict() if cfg else None
    )


def transforms(
    model: str, img_size: int, min_scale: float, auto_augment: str | None
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor], float]:
    """(train, eval, crop_pct) with the model's mean, std, interpolation and crop_pct."""
    from timm.data import create_transform

    config = data_config(model, img_size)
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

    def param_roles(self, model: nn.Module) -> ParamRoles:
        return timm_param_roles(model)

    def _data(self, split_key: str, limit_key: str, train: bool) -> PilTransformed | StoredImages:
        o = self.opts
        limit = int(o[limit_key] or 0) or None
        ds = _split(self.source, o[split_key], limit)
        labels = ds.features[o["label_key"]]
        if getattr(labels, "num_classes", 0) > int(o["num_classes"]):
            raise ValueError(
                f"task {self.name}: split '{o[split_key]}' has {labels.num_classes} classes, more than "
                f"option num_classes {o['num_classes']}"
            )
        size, min_scale = int(o["img_size"]), float(o["min_scale"])
        crop_pct = float(data_config(o["model"], size)["crop_pct"])
        if o["stored_size"] is not None:
            stored_size = int(o["stored_size"])
            stored = stored_split(self.source, o[split_key], stored_size, limit)
            return StoredImages(stored, stored_size, train=train, scale=(min_scale, 1.0), crop_pct=crop_pct)
        train_tf, eval_tf, _ = transforms(o["model"], size, min_scale, o["auto_augment"])
        # The smallest side a decoded image needs: the smallest random crop (area fraction min_scale),
        # or the eval resize (img_size / crop_pct), must still cover img_size pixels.
        min_side = math.ceil(size / math.sqrt(min_scale) if train else size / crop_pct)
        return PilTransformed(ds, o["image_key"], o["label_key"], train_tf if train else eval_tf, min_side)

    def inputs(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored images: crop, resize and flip the whole batch on its device, then normalise with the
        model's mean and std. Decoded-per-image batches arrive ready."""
        if self.opts["stored_size"] is None:
            return super().inputs(batch)
        images, labels, crops = batch
        size = int(self.opts["img_size"])
        config = data_config(self.opts["model"], size)
        return normalized(resized_crops(images, crops, size), config["mean"], config["std"]), labels

    def train_loader(self) -> Iterable[Any]:
        data = self._data("train_split", "train_examples", train=True)
        return seeded_loader(
            data, self.batch_size, self.seed, train=True, num_workers=self.opts["num_workers"]
        )

    def val_loader(self) -> Iterable[Any]:
        data = self._data("val_split", "val_examples", train=False)
        batch = int(self.opts["eval_batch_size"])
        return seeded_loader(data, batch, 0, train=False, num_workers=self.opts["num_workers"])


def build(options: Mapping[str, Any], seed: int, data_root: Path, *, name: str) -> VitTask:
    """`options`: the validated `bench.tasks.vit.VitOptions` as a dict, plus `batch_size`."""
    return VitTask(
        name=name,
        opts=options,
        batch_size=options["batch_size"],
        seed=seed,
        source=Source.from_options(options, data_root, "imagenet"),
        label_smoothing=options["label_smoothing"],
    )
