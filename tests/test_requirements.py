"""The torch floor in pyproject.toml is the newest release among the torch features bench's code uses.

We can't install other torch versions here, so the floor is read from the code: each feature below is
what a module of `bench/` calls, with the release that introduced it (PyTorch release notes). The test
checks that every listed feature exists in the installed torch and that `torch>=` in pyproject.toml
is the newest of them; a module that starts using something newer must add it here.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

FEATURES = {
    "torch.optim.Adafactor": (2, 5),  # bench/optimizers/adam.py: adafactor
    "torch.OutOfMemoryError": (2, 5),  # bench/run.py: the oom outcome, on any device
    "torch.nn.attention.sdpa_kernel": (2, 3),  # bench/run.py: the math kernel for create_graph
    "torch.optim.NAdam": (2, 1),  # bench/optimizers/adam.py: nadamw (decoupled_weight_decay=True)
    "torch.utils.flop_counter.FlopCounterMode": (2, 1),  # FLOPs per step of the tasks
}


def resolve(path: str) -> object:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_each_feature_exists_in_the_installed_torch(feature: str) -> None:
    assert resolve(feature) is not None


def test_the_torch_floor_is_the_newest_feature_used() -> None:
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    floor = re.search(r'"torch>=(\d+)\.(\d+)"', text)
    assert floor, "pyproject.toml: expected a dependency torch>=X.Y"
    assert (int(floor[1]), int(floor[2])) == max(FEATURES.values())


def test_nadam_takes_decoupled_weight_decay() -> None:
    import inspect

    import torch

    assert "decoupled_weight_decay" in inspect.signature(torch.optim.NAdam).parameters
