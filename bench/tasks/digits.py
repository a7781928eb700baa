"""Digits: scikit-learn's 1,797 real 8x8 handwritten-digit scans, a CPU task that trains in seconds.

Declarations only (no torch): the implementation is `bench.workloads.digits`.

`digits_cnn` (a three-layer CNN) and `digits_mlp` (a two-hidden-layer MLP) share the data: a fixed
stratified 1,437 / 360 train/val split, independent of the trial seed, standardised with the training
set's mean and std. The data ships with scikit-learn, so nothing is downloaded. No augmentation.

Options (`DigitsOptions`): `width` (channels of the first conv layer / hidden units of the MLP).
Metrics: `val/error` (top-1, the leaderboard metric) and `val/loss`, both `min`.
Parameter roles: the head is the last linear layer; no embeddings.
"""

from __future__ import annotations

from pydantic import Field

from bench.registry import Lazy
from bench.tasks.base import ChanceClassifier, TaskEntry, TaskOptions
from bench.tasks.options import with_defaults

BATCH_SIZE = 64
VERSION = 1

# Forward + backward at the default width and batch size, measured with
# torch.utils.flop_counter.FlopCounterMode (tests/tasks/test_vision.py checks they still match).
DIGITS_CNN_FLOPS = 174_194_688.0
DIGITS_MLP_FLOPS = 8_880_128.0


class DigitsOptions(TaskOptions):
    """Options of the digits tasks."""

    width: int = Field(16, ge=1, description="channels of the first conv layer (CNN) or hidden units (MLP)")


def _entry(arch: str, width: int, target: float, flops_per_step: float) -> TaskEntry:
    return TaskEntry(
        name=f"digits_{arch}",
        family="digits",
        size="tiny",
        description=f"scikit-learn digits (8x8 scans, 1,437/360 split), small {arch.upper()}",
        metric="val/error",
        mode="min",
        target=target,
        steps=200,
        batch_size=BATCH_SIZE,
        version=VERSION,
        build=Lazy("bench.workloads.digits:build", arch=arch),
        options=with_defaults(DigitsOptions, f"Digits{arch.upper()}Options", width=width),
        eval_every=25,  # validation is one 360-example batch: cheap, and time-to-target is finer
        metrics={"val/error": "min", "val/loss": "min"},
        flops_per_step=flops_per_step,
        failure=ChanceClassifier(classes=10),
    )


ENTRIES: tuple[TaskEntry, ...] = (
    _entry("cnn", width=16, target=0.05, flops_per_step=DIGITS_CNN_FLOPS),
    _entry("mlp", width=128, target=0.05, flops_per_step=DIGITS_MLP_FLOPS),
)
