"""Offline stand-ins for C4, CIFAR-10 and ImageNet, written in the hub datasets' own schema and layout.

Where the hub can't be reached (this project's CI, an air-gapped cluster), the three workloads' real
loaders can still be exercised end to end on data that exists offline. `write_standins(root)` makes:

- `<root>/c4/c4-{train,validation}.00000-of-00001.json.gz`: C4's file names and record schema
  (`text`, `timestamp`, `url`). The documents are the docstrings of CPython's standard library, one
  document per module (real English prose written by people, about 1.3 MB on Python 3.11); every 20th
  module is held out as validation.
- `<root>/cifar10/plain_text/{train,test}-00000-of-00001.parquet`: the hub repo `uoft-cs/cifar10`'s
  layout, columns `img` (PNG) and `label` (ClassLabel), 32x32 RGB.
- `<root>/imagenet/{train,validation}/<class>/<i>.jpg`: an `imagefolder` tree, 80x80 RGB JPEG.

The images are scikit-learn's 1,797 handwritten digits (8x8, offline), each scaled, placed at a random
position, drawn light on dark at random grey levels with noise, several times per training digit. Train and test/validation renders come from disjoint digits (80/20,
seeded), so the error measures generalisation to unseen handwriting. Ten classes (`0`..`9`).

These are *not* the real datasets: figures measured on them say that the pipeline (loader, model,
optimizer, tracking, leaderboard) works and how the optimizers compare on an easy problem, nothing about
CIFAR or ImageNet accuracy. Everything is a function of `seed`, so two machines write the same data.
"""

from __future__ import annotations

import ast
import gzip
import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# name -> (image side in pixels, renders per training digit, renders per held-out digit)
IMAGE_STANDINS: dict[str, tuple[int, int, int]] = {"cifar10": (32, 4, 2), "imagenet": (80, 3, 2)}
HELD_OUT = 0.2  # fraction of the digits kept for the test / validation split
VAL_EVERY = 20  # every 20th stdlib module is a C4 validation document
# Parts of the standard library that hold little prose or mostly test code.
SKIP_STDLIB = {"test", "tests", "site-packages", "idlelib", "lib2to3", "tkinter", "turtledemo", "__pycache__"}
LIGHT = 0.65  # digits are drawn at grey level [LIGHT, 1] on a background in [0, 1 - LIGHT]
TIMESTAMP = "2019-04-25T12:57:54Z"


NAMES = ("c4", "cifar10", "imagenet")  # folder names: the ones the tasks look for under data_root


def missing(root: Path | str) -> list[str]:
    """The stand-ins not yet written under `root` (a folder that exists and holds something counts)."""
    return [n for n in NAMES if not (Path(root) / n).is_dir() or not any((Path(root) / n).iterdir())]


def write_standins(root: Path | str, seed: int = 0, *, force: bool = False) -> dict[str, Path]:
    """Write the three stand-ins under `root`; returns {name: folder}. An existing folder is left alone
    unless `force` (so a second call costs nothing and never changes data under a finished run)."""
    root = Path(root)
    written: dict[str, Path] = {}
    todo = NAMES if force else missing(root)
    for name in NAMES:
        folder = root / name
        written[name] = folder
        if name not in todo:
            continue
        tmp = root / f".{name}.partial"
        _remove(tmp)
        WRITERS[name](tmp, seed)
        _remove(folder)
        tmp.rename(folder)  # whole or nothing: an interrupted write leaves no half dataset behind
    return written


# --------------------------------------------------------------------------------------------------
# Text


def stdlib_documents() -> list[tuple[str, str]]:
    """(module path, text) for each pure-Python stdlib module with at least 500 characters of
    docstrings: the module's, its classes' and its functions' docstrings (over 80 characters), in
    source order, separated by blank lines. Sorted by path."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if SKIP_STDLIB.intersection(rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        parts = [
            doc
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and (doc := ast.get_docstring(node))
            and len(doc) > 80
        ]
        text = "\n\n".join(parts)
        if len(text) >= 500:
            docs.append((rel.as_posix(), text))
    return docs


def write_c4_standin(folder: Path, seed: int = 0) -> None:
    """C4's record schema and file names; documents in a seeded order, every VAL_EVERY-th held out."""
    docs = stdlib_documents()
    order = np.random.default_rng(seed).permutation(len(docs))
    splits: dict[str, list[dict[str, str]]] = {"train": [], "validation": []}
    for i, k in enumerate(order):
        module, text = docs[k]
        split = "validation" if i % VAL_EVERY == 0 else "train"
        splits[split].append({"text": text, "timestamp": TIMESTAMP, "url": f"python-stdlib:{module}"})
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        lines = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
        (folder / f"c4-{split}.00000-of-00001.json.gz").write_bytes(gzip.compress(lines, mtime=0))


# --------------------------------------------------------------------------------------------------
# Images


def digit_renders(
    size: int, per_train: int, per_test: int, seed: int
) -> dict[str, tuple[list[Any], list[int]]]:
    """{"train": (images, labels), "test": (...)}: PIL RGB images of side `size`, from disjoint digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    n_test = int(round(HELD_OUT * len(order)))
    out: dict[str, tuple[list[Any], list[int]]] = {}
    for split, idx, copies in (("train", order[n_test:], per_train), ("test", order[:n_test], per_test)):
        images, labels = [], []
        for _ in range(copies):
            for k in idx:
                images.append(render_digit(digits.images[k] / 16.0, size, rng))
                labels.append(int(digits.target[k]))
        perm = rng.permutation(len(labels))
        out[split] = ([images[i] for i in perm], [labels[i] for i in perm])
    return out


def render_digit(ink: np.ndarray, size: int, rng: np.random.Generator) -> Any:
    """One 8x8 ink map (values in [0, 1]) drawn as an RGB image: the digit covers 85-95% of the side at
    a random position, light (grey level 0.65-1) on dark (0-0.35), with pixel noise.

    Measured with the CPU variants: digits in random colours on random backgrounds leave the tiny
    ResNet at chance for 300+ steps at AdamW learning rates below ~3e-3 and the tiny ViT at chance for
    400 steps at any rate tried, and digits covering as little as 45% of the side do the same to the
    ResNet; grey digits are learnt by both within suites/cpu.yaml's 400 steps (best of 3 trials: ResNet
    13% error, ViT 78%; chance is 90%)."""
    import PIL.Image

    side = max(8, int(size * rng.uniform(0.85, 0.95)))
    glyph = PIL.Image.fromarray((ink * 255).astype(np.uint8)).resize((side, side), PIL.Image.BILINEAR)
    alpha = np.zeros((size, size), np.float32)
    top, left = rng.integers(0, size - side + 1, size=2)
    alpha[top : top + side, left : left + side] = np.asarray(glyph, np.float32) / 255.0
    dark, light = rng.uniform(0.0, 1 - LIGHT), rng.uniform(LIGHT, 1.0)
    grey = dark + (light - dark) * alpha
    pixels = np.repeat(grey[..., None], 3, axis=-1) + rng.normal(0, 0.03, (size, size, 3))
    return PIL.Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), "RGB")


def write_cifar_standin(folder: Path, seed: int = 0) -> None:
    """`plain_text/{train,test}-00000-of-00001.parquet` with CIFAR-10's columns `img` and `label`."""
    import datasets

    size, per_train, per_test = IMAGE_STANDINS["cifar10"]
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )
    bars = datasets.utils.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        for split, (images, labels) in digit_renders(size, per_train, per_test, seed).items():
            path = folder / "plain_text" / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds = datasets.Dataset.from_dict({"img": images, "label": labels}, features=features)
            ds.to_parquet(str(path))
    finally:
        if bars:
            datasets.enable_progress_bars()


def write_imagenet_standin(folder: Path, seed: int = 0) -> None:
    """`{train,validation}/<class>/<i>.jpg`, the imagefolder layout a local ImageNet copy uses."""
    size, per_train, per_test = IMAGE_STANDINS["imagenet"]
    renders = digit_renders(size, per_train, per_test, seed + 1)
    for split, hub_split in (("train", "train"), ("test", "validation")):
        images, labels = renders[split]
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            target = folder / hub_split / f"digit_{label}"
            target.mkdir(parents=True, exist_ok=True)
            image.save(target / f"{i:05d}.jpg", quality=90)


WRITERS = {"c4": write_c4_standin, "cifar10": write_cifar_standin, "imagenet": write_imagenet_standin}


def _remove(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)


def describe(root: Path | str) -> Iterator[str]:
    """One line per stand-in folder under `root`: what it holds."""
    root = Path(root)
    for name in NAMES:
        folder = root / name
        if folder.is_dir():
            files = [p for p in folder.rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files)
            yield f"{folder}: {len(files)} files, {size / 1e6:.1f} MB"
