"""Workloads: the torch implementations of the tasks declared in `bench.tasks`.

`bench.tasks.<family>` declares a task (options schema, budgets, FLOPs, metrics) without importing
torch; its `build`, named by import path (`Lazy("bench.workloads.<family>:build", ...)`), lives here
with the models, data pipelines and `Task` classes it returns:

    digits.py      the scikit-learn digits CNN and MLP
    gpt.py         the nanoGPT model and the language-model task
    resnet.py      timm ResNets with the CIFAR stem on CIFAR-10/100
    vit.py         timm ViTs on ImageNet-1k
    image_data.py  classification loss and metrics, seeded loaders, image sources (shared by the above)
    text_data.py   tokenizers, document sources, packing into windows
    standins.py    offline stand-ins for C4, CIFAR-10 and ImageNet in the hub layouts

A `build(options, seed, data_root, **bound)` receives the options already validated by the task's
schema (a plain dict, every option present) plus `batch_size`, the per-process batch size; it checks
nothing the schema can check. Only what depends on the data (a label out of range, too little
held-out text) is checked here, when the data is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def parameter_names(model: nn.Module, *modules: nn.Module) -> frozenset[str]:
    """The names, as `model.named_parameters()` gives them, of the parameters of `modules` (submodules
    of `model`). Matched by identity, so a tied parameter has the one name `model` lists it under."""
    ids = {id(p) for m in modules for p in m.parameters()}
    return frozenset(name for name, p in model.named_parameters() if id(p) in ids)
