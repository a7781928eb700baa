"""Every registered task, through its declaration: the declarations import no torch, and
`bench.testing.TaskContract` over the registry (the options schema takes its own defaults back, `build`
is named by import path, the built task's `param_roles` name real parameters: for the built-in tasks,
the head and embeddings the optimizers treat specially; a training batch and validation work)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.catalog import TASKS
from bench.registry import BUILTIN
from bench.tasks.base import ParamRoles, TaskEntry
from bench.testing import TaskContract
from bench.testing.tasks import build_task

HEAVY = ("torch", "timm", "datasets", "tiktoken", "tokenizers", "numpy", "sklearn", "PIL", "pandas")

GPT_ROLES = ParamRoles(
    head=frozenset({"transformer.wte.weight"}),  # lm_head.weight is the tied token embedding
    embedding=frozenset({"transformer.wte.weight", "transformer.wpe.weight"}),
)
VIT_ROLES = ParamRoles(
    head=frozenset({"head.weight", "head.bias"}), embedding=frozenset({"pos_embed", "cls_token"})
)
RESNET_ROLES = ParamRoles(head=frozenset({"fc.weight", "fc.bias"}))
# The built-in tasks' roles: the sets the optimizers used to guess from the model (a linear layer named
# head/fc/lm_head/..., else the last one; `nn.Embedding` weights and timm's `no_weight_decay()` names),
# which the declarations must keep, so that every optimizer treats every parameter as before.
EXPECTED_ROLES: dict[str, ParamRoles] = {
    "digits_cnn": ParamRoles(head=frozenset({"head.weight", "head.bias"})),
    "digits_mlp": ParamRoles(head=frozenset({"net.5.weight", "net.5.bias"})),
    "pydocs_gpt_tiny": GPT_ROLES,
    "c4_gpt_tiny": GPT_ROLES,
    "c4_gpt_small": GPT_ROLES,
    "c4_gpt_124m": GPT_ROLES,
    "c4_gpt_350m": GPT_ROLES,
    "cifar10_resnet18": RESNET_ROLES,
    "cifar100_resnet18": RESNET_ROLES,
    "cifar10_resnet_tiny": RESNET_ROLES,
    "imagenet_vit_small": VIT_ROLES,
    "imagenet_vit_tiny": VIT_ROLES,
}
ENTRIES = list(TASKS.items())


def test_declarations_import_no_torch() -> None:
    """`bench validate` and `plan` read every declaration: importing them must stay instant."""
    code = (
        "import importlib, pkgutil, sys, bench.tasks\n"
        "for m in pkgutil.iter_modules(bench.tasks.__path__):\n"
        "    importlib.import_module(f'bench.tasks.{m.name}')\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_built_in_task_has_expected_roles() -> None:
    assert {name for name, _ in ENTRIES if TASKS.origin(name) == BUILTIN} == set(EXPECTED_ROLES)


def cheap_options(entry: TaskEntry, write_c4: Callable[..., Path], docs: list[str]) -> dict[str, Any]:
    """Options that build the task offline and quickly; the model keeps its declared shape."""
    fields = entry.options.model_fields
    options: dict[str, Any] = {}
    if "tokenizer" in fields:  # no BPE download; byte-level text, one validation window
        options |= {"tokenizer": "bytes", "val_tokens": entry.default_options["block_size"]}
    if "text_field" in fields and "data_files" in fields:  # C4: local documents
        options |= {"data_files": str(write_c4("docs.jsonl", docs))}
    return options


class TestEveryTask(TaskContract):
    """`bench.testing.TaskContract` (what plugin authors run over their tasks) over the whole registry.
    Training-batch checks build the data of the CPU-sized language and digits tasks only: the vision
    tasks' data is written by tests/tasks/test_vision.py, and full-size models are built on `meta`."""

    entries = [entry for _, entry in ENTRIES]

    @pytest.fixture(autouse=True)
    def _documents(self, write_c4: Callable[..., Path], english_docs: list[str]) -> None:
        self.write_c4, self.docs = write_c4, english_docs

    def options_for(self, entry: TaskEntry, tmp_path: Path) -> dict[str, Any] | None:
        if entry.family not in ("gpt", "digits"):
            return None
        return cheap_options(entry, self.write_c4, self.docs)

    def test_param_roles_name_real_parameters(self, entry: TaskEntry, tmp_path: Path) -> None:
        """Every task, full-size ones too (on `meta`), declares the roles the built-in tasks always had."""
        options = cheap_options(entry, self.write_c4, self.docs)
        task = build_task(entry, options, 0, tmp_path)
        with torch.device("meta"):
            model = task.build_model()
        roles = task.param_roles(model)
        names = {n for n, _ in model.named_parameters()}
        assert roles.head and roles.head <= names and roles.embedding <= names
        if entry.name in EXPECTED_ROLES:
            assert roles == EXPECTED_ROLES[entry.name]

    def test_one_training_batch_and_validation(self, entry: TaskEntry, tmp_path: Path) -> None:
        if entry.requires_gpu or entry.size not in ("tiny",):
            pytest.skip(f"{entry.name}: a full-size model; its data path is the tiny variant's")
        super().test_one_training_batch_and_validation(entry, tmp_path)


@pytest.mark.parametrize(("name", "entry"), ENTRIES, ids=[n for n, _ in ENTRIES])
def test_every_task_declares_what_a_failure_costs(name: str, entry: TaskEntry) -> None:
    """Scores count a failed trial at this value and clip every value at it (Wortsman's min(L, L0))."""
    if TASKS.origin(name) != BUILTIN and entry.failure is None:
        pytest.skip("a plugin's task may leave it undeclared (scores fall back to the worst completed value)")
    failure = entry.failure(entry.default_options)
    assert set(entry.all_metrics) <= set(failure.values), (name, failure)
    assert all(math.isfinite(v) and v > 0 for v in failure.values.values()) and failure.why


@pytest.mark.parametrize(("name", "options", "tolerance"), [
    ("digits_cnn", {}, 0.01), ("digits_mlp", {}, 0.01), ("pydocs_gpt_tiny", {"val_tokens": 4096}, 0.03),
])  # fmt: skip
def test_the_declared_failure_value_is_what_the_untrained_model_scores(
    name: str, options: dict[str, Any], tolerance: float, tmp_path: Path
) -> None:
    # measured: digits loss 2.305-2.319 (ln 10 = 2.303), error 0.89-0.96; pydocs 5.43-5.47 (ln 256 = 5.545)
    entry = TASKS.get(name)
    declared = entry.failure(entry.options.model_validate(options).model_dump()).values
    torch.manual_seed(0)
    task = build_task(entry, options, 0, tmp_path)
    model = task.build_model().eval()
    sums: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for batch in task.val_loader():
            found, count = task.validation_sums(model, batch)
            for k, v in found.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += count
    assert sums["loss"] / n == pytest.approx(declared["val/loss"], rel=tolerance)
    if "val/error" in declared:
        assert sums["error"] / n == pytest.approx(declared["val/error"], abs=0.1)  # 360 examples
