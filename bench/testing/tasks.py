"""The task contract as pytest checks: subclass `TaskContract`, list the entries.

    class TestMyTasks(TaskContract):
        entries = plugin_entries(TASKS, "my-plugin")          # or [MY_TASK, ...]

        def options_for(self, entry, tmp_path):                # optional: cheap options, or None to
            return {"subset": 64}                              # skip the checks that build data

Every `test_*` method runs once per entry. The declaration: its options schema takes its own defaults
back and is plain data, `build` is named by import path (`Lazy`, so declaring imports no torch), the
built task's `param_roles` name real parameters and declare an output layer. The built task (with
`options_for`): one training batch gives a finite scalar loss whose backward reaches the model,
`validation_sums` returns the declared metrics with a positive count, and the data order is a
function of the seed only (every optimizer sees the same batches).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from bench.registry import Lazy
from bench.tasks.base import ParamRoles, Task, TaskEntry


def build_task(entry: TaskEntry, options: Mapping[str, Any] | None = None, seed: int = 0,
               data_root: Path = Path("data")) -> Task:  # fmt: skip
    """`entry` built as the runner builds it: `options` (plus an optional `batch_size`) validated by
    the schema and completed with its defaults, then passed as a plain dict with the batch size."""
    given = dict(options or {})
    batch_size = given.pop("batch_size", entry.batch_size)
    validated = entry.options.model_validate(given).model_dump()
    return entry.build({**validated, "batch_size": batch_size}, seed, data_root)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


class TaskContract:
    """Shared checks over `entries` (a class attribute: a sequence of `TaskEntry`)."""

    entries: ClassVar[Sequence[TaskEntry]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "entry" in metafunc.fixturenames:
            entries = list(self.entries)
            metafunc.parametrize("entry", entries, ids=[e.name for e in entries])

    def options_for(self, entry: TaskEntry, tmp_path: Path) -> dict[str, Any] | None:
        """Options that build `entry` quickly and offline (default: its own defaults), or None to skip
        the checks that build data."""
        return {}

    def _built(self, entry: TaskEntry, tmp_path: Path, seed: int = 0) -> Task:
        options = self.options_for(entry, tmp_path)
        if options is None:
            pytest.skip(f"{entry.name}: no cheap options (options_for returned None)")
        return build_task(entry, options, seed, tmp_path)

    # -- the declaration ----------------------------------------------------------------------------
    def test_options_schema_takes_its_defaults_back(self, entry: TaskEntry) -> None:
        defaults = entry.default_options
        assert entry.options.model_validate(defaults).model_dump() == defaults
        assert "batch_size" not in entry.options.model_fields  # the runner's, passed next to the options
        schema = entry.options.model_json_schema()  # the editor schema of `options:`
        assert schema["additionalProperties"] is False and set(schema["properties"]) == set(defaults)
        json.dumps(defaults)  # plain data: a suite can write every default back

    def test_declaration_is_complete(self, entry: TaskEntry) -> None:
        assert entry.mode in ("min", "max") and entry.metric in entry.all_metrics
        assert entry.all_metrics[entry.metric] == entry.mode
        assert all(m.startswith("val/") for m in entry.all_metrics), entry.all_metrics
        assert entry.steps > 0 and entry.batch_size > 0 and entry.version >= 1

    def test_build_is_named_by_import_path(self, entry: TaskEntry) -> None:
        assert isinstance(entry.build, Lazy), (
            "declare build=Lazy('package.module:build') (no torch at import)"
        )
        assert callable(entry.build.resolve())

    # -- the built task -----------------------------------------------------------------------------
    def test_param_roles_name_real_parameters(self, entry: TaskEntry, tmp_path: Path) -> None:
        task = self._built(entry, tmp_path)
        with torch.device("meta"):  # full-size models too, without allocating them
            model = task.build_model()
        roles = task.param_roles(model)
        names = {n for n, _ in model.named_parameters()}
        assert isinstance(roles, ParamRoles) and roles.head, f"{entry.name}: no output layer declared"
        assert roles.head <= names and roles.embedding <= names, (roles, sorted(names))

    def test_one_training_batch_and_validation(self, entry: TaskEntry, tmp_path: Path) -> None:
        task = self._built(entry, tmp_path)
        torch.manual_seed(0)
        model = task.build_model()
        loss = task.training_loss(model, next(iter(task.train_loader())))
        assert loss.ndim == 0 and math.isfinite(loss.item())
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        with torch.no_grad():
            sums, count = task.validation_sums(model, next(iter(task.val_loader())))
        assert int(count) > 0
        assert f"{entry.metric.removeprefix('val/')}" in sums or entry.metric == "val/ppl"
        for name, value in sums.items():
            assert f"val/{name}" in entry.all_metrics, f"{entry.name}: undeclared metric val/{name}"
            assert math.isfinite(float(value))

    def test_data_order_is_a_function_of_the_seed(self, entry: TaskEntry, tmp_path: Path) -> None:
        first = next(iter(self._built(entry, tmp_path, seed=3).train_loader()))
        again = next(iter(self._built(entry, tmp_path, seed=3).train_loader()))
        assert _equal(first, again), f"{entry.name}: two builds with one seed gave different batches"
