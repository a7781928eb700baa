"""Shared pieces of the image-classification tasks (digits, resnet, vit): data, batches, metrics.

- `ClassificationTask`: training loss (cross-entropy, optional label smoothing) and validation sums
  (`loss`, `error`) for any task whose batches are `(inputs, labels)`; `timm_param_roles`, the head
  and embeddings of a timm model.
- `seeded_loader`: a DataLoader whose order *and augmentation* are a function of the seed only. Its
  `SeededSampler` yields `(index, aug_seed)` pairs drawn from one seeded `torch.Generator`, and the
  datasets below augment from `aug_seed`, so every optimizer sees the same images in the same order,
  with any `num_workers`, and the training loop's own RNG (dropout, stochastic depth) is left alone.
- `Source`: where the splits of an image dataset in the Hugging Face hub schema (an image column and an
  integer label column) come from: local files or the hub (options declared, and checked, by
  `bench.tasks.image_data.ImageDataOptions`). Resolution order, first match wins:
  option `data_files` (a {split: path, glob or list} mapping of parquet/arrow/json files, or of
  webdataset `.tar` shards, whose image and label keys are the file extensions, e.g. `jpg` and `cls`),
  option `data_dir` (a directory `datasets.load_dataset` understands: parquet/arrow files named by
  split, or an `imagefolder` tree `train/<class>/*.jpg`), `<data_root>/<local_name>` when it exists,
  else the hub name in option `dataset` (needs a network or a warm HF cache).
- `decode_uint8`: a whole small-image split decoded once into a uint8 tensor (CIFAR).
- `ResidentImages` (a whole split on the device, CIFAR's pad-crop-flip as whole-batch tensor ops, in
  the order and with the augmentation `seeded_loader` would give) and `PilTransformed` (any PIL
  transform, e.g. timm's `create_transform`, run under an RNG seeded from `aug_seed`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.tasks.base import ParamRoles
from bench.workloads import parameter_names

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs [B, ...], integer labels [B])


class ClassificationTask:
    """Loss and metrics for `(inputs, labels)` batches. Subclasses add the model and the loaders and
    may override `prepare` (e.g. uint8 -> normalised float on the batch's device), or `inputs` for
    batches of another shape (the stored ViT batches: images, labels, crops)."""

    label_smoothing: float = 0.0  # training loss only; val/loss is plain cross-entropy

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def inputs(self, batch: Any) -> Batch:
        """The model's input and the labels of a batch, on the batch's device."""
        x, y = batch
        return self.prepare(x), y

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = self.inputs(batch)
        return F.cross_entropy(model(x), y, label_smoothing=self.label_smoothing)

    def validation_sums(self, model: nn.Module, batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        x, y = self.inputs(batch)
        logits = model(x).float()
        loss = F.cross_entropy(logits, y, reduction="sum")
        error = (logits.argmax(dim=-1) != y).sum().float()  # top-1
        return {"loss": loss, "error": error}, int(y.numel())


def normalized(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Pixels in 0..255 (uint8 or float) -> (x / 255 - mean) / std per channel, as one multiply-add."""
    scale, shift = _affine(tuple(mean), tuple(std), x.device)
    return x.float() * scale + shift


@functools.cache
def _affine(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Built once per device (no host-to-device copy per step)."""
    m, s = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))
    return 1 / (255 * s), -m / s


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields `(index, aug_seed)`: a fresh permutation per pass (or 0..n-1) and a random 62-bit
    augmentation seed per example, all drawn from `generator`, so passes continue one seeded stream."""

    def __init__(self, n: int, generator: torch.Generator, shuffle: bool):
        self.n, self.generator, self.shuffle = n, generator, shuffle

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator)
        return zip(order.tolist(), seeds.tolist(), strict=True)

    def __len__(self) -> int:
        return self.n


def seeded_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    *,
    train: bool,
    num_workers: int = 0,
) -> DataLoader:
    """Training loaders shuffle and drop the last partial batch (every step has `batch_size` examples);
    validation loaders keep the order and every example. `dataset` takes `(index, aug_seed)` items."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SeededSampler(len(dataset), torch.Generator().manual_seed(seed), shuffle=train),  # type: ignore[arg-type]
        drop_last=train,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        # The loader draws its workers' base seed from this one on every new iterator (not on a
        # persistent-worker reset), so it must not share the sampler's stream, nor use the global RNG.
        generator=torch.Generator().manual_seed(seed),
    )


class ResidentImages:
    """Batches of a whole split held as one tensor `[N, C, H, W]` (CIFAR's uint8 images, the digits'
    floats), resident on the training device once the runner calls `to(device)`, with (`augment`)
    the CIFAR augmentation as whole-batch tensor ops: zero-pad by `padding`, random crop back to
    H x W, horizontal flip with probability 1/2. No per-example Python, no worker processes, no
    host-to-device copy per step (the runner's batch transfer is then a no-op).

    Order and augmentation are those `seeded_loader` gives a per-example dataset: per pass, a
    permutation and one 62-bit `aug_seed` per example drawn from a `torch.Generator` seeded with
    `seed` (`SeededSampler`'s draws), batches of `batch_size` (the last partial one dropped when
    training); the crop offsets and the flip are the digits of `aug_seed` in base `2 * padding + 1`
    (`dy = aug % span`, `dx = aug // span % span`, `flip = aug // span**2 % 2`), so a trial sees the
    same images whatever device holds them. `shard(rank, world)` is a process's share of a
    multi-process trial: item `rank` of every group of `world` of the same stream, as
    `bench.distributed.shard_loader` does for a DataLoader."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        *,
        train: bool,
        augment: bool = False,
        padding: int = 4,
        rank: int = 0,
        world: int = 1,
    ):
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.train, self.augment, self.padding = train, augment, padding
        self.rank, self.world = rank, world
        self.generator = torch.Generator().manual_seed(seed)

    def _replace(self, **changes: Any) -> ResidentImages:
        fields = dict(images=self.images, labels=self.labels, train=self.train, augment=self.augment,
                      padding=self.padding, rank=self.rank, world=self.world)  # fmt: skip
        out = ResidentImages(batch_size=self.batch_size, seed=self.seed, **{**fields, **changes})
        out.generator = self.generator  # one stream of draws, wherever the images live
        return out

    def to(self, device: torch.device | str) -> ResidentImages:
        """This loader with its images and labels on `device` (batches are then drawn there)."""
        return self._replace(images=self.images.to(device), labels=self.labels.to(device))

    def shard(self, rank: int, world: int) -> ResidentImages:
        return self._replace(rank=rank, world=world)

    def _items(self) -> int:
        """Examples this process reads per pass (`strided`: even shares when training)."""
        n = len(self.labels)
        return n // self.world if self.train else (n - self.rank + self.world - 1) // self.world

    def __len__(self) -> int:
        items = self._items()
        return items // self.batch_size if self.train else -(-items // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.labels)
        # SeededSampler's draws, in its order: the permutation, then the augmentation seeds.
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        seeds = torch.randint(0, 2**62, (n,), generator=self.generator)
        stop = (n // self.world) * self.world if self.train else n
        order, seeds = order[self.rank : stop : self.world], seeds[self.rank : stop : self.world]
        device = self.images.device
        order, seeds = order.to(device, non_blocking=True), seeds.to(device, non_blocking=True)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.augment:
                images = self.crop_flip(images, seeds[start : start + self.batch_size])
            yield images, self.labels[index]

    def crop_flip(self, images: torch.Tensor, aug: torch.Tensor) -> torch.Tensor:
        """`images` [B, C, H, W] zero-padded, cropped at the offsets and flipped as `aug` [B] says, in one
        gather: output pixel (y, x) of image b is padded pixel (dy_b + y, dx_b + x), or
        (dy_b + y, dx_b + W - 1 - x) when b is flipped."""
        p, (b, c, h, w) = self.padding, images.shape
        span = 2 * p + 1
        dy, dx, flip = aug % span, aug // span % span, aug // span**2 % 2
        padded = F.pad(images, (p, p, p, p))
        x = torch.arange(w, device=images.device)
        rows = dy[:, None] + torch.arange(h, device=images.device)  # [B, H]
        cols = dx[:, None] + torch.where(flip[:, None].bool(), w - 1 - x, x)  # [B, W]
        batch = torch.arange(b, device=images.device)[:, None, None, None]
        channel = torch.arange(c, device=images.device)[None, :, None, None]
        return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed Python's and torch's CPU RNGs for the block (torchvision and timm transforms draw from
    them), then restore both so the caller's streams are untouched."""
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    random.seed(seed)
    torch.default_generator.manual_seed(seed)  # torch.manual_seed would also queue CUDA seeding: ~3 ms
    try:
        yield
    finally:
        random.setstate(py_state)
        torch.set_rng_state(torch_state)


class PilTransformed(Dataset):
    """Rows of a Hugging Face dataset decoded to PIL and passed through `transform` (ViT).

    `data`'s image column must be cast to `datasets.Image(decode=False)`: images are decoded here so
    that JPEGs can be decoded at a reduced scale (`PIL.Image.draft`, DCT-domain 1/2, 1/4, 1/8) when
    the image is much larger than the transform needs: the result stays at least `min_side` pixels on
    each side, so only downsampling that the transform would do anyway is done earlier and cheaper."""

    def __init__(
        self,
        data: Any,
        image_key: str,
        label_key: str,
        transform: Callable[[Any], torch.Tensor],
        min_side: int,
    ):
        self.data, self.image_key, self.label_key = data, image_key, label_key
        self.transform, self.min_side = transform, min_side

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]) -> Batch:
        import PIL.Image

        index, aug = item
        row = self.data[index]
        stored = row[self.image_key]  # {"bytes": ..., "path": ...}
        image = PIL.Image.open(io.BytesIO(stored["bytes"]) if stored.get("bytes") else stored["path"])
        image.draft("RGB", (self.min_side, self.min_side))  # a no-op for anything but JPEG
        with seeded_rng(aug):
            x = self.transform(image.convert("RGB"))
        return x, torch.tensor(row[self.label_key], dtype=torch.long)


class StoredImages(Dataset):
    """Rows of `stored_split` (images decoded once, resized to S x S) with the crop each is to get, as
    `(image uint8 [3, S, S], label, crop [5])`: the crop box `x1, y1, x2, y2` in stored pixels and a
    flip flag. The crops and flips themselves run on the device, for a whole batch at once
    (`resized_crops`).

    Training: torchvision's `RandomResizedCrop.get_params` on the original image size (`scale`, aspect
    ratio in [3/4, 4/3]) and a flip with probability 1/2, drawn under torch's RNG seeded from the
    example's `aug_seed` (see `seeded_rng`). Evaluation: the centre crop of timm's eval transform (a
    square of `crop_pct` times the shorter side). The stored image is the whole original squeezed to a
    square, so a box in original pixels maps to stored pixels by scaling each axis: the crop's content
    and aspect ratio are the original's, at the stored resolution."""

    def __init__(self, data: Any, size: int, *, train: bool, scale: tuple[float, float], crop_pct: float):
        self.data, self.size = data.with_format("arrow"), size
        self.train, self.scale, self.crop_pct = train, scale, crop_pct

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.__getitems__([item])[0]

    def __getitems__(
        self, items: list[tuple[int, int]]
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        import numpy as np

        rows = self.data[[index for index, _ in items]]  # one read (an Arrow take) for the batch
        pixels = rows.column("image").combine_chunks()
        offsets = np.frombuffer(pixels.buffers()[1], np.int32)[
            pixels.offset : pixels.offset + len(pixels) + 1
        ]
        images = np.frombuffer(pixels.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
        images = torch.from_numpy(images.reshape(len(items), 3, self.size, self.size))
        heights, widths = rows.column("height").to_numpy(), rows.column("width").to_numpy()
        labels = torch.from_numpy(rows.column("label").to_numpy().astype(np.int64))
        crops = [self.crop(int(heights[k]), int(widths[k]), aug) for k, (_, aug) in enumerate(items)]
        crop = torch.tensor(crops, dtype=torch.float32)
        return list(zip(images, labels, crop, strict=True))

    def crop(self, height: int, width: int, aug: int) -> tuple[float, float, float, float, float]:
        """(x1, y1, x2, y2, flip) in stored pixels for an original image of height x width."""
        from torchvision.transforms import RandomResizedCrop

        if self.train:
            with seeded_rng(aug):
                shape = torch.empty(0, height, width)  # get_params reads only the size
                top, left, h, w = RandomResizedCrop.get_params(shape, list(self.scale), [3 / 4, 4 / 3])
                flip = float(torch.rand(()) < 0.5)
        else:
            h = w = min(height, width) * self.crop_pct
            top, left, flip = (height - h) / 2, (width - w) / 2, 0.0
        sy, sx = self.size / height, self.size / width
        return left * sx, top * sy, (left + w) * sx, (top + h) * sy, flip


def resized_crops(images: torch.Tensor, crops: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images [B, C, S, S] and crops [B, 5] (`StoredImages`) -> float [B, C, size, size] in
    0..255: each box resampled to size x size (torchvision's `roi_align`, bilinear, averaging
    ceil(box / size) samples per output pixel when it shrinks), then flipped where asked. One call
    for the whole batch, on the images' device."""
    from torchvision.ops import roi_align

    index = torch.arange(len(images), device=images.device, dtype=torch.float32)[:, None]
    boxes = torch.cat([index, crops[:, :4].float()], dim=1)
    out = roi_align(images.float(), boxes, output_size=(size, size), sampling_ratio=-1, aligned=True)
    return torch.where(crops[:, 4, None, None, None] > 0.5, out.flip(-1), out)


STORE_VERSION = 1  # bump when `_stored_rows` would store other pixels for the same split


def stored_split(source: Source, split: str, size: int, limit: int | None = None) -> Any:
    """Every image of a split decoded once and resized to `size` x `size` (the whole image, its
    original height and width kept beside it), stored by HF `datasets` in its cache under a
    fingerprint of the split (`datasets`' own fingerprint of the loaded files), `size`, `limit` and
    `STORE_VERSION`; every later trial and worker reads the stored pixels (memory-mapped). Columns:
    `image` (the uint8 pixels [3, size, size] as bytes: batches are read as one buffer), `height`,
    `width` (of the original), `label`. Decoding runs in up to 16 processes
    for large splits (shards of 10,000 images)."""
    import datasets

    data = source.load(split)
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    data = data.cast_column(source.image_key, datasets.Image(decode=False))
    key = {"version": STORE_VERSION, "split": data._fingerprint, "size": size}
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
    features = datasets.Features(
        {
            "image": datasets.Value("binary"),
            "height": datasets.Value("int32"),
            "width": datasets.Value("int32"),
            "label": datasets.Value("int64"),
        }
    )
    shards = [(a, min(a + SHARD, len(data))) for a in range(0, len(data), SHARD)]
    kwargs = dict(data=data, shards=shards, image_key=source.image_key, label_key=source.label_key, size=size)
    return datasets.Dataset.from_generator(
        _stored_rows,
        features=features,
        gen_kwargs=kwargs,
        fingerprint=fingerprint,
        num_proc=max(1, min(len(shards), os.cpu_count() or 1, 16)) if len(shards) > 1 else None,
    )


SHARD = 10_000  # images per decoding job


def _stored_rows(
    data: Any, shards: list[tuple[int, int]], image_key: str, label_key: str, size: int
) -> Iterator[dict[str, Any]]:
    import numpy as np
    import PIL.Image

    for start, stop in shards:
        for row in data.select(range(start, stop)):
            stored = row[image_key]
            image = PIL.Image.open(io.BytesIO(stored["bytes"]) if stored.get("bytes") else stored["path"])
            width, height = image.size
            image.draft("RGB", (size, size))  # JPEG: decode at the smallest DCT scale that covers size
            pixels = np.asarray(image.convert("RGB").resize((size, size), PIL.Image.BILINEAR))
            image_bytes = pixels.transpose(2, 0, 1).tobytes()  # channels first, as the model reads them
            yield {"image": image_bytes, "height": height, "width": width, "label": row[label_key]}


@dataclass(frozen=True)
class Source:
    """Where a dataset's splits come from (hashable, so decoded splits can be cached per process).
    `load(split)` returns a `datasets.Dataset` with only the image and label columns; see the module
    docstring for the lookup order."""

    dataset: str  # hub name
    data_files: tuple[tuple[str, Any], ...] | None  # {split: path, glob or list of them}, frozen
    data_dir: str | None
    data_root: str
    local_name: str  # <data_root>/<local_name> is used when it exists
    image_key: str
    label_key: str

    @classmethod
    def from_options(cls, opts: Mapping[str, Any], data_root: Path, local_name: str) -> Source:
        """From validated `bench.tasks.image_data.ImageDataOptions` (as a dict)."""
        return cls(
            opts["dataset"],
            freeze(opts["data_files"]),
            opts["data_dir"],
            str(data_root),
            local_name,
            opts["image_key"],
            opts["label_key"],
        )

    def load(self, split: str) -> Any:
        import datasets

        local = Path(self.data_root) / self.local_name
        if self.data_files is not None:
            files = dict(self.data_files)  # the schema checked that it has the task's splits
            ds = datasets.load_dataset(
                _format_of(files[split]), data_files={split: files[split]}, split=split
            )
        elif self.data_dir is not None or local.is_dir():
            ds = datasets.load_dataset(
                str(self.data_dir if self.data_dir is not None else local), split=split
            )
        else:
            ds = datasets.load_dataset(self.dataset, split=split)
        columns = [self.image_key, self.label_key]
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise ValueError(
                f"dataset split '{split}' has no column(s) {missing}; columns: {ds.column_names} "
                "(set the task options image_key / label_key)"
            )
        return ds.select_columns(columns)


def freeze(value: Any) -> Any:
    """A hashable copy of an option value: mappings become sorted (key, value) tuples, lists tuples."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def _format_of(files: Any) -> str:
    """The `datasets` builder for a data file (or the first of a list) by its extension."""
    first = str(files[0] if isinstance(files, tuple) else files)
    builders = {
        ".parquet": "parquet",
        ".arrow": "arrow",
        ".json": "json",
        ".jsonl": "json",
        ".tar": "webdataset",
    }
    for suffix, builder in builders.items():
        if first.endswith(suffix):
            return builder
    raise ValueError(f"cannot tell the format of data file '{first}' (expected {', '.join(builders)})")


def decode_uint8(ds: Any, image_key: str, label_key: str, limit: int | None = None) -> Batch:
    """Decode a split of small, equally sized images into `uint8 [N, 3, H, W]` and labels `[N]`."""
    import numpy as np

    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    images, labels = [], []
    for rows in ds.iter(batch_size=1000):
        images.extend(np.asarray(im.convert("RGB")) for im in rows[image_key])
        labels.extend(rows[label_key])
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.long)


def timm_param_roles(model: nn.Module) -> ParamRoles:
    """A timm model's roles: the head is its classifier (`get_classifier()`: `fc` of a ResNet, `head`
    of a ViT), the embeddings are the parameters named by its `no_weight_decay()` (timm's convention:
    `pos_embed`, `cls_token`, ...) and the weights of any `nn.Embedding`."""
    get_classifier = getattr(model, "get_classifier", None)
    head = parameter_names(model, get_classifier()) if callable(get_classifier) else frozenset()
    no_decay = getattr(model, "no_weight_decay", None)
    named = set(no_decay()) if callable(no_decay) else set()
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    embedding = frozenset(n for n, _ in model.named_parameters() if n in named) | parameter_names(
        model, *tables
    )
    return ParamRoles(head=head, embedding=embedding)
