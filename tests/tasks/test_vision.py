"""Vision tasks (digits, resnet, vit): every CPU task trains on its real loader fed by local files in
the hub schema and its loss falls; batches are a function of the seed; metric sums add up; the declared
FLOPs match a recount; the options schemas enforce their rules. Nothing touches the hub (HF_*_OFFLINE,
local files under a tmp data_root; ImageNet also as JPEG webdataset shards and hub-schema parquet)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from task_helpers import build
from torch.utils.flop_counter import FlopCounterMode

from bench.catalog import TASKS
from bench.tasks.base import TaskEntry

VISION_FAMILIES = ("digits", "resnet", "vit")
# Tiny local datasets: a class is a colour (plus noise), so a few steps of training must help.
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]],
    dtype=np.float32,
)  # fmt: skip
VIT_CLASSES = 4
# Per-task options for the CPU runs: local data is tiny, so evaluate all of it.
CPU_TASKS: dict[str, dict[str, Any]] = {
    "digits_cnn": {},
    "digits_mlp": {},
    "cifar10_resnet_tiny": {"val_examples": 0},
    "imagenet_vit_tiny": {"num_classes": VIT_CLASSES, "val_examples": 0, "batch_size": 16},
}


def vision_entries() -> list[TaskEntry]:
    return [entry for _, entry in TASKS.items() if entry.family in VISION_FAMILIES]


def coloured_images(n: int, size: int, classes: int, seed: int) -> tuple[list[Any], list[int]]:
    import PIL.Image

    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).tolist()
    rng.shuffle(labels)
    images = []
    for label in labels:
        noise = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
        pixels = 0.6 * PALETTE[label % len(PALETTE)] + 0.4 * noise
        images.append(PIL.Image.fromarray(pixels.astype(np.uint8)))
    return images, labels


def write_cifar(root: Path, name: str, label_key: str, classes: int) -> None:
    """`<root>/<name>/plain_text/{train,test}-00000-of-00001.parquet`, the layout of the hub repo."""
    import datasets

    features = datasets.Features(
        {"img": datasets.Image(), label_key: datasets.ClassLabel(num_classes=classes)}
    )
    for split, n in (("train", 256), ("test", 120)):
        images, labels = coloured_images(n, 32, classes, seed=len(split))
        ds = datasets.Dataset.from_dict({"img": images, label_key: labels}, features=features)
        ds.to_parquet(str(root / name / "plain_text" / f"{split}-00000-of-00001.parquet"))


def write_imagefolder(root: Path) -> None:
    """`<root>/imagenet/{train,validation}/<class>/<i>.png` (an imagefolder tree)."""
    for split, n in (("train", 96), ("validation", 40)):
        images, labels = coloured_images(n, 72, VIT_CLASSES, seed=len(split))
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / "imagenet" / split / f"n0{label}"
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i}.png")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These models are too small to gain from intra-op threads, and on a busy 2-core machine OpenMP
    threads waiting on each other make a step several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vision_data")
    write_cifar(root, "cifar10", "label", 10)
    write_cifar(root, "cifar100", "fine_label", 100)
    write_imagefolder(root)
    return root


def batches(loader: Any) -> Iterator[Any]:
    """The runner's view of a finite loader: cycled."""
    while True:
        yield from loader


def first_batches(loader: Any, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(itertools.islice(batches(loader), n))


def train(task: Any, steps: int, lr: float) -> tuple[list[float], torch.nn.Module]:
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for batch in itertools.islice(batches(task.train_loader()), steps):
        loss = task.training_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, model


def test_registry_declares_the_vision_tasks() -> None:
    names = {e.name for e in vision_entries()}
    assert {
        "digits_cnn",
        "digits_mlp",
        "cifar10_resnet18",
        "cifar100_resnet18",
        "cifar10_resnet_tiny",
    } <= names
    assert {"imagenet_vit_small", "imagenet_vit_tiny"} <= names
    for entry in vision_entries():
        assert entry.metric == "val/error" and entry.mode == "min"
        assert entry.metrics == {"val/error": "min", "val/loss": "min"}
        assert entry.target is not None and 0 < entry.target < 1
        assert entry.steps > 0 and entry.batch_size > 0 and 0 < entry.eval_every <= entry.steps
        assert entry.requires_gpu == (entry.size not in ("tiny",)), entry.name


@pytest.mark.parametrize("name", [e.name for e in vision_entries()] if TASKS else [])
def test_flops_per_step_matches_a_recount(name: str) -> None:
    """The declared constant is forward + backward of one default batch, counted on the meta device."""
    entry = TASKS.get(name)
    task = build(name)
    with torch.device("meta"):
        model = task.build_model()
        if entry.family == "digits":
            x = torch.randn(entry.batch_size, 1, 8, 8)
        else:
            size = int(entry.default_options.get("img_size", 32))
            x = torch.randn(entry.batch_size, 3, size, size)
        y = torch.zeros(entry.batch_size, dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(x), y).backward()
    assert entry.flops_per_step == pytest.approx(counter.get_total_flops(), rel=0.01)


@pytest.mark.parametrize("name", list(CPU_TASKS))
def test_cpu_task_loss_falls_and_sums_add_up(name: str, data_root: Path) -> None:
    task = build(name, CPU_TASKS[name], 0, data_root)
    losses, model = train(task, steps=24, lr=3e-3)
    assert all(np.isfinite(losses))
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < first - 0.3, f"{name}: loss {first:.3f} -> {last:.3f}"

    model.eval()
    totals: dict[str, float] = {"loss": 0.0, "error": 0.0}
    count = 0
    with torch.no_grad():
        for x, y in task.val_loader():
            sums, n = task.validation_sums(model, (x, y))
            assert set(sums) == {"loss", "error"} and n == len(y)
            logits = model(task.prepare(x))
            assert sums["loss"].item() == pytest.approx(
                F.cross_entropy(logits, y, reduction="sum").item(), rel=1e-4
            )
            assert 0 <= sums["error"].item() <= n
            totals = {k: totals[k] + sums[k].item() for k in totals}
            count += n
    expected = {"digits_cnn": 360, "digits_mlp": 360, "cifar10_resnet_tiny": 120, "imagenet_vit_tiny": 40}[
        name
    ]
    assert count == expected  # every validation example, once
    assert totals["error"] / count < 0.9  # better than chance after a few steps on colour-coded classes


@pytest.mark.parametrize("name", list(CPU_TASKS))
def test_batches_are_a_function_of_the_seed(name: str, data_root: Path) -> None:
    options = CPU_TASKS[name]
    a = first_batches(build(name, options, 7, data_root).train_loader(), 3)
    b = first_batches(build(name, options, 7, data_root).train_loader(), 3)
    c = first_batches(build(name, options, 8, data_root).train_loader(), 3)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))
    batch = options.get("batch_size", TASKS.get(name).batch_size)
    assert all(len(y) == batch for _, y in a)  # drop_last: every step sees a full batch


def test_epochs_reshuffle_and_augmentation_is_seeded(data_root: Path) -> None:
    task = build("cifar10_resnet_tiny", {"batch_size": 256}, 0, data_root)  # 256: one batch per epoch
    loader = task.train_loader()
    (x1, y1), (x2, y2) = first_batches(loader, 2)
    assert not torch.equal(y1, y2)  # a new permutation per pass
    assert sorted(y1.tolist()) == sorted(y2.tolist())  # of the same examples
    (z1, _), (z2, _) = first_batches(
        build("cifar10_resnet_tiny", {"batch_size": 256}, 0, data_root).train_loader(), 2
    )
    assert torch.equal(x1, z1) and torch.equal(x2, z2)


class PerExample(torch.utils.data.Dataset):
    """The CIFAR augmentation written per example, as the definition the batched one must match: pad,
    crop at (dy, dx), flip, all read from the example's seed digits in base 2p + 1."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: bool, padding: int = 4):
        self.images, self.labels, self.augment, self.p = images, labels, augment, padding

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, aug = item
        image = self.images[index]
        if self.augment:
            (h, w), span = image.shape[-2:], 2 * self.p + 1
            dy, dx, flip = aug % span, (aug // span) % span, (aug // span**2) % 2
            image = F.pad(image, (self.p,) * 4)[:, dy : dy + h, dx : dx + w]
            image = image.flip(-1) if flip else image
        return image, self.labels[index]


@pytest.mark.parametrize("train", [True, False])
def test_resident_batches_are_the_per_example_loaders_batches(data_root: Path, train: bool) -> None:
    """`ResidentImages` draws and augments whole batches as tensor ops; it yields exactly what the
    per-example dataset behind `seeded_loader` yields (same order, same crops and flips, bit for bit),
    over several passes and with a last partial batch."""
    from bench.workloads.image_data import ResidentImages, seeded_loader
    from bench.workloads.resnet import _decoded

    task = build("cifar10_resnet_tiny", {}, 3, data_root)
    images, labels = _decoded(task.source, "train", None)
    batch = 7 if train else 50
    reference = seeded_loader(PerExample(images, labels, augment=train), batch, 3, train=train)
    resident = ResidentImages(images, labels, batch, 3, train=train, augment=train)
    assert len(resident) == len(reference)
    for (x, y), (rx, ry) in zip(
        first_batches(resident, 3 * len(resident)), first_batches(reference, 3 * len(reference)), strict=True
    ):
        assert torch.equal(x, rx) and torch.equal(y, ry)


def test_seeded_augmentation_leaves_the_global_rng_alone(data_root: Path) -> None:
    task = build("imagenet_vit_tiny", CPU_TASKS["imagenet_vit_tiny"], 0, data_root)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    next(iter(task.train_loader()))
    assert torch.equal(state, torch.get_rng_state())


def test_full_size_tasks_build_on_local_files(data_root: Path) -> None:
    """The GPU tasks' loaders and models work on CPU too (num_workers=0 to keep it quick)."""
    task = build("cifar100_resnet18", {"batch_size": 8}, 0, data_root)
    x, y = next(iter(task.train_loader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 and int(y.max()) < 100
    assert task.build_model()(task.prepare(x)).shape == (8, 100)
    vit_task = build(
        "imagenet_vit_small",
        {"num_workers": 0, "batch_size": 2, "num_classes": VIT_CLASSES, "model_kwargs": {"depth": 1}},
        0,
        data_root,
    )
    x, y = next(iter(vit_task.val_loader()))
    assert x.shape[1:] == (3, 224, 224) and x.dtype == torch.float32
    assert vit_task.build_model()(x[:2]).shape == (2, VIT_CLASSES)
    other = build("imagenet_vit_small", {"model": "resnet18", "num_classes": 3}, 0, data_root)
    cnn = other.build_model()
    assert cnn(x[:1]).shape == (1, 3)  # option model: any timm name, here a CNN
    assert other.param_roles(cnn).head == {"fc.weight", "fc.bias"}  # its classifier, whatever its name
    too_few = build("imagenet_vit_tiny", {"num_classes": 2}, 0, data_root)
    with pytest.raises(ValueError, match="4 classes, more than option num_classes 2"):
        too_few.train_loader()


def test_data_files_option_and_errors(data_root: Path) -> None:
    files = {
        s: str(data_root / "cifar10" / "plain_text" / f"{s}-00000-of-00001.parquet")
        for s in ("train", "test")
    }
    task = build("cifar10_resnet_tiny", {"data_files": files, "val_examples": 50}, 0, Path("nowhere"))
    assert sum(len(y) for _, y in task.val_loader()) == 50
    # The runner passes the options as the suite resolver froze them: read-only mappings.
    entry = TASKS.get("cifar10_resnet_tiny")
    frozen = entry.default_options | {
        "data_files": MappingProxyType(files),
        "val_examples": 50,
        "batch_size": 8,
    }
    task = entry.build(MappingProxyType(frozen), 0, Path("nowhere"))
    assert sum(len(y) for _, y in task.val_loader()) == 50
    bad_labels = build("cifar10_resnet_tiny", {"label_key": "nope", "data_files": files}, 0, data_root)
    with pytest.raises(ValueError, match="no column.*nope"):
        bad_labels.train_loader()
    too_few = build("cifar10_resnet_tiny", {"num_classes": 4}, 0, data_root)
    with pytest.raises(ValueError, match="label 9 >= num_classes 4"):
        too_few.train_loader()


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("digits_cnn", {"widht": 8}, r"widht\n.*Extra inputs are not permitted"),
        ("digits_mlp", {"width": 0}, r"width\n.*greater than or equal to 1"),
        ("digits_cnn", {"width": 8.0}, r"width\n.*valid integer"),  # strict: no coercion
        ("cifar10_resnet_tiny", {"widht": 8}, r"widht\n.*Extra inputs are not permitted"),
        ("cifar10_resnet_tiny", {"width": 7}, r"width\n.*multiple of 2"),
        ("cifar10_resnet_tiny", {"width": 0}, r"width\n.*greater than or equal to 2"),
        ("cifar10_resnet_tiny", {"layers": [1, 1, 1]}, r"layers\n.*at least 4 items"),
        ("cifar10_resnet_tiny", {"layers": [1, 0, 1, 1]}, r"layers\.1\n.*greater than or equal to 1"),
        ("cifar10_resnet_tiny", {"label_smoothing": 1.0}, r"label_smoothing\n.*less than 1"),
        ("cifar10_resnet_tiny", {"val_examples": -1}, r"val_examples\n.*greater than or equal to 0"),
        ("cifar10_resnet_tiny", {"data_files": "train.parquet"}, r"data_files must map split names"),
        ("cifar10_resnet_tiny", {"data_files": {"train": "a.parquet"}}, r"data_files has no split 'test'"),
        ("imagenet_vit_tiny", {"min_scale": 0}, r"min_scale\n.*greater than 0"),
        ("imagenet_vit_tiny", {"min_scale": 1.5}, r"min_scale\n.*less than or equal to 1"),
        ("imagenet_vit_tiny", {"label_smoothing": -0.1}, r"label_smoothing\n.*greater than or equal to 0"),
        ("imagenet_vit_tiny", {"model_kwargs": [1]}, r"model_kwargs\n.*valid dictionary"),
        ("imagenet_vit_small", {"num_classes": 0}, r"num_classes\n.*greater than or equal to 1"),
        ("imagenet_vit_small", {"stored_size": 4}, r"stored_size\n.*greater than or equal to 8"),
        (
            "imagenet_vit_small",
            {"stored_size": 256, "auto_augment": "rand-m9"},
            r"auto_augment .* stored_size: null",
        ),
        ("cifar10_resnet_tiny", {"num_workers": 2}, r"num_workers\n.*Extra inputs are not permitted"),
    ],
)
def test_options_schema_rejects(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TASKS.get(name).options.model_validate(options)


def test_options_schema_accepts_yaml_values() -> None:
    resnet = TASKS.get("cifar10_resnet_tiny").options
    assert resnet.model_validate({"layers": [2, 2, 2, 2]}).layers == (2, 2, 2, 2)  # a YAML list
    assert resnet.model_validate({"label_smoothing": 0}).label_smoothing == 0.0  # an int for a float
    files = {"train": ["a.parquet", "b.parquet"], "validation": "c.parquet", "test": "d.parquet"}
    assert resnet.model_validate({"data_files": files}).data_files == files
    vit = TASKS.get("imagenet_vit_tiny").options
    assert vit.model_validate(
        {"data_files": {"training": "t.tar", "validation": "v.tar"}, "train_split": "training"}
    )


def test_vit_reads_webdataset_shards(tmp_path: Path) -> None:
    """ImageNet as webdataset `.tar` shards (`<key>.jpg` + `<key>.cls` per sample), the layout of the
    timm/imagenet-1k-wds copies, read through the same task."""
    import io
    import tarfile

    images, labels = coloured_images(24, 72, VIT_CLASSES, seed=5)
    shard = tmp_path / "imagenet-train-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            jpg = io.BytesIO()
            image.save(jpg, format="JPEG")
            for ext, data in (("jpg", jpg.getvalue()), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    options = {
        "data_files": {"train": str(shard), "validation": str(shard)},
        "image_key": "jpg",
        "label_key": "cls",
        "num_classes": VIT_CLASSES,
        "batch_size": 8,
    }
    task = build("imagenet_vit_tiny", options, 0, tmp_path / "nowhere")
    x, y = next(iter(task.train_loader()))
    assert x.shape == (8, 3, 64, 64) and set(y.tolist()) <= set(range(VIT_CLASSES))
    assert sorted(int(v) for _, ys in task.val_loader() for v in ys) == sorted(labels)


def test_options_are_declared_with_defaults() -> None:
    for entry in vision_entries():
        assert "batch_size" not in entry.options.model_fields  # the runner's, passed next to the options
        assert entry.options.model_validate(entry.default_options).model_dump() == entry.default_options
        build(entry.name, entry.default_options)  # every default is accepted back


# --------------------------------------------------------------------------------------------------
# ImageNet decoded once into the datasets cache, cropped on the device

STORED = CPU_TASKS["imagenet_vit_tiny"] | {"stored_size": 48}


def test_stored_images_train_and_evaluate_every_example(data_root: Path) -> None:
    task = build("imagenet_vit_tiny", STORED, 0, data_root)
    images, labels, crops = next(iter(task.train_loader()))
    assert images.shape == (16, 3, 48, 48) and images.dtype == torch.uint8
    assert crops.shape == (16, 5) and labels.dtype == torch.long
    x, y = task.inputs((images, labels, crops))
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.float32 and torch.equal(y, labels)
    losses, model = train(task, steps=24, lr=3e-3)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3
    model.eval()
    with torch.no_grad():
        seen = [task.validation_sums(model, batch)[1] for batch in task.val_loader()]
    assert sum(seen) == 40  # every validation example, once


def test_images_are_decoded_once_for_every_later_trial(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.workloads import image_data

    decoded: list[int] = []
    rows = image_data._stored_rows
    monkeypatch.setattr(image_data, "_stored_rows", lambda *a, **k: decoded.append(1) or rows(*a, **k))
    options = STORED | {"stored_size": 40}
    first = first_batches(build("imagenet_vit_tiny", options, 0, data_root).train_loader(), 2)
    assert decoded == [1]
    again = first_batches(build("imagenet_vit_tiny", options, 0, data_root).train_loader(), 2)
    other = first_batches(build("imagenet_vit_tiny", options, 1, data_root).train_loader(), 2)
    assert decoded == [1]  # the stored pixels are read, not decoded again
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(first[0][2], other[0][2])  # another seed: other crops


def test_crop_boxes_are_randomresizedcrop_boxes_of_the_original() -> None:
    from torchvision.transforms import RandomResizedCrop

    from bench.workloads.image_data import StoredImages, seeded_rng

    data = _stored_rows_dataset(heights=[60], widths=[90], size=30)
    train = StoredImages(data, 30, train=True, scale=(0.2, 1.0), crop_pct=0.875)
    x1, y1, x2, y2, flip = train.crop(60, 90, aug=1234)
    with seeded_rng(1234):
        top, left, h, w = RandomResizedCrop.get_params(torch.empty(0, 60, 90), [0.2, 1.0], [3 / 4, 4 / 3])
    assert (x1, y1, x2, y2) == pytest.approx((left / 3, top / 2, (left + w) / 3, (top + h) / 2))
    assert train.crop(60, 90, aug=1234) == train.crop(60, 90, aug=1234)  # a function of the seed
    assert {train.crop(60, 90, aug=a)[4] for a in range(40)} == {0.0, 1.0}
    evaluate = StoredImages(data, 30, train=False, scale=(0.2, 1.0), crop_pct=0.5)
    assert evaluate.crop(60, 90, aug=7) == pytest.approx(
        (30 / 3, 15 / 2, 60 / 3, 45 / 2, 0.0)
    )  # centre, 30 px


def test_resized_crops_resample_and_flip_the_box() -> None:
    from bench.workloads.image_data import resized_crops

    images = (
        torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8).remainder(251).to(torch.uint8)
    )
    whole = torch.tensor([[0, 0, 8, 8, 0], [0, 0, 8, 8, 1]], dtype=torch.float32)
    out = resized_crops(images, whole, 8)
    assert torch.allclose(out[0], images[0].float()) and torch.allclose(out[1], images[1].float().flip(-1))
    left_half = torch.tensor([[0, 0, 4, 8, 0]], dtype=torch.float32)
    half = resized_crops(images[:1], left_half, 4)  # 4 x 8 px -> 4 x 4: averages pairs of rows
    expected = images[:1, :, :, :4].float().reshape(1, 3, 4, 2, 4).mean(dim=3)
    assert torch.allclose(half, expected)


def _stored_rows_dataset(heights: list[int], widths: list[int], size: int) -> Any:
    import datasets

    n = len(heights)
    pixels = [bytes(3 * size * size)] * n
    return datasets.Dataset.from_dict({"image": pixels, "height": heights, "width": widths, "label": [0] * n})


# Stored images from ImageNet's real formats: JPEGs of assorted sizes, larger than the stored size
# (so PIL's reduced-scale JPEG decoding is taken), as webdataset shards and as hub-schema parquet.
JPEG_SIZES = [(120, 90), (64, 100), (96, 96), (150, 70)]  # (width, height)


def smooth_jpegs(n: int, seed: int) -> tuple[list[bytes], list[tuple[int, int]], list[int]]:
    """JPEG bytes of `n` smooth gradients (a resize of them is well defined), their sizes, labels."""
    import io

    import PIL.Image

    rng = np.random.default_rng(seed)
    jpegs, sizes, labels = [], [], []
    for i in range(n):
        w, h = JPEG_SIZES[i % len(JPEG_SIZES)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = PALETTE[i % VIT_CLASSES]
        pixels = base * 0.5 + np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * rng.uniform(60, 120)
        out = io.BytesIO()
        PIL.Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, format="JPEG", quality=95)
        jpegs.append(out.getvalue())
        sizes.append((w, h))
        labels.append(i % VIT_CLASSES)
    return jpegs, sizes, labels


def write_shard(path: Path, jpegs: list[bytes], labels: list[int]) -> Path:
    """A webdataset shard as timm/imagenet-1k-wds has them: `<key>.jpg` and `<key>.cls` per sample."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for i, (jpg, label) in enumerate(zip(jpegs, labels, strict=True)):
            for ext, data in (("jpg", jpg), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def write_hub_parquet(path: Path, jpegs: list[bytes], labels: list[int]) -> Path:
    """A parquet file in ILSVRC/imagenet-1k's schema: `image` {bytes, path} (JPEG) and a ClassLabel."""
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=VIT_CLASSES)}
    )
    rows = {"image": [{"bytes": b, "path": None} for b in jpegs], "label": labels}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return path


def resized_original(jpeg: bytes, size: int) -> np.ndarray:
    """The whole JPEG decoded at full scale and resized to size x size, channels first (float)."""
    import io

    import PIL.Image

    image = PIL.Image.open(io.BytesIO(jpeg)).convert("RGB").resize((size, size), PIL.Image.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1).astype(np.float32)


@pytest.mark.parametrize("layout", ["webdataset", "parquet"])
def test_stored_split_holds_each_whole_jpeg_resized_with_its_original_size(
    tmp_path: Path, layout: str
) -> None:
    from bench.workloads.image_data import Source, stored_split

    jpegs, sizes, labels = smooth_jpegs(12, seed=3)
    if layout == "webdataset":
        files, keys = str(write_shard(tmp_path / "train-000000.tar", jpegs, labels)), ("jpg", "cls")
    else:
        files, keys = str(write_hub_parquet(tmp_path / "train.parquet", jpegs, labels)), ("image", "label")
    source = Source("unused", (("train", files),), None, str(tmp_path), "none", *keys)
    size = 24
    stored = stored_split(source, "train", size)
    assert len(stored) == len(jpegs)
    for k, row in enumerate(stored):  # in the files' order
        assert (row["width"], row["height"]) == sizes[k] and row["label"] == labels[k]
        pixels = np.frombuffer(row["image"], np.uint8).reshape(3, size, size).astype(np.float32)
        # Decoded at a reduced DCT scale where the JPEG allows it: the same picture as a full decode.
        assert np.abs(pixels - resized_original(jpegs[k], size)).mean() < 3.0
    assert len(stored_split(source, "train", size, limit=5)) == 5


def test_stored_split_decodes_in_shards_and_keeps_the_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large splits are decoded by several processes, a shard of images each; the rows come back in
    the split's order."""
    from bench.workloads import image_data

    jpegs, sizes, labels = smooth_jpegs(10, seed=4)
    files = str(write_hub_parquet(tmp_path / "train.parquet", jpegs, labels))
    source = image_data.Source("unused", (("train", files),), None, str(tmp_path), "none", "image", "label")
    monkeypatch.setattr(image_data, "SHARD", 3)  # 4 shards (3 + 3 + 3 + 1 images), 2 processes here
    stored = image_data.stored_split(source, "train", 16)
    assert len(stored.cache_files) == min(4, os.cpu_count() or 1)  # one file per decoding process
    assert [(r["width"], r["height"], r["label"]) for r in stored] == [
        (*s, y) for s, y in zip(sizes, labels, strict=True)
    ]
    for k, row in enumerate(stored):
        pixels = np.frombuffer(row["image"], np.uint8).reshape(3, 16, 16).astype(np.float32)
        assert np.abs(pixels - resized_original(jpegs[k], 16)).mean() < 3.0


def test_vit_trains_on_stored_jpeg_shards_and_evaluates_centre_crops(tmp_path: Path) -> None:
    """The ViT task with `stored_size` on webdataset JPEG shards: training batches are (uint8 images,
    labels, crop boxes inside the stored image); validation sees every example once, centre-cropped."""
    from bench.workloads.vit import data_config

    jpegs, _, labels = smooth_jpegs(16, seed=6)
    train_shard = write_shard(tmp_path / "train-000000.tar", jpegs, labels)
    val_jpegs, val_sizes, val_labels = smooth_jpegs(8, seed=7)
    val_shard = write_shard(tmp_path / "validation-000000.tar", val_jpegs, val_labels)
    options = {
        "data_files": {"train": str(train_shard), "validation": str(val_shard)},
        "image_key": "jpg",
        "label_key": "cls",
        "num_classes": VIT_CLASSES,
        "batch_size": 8,
        "stored_size": 32,
        "val_examples": 0,
    }
    task = build("imagenet_vit_tiny", options, 0, tmp_path / "nowhere")
    images, y, crops = next(iter(task.train_loader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8
    assert bool((crops[:, :2] >= 0).all() and (crops[:, 2:4] <= 32 + 1e-4).all())
    assert bool((crops[:, 2] > crops[:, 0]).all() and (crops[:, 3] > crops[:, 1]).all())
    x, _ = task.inputs((images, y, crops))
    assert x.shape == (8, 3, 64, 64) and torch.isfinite(x).all()
    seen, boxes = [], []
    for _, ys, cs in task.val_loader():
        seen.extend(ys.tolist())
        boxes.append(cs)
    assert seen == val_labels  # every validation example once, in order
    crop_pct = float(data_config(task.opts["model"], 64)["crop_pct"])
    for (w, h), box in zip(val_sizes, torch.cat(boxes), strict=True):
        side = min(w, h) * crop_pct  # a centred square of the original, in stored pixels
        expected = ((w - side) / 2 * 32 / w, (h - side) / 2 * 32 / h)
        assert box[:2].tolist() == pytest.approx(expected, abs=1e-4) and float(box[4]) == 0.0
        assert float(box[2] - box[0]) == pytest.approx(side * 32 / w, abs=1e-4)
