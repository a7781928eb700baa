"""The options every image-classification task on a hub-schema dataset shares (resnet, vit).

Declarations only (no torch): `bench.workloads.image_data.Source` reads the data these options name.
Where a split comes from, first match wins: option `data_files` (a {split: path, glob or list}
mapping of parquet/arrow/json files or webdataset `.tar` shards), option `data_dir` (a directory
`datasets.load_dataset` understands), `<data_root>/<the task's folder>` when it exists, else the hub
name in option `dataset`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator, model_validator

from bench.tasks.base import TaskOptions

# A split's files: one path or glob, or a list of them.
SplitFiles = str | list[str]


class ImageDataOptions(TaskOptions):
    """Classes, loss, and where the images come from."""

    num_classes: int = Field(ge=1, description="outputs of the classifier; every label must be below it")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="training loss only; val/loss is plain")
    dataset: str = Field(description="hub name, used when no local files are given or found")
    data_files: dict[str, SplitFiles] | None = Field(
        None,
        description="{split: path, glob or list of them}: parquet/arrow/json files or webdataset .tar shards",
    )
    data_dir: str | None = Field(
        None,
        description="a directory datasets.load_dataset understands (default: <data_root>/<folder> if there)",
    )
    image_key: str = Field(
        "image", description="the image column (for webdataset shards: the file extension)"
    )
    label_key: str = Field("label", description="the integer label column")
    train_split: str = "train"
    val_split: str = Field("validation", description="the held-out split the task is scored on")
    train_examples: int = Field(0, ge=0, description="use only the first N examples of the split (0: all)")
    val_examples: int = Field(0, ge=0, description="use only the first N examples of the split (0: all)")

    @field_validator("data_files", mode="before")
    @classmethod
    def _data_files_by_split(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(
                f"option data_files must map split names to files, e.g. {{train: ..., test: ...}}, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _data_files_have_the_splits(self) -> ImageDataOptions:
        if self.data_files is not None:
            for split in (self.train_split, self.val_split):
                if split not in self.data_files:
                    raise ValueError(
                        f"option data_files has no split '{split}' (has: {', '.join(self.data_files)})"
                    )
        return self
