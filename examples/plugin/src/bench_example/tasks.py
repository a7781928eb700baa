"""The `iris_mlp` task, declared (no torch here: `bench validate`, `plan` and `ls` read this).

Fisher's 150 iris flowers (4 measurements, 3 species), shipped inside this package as data/iris.csv
(the copy scikit-learn distributes): a fixed stratified 120/30 train/validation split, features
standardised with the training set's statistics, and an MLP with one hidden layer. Trains in a second.
"""

from __future__ import annotations

from pydantic import Field

from bench.registry import Lazy
from bench.tasks.base import TaskEntry, TaskOptions


class IrisOptions(TaskOptions):
    """What a suite may set under the task's `options:` (unknown keys are rejected)."""

    hidden: int = Field(32, ge=1, description="units of the hidden layer")


ENTRIES = (
    TaskEntry(
        name="iris_mlp",
        family="iris",
        size="tiny",
        description="Fisher's iris (150 flowers, 120/30 split), MLP 4-32-3",
        metric="val/error",
        mode="min",
        target=0.1,  # 3 of 30 validation flowers misclassified
        steps=60,
        batch_size=16,
        version=1,  # bump whenever results would change
        build=Lazy("bench_example.iris:build"),
        options=IrisOptions,
        eval_every=20,
        metrics={"val/error": "min", "val/loss": "min"},
    ),
)
