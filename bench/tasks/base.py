"""The task contract: what a workload declares and what the runner asks of it.

A task never sees an optimizer. It owns a model, its data and its metrics, in two parts:

- `TaskEntry`, the declaration (AlgoPerf's spec.py idea): target metric and direction, target value,
  default step budget, batch size, version, the schema of its options and the `build` function, named
  by import path. Declaring imports no torch, so `bench validate`, `plan` and `ls` stay instant; the
  built-in declarations are `bench/tasks/<family>.py`, their implementations `bench/workloads/`.
- `Task`, a built instance for one trial: `entry.build(options, seed, data_root)` returns it.

Options are a pydantic model (`TaskOptions`): field types, bounds and defaults in one declaration,
checked once when the suite is validated; `build` receives them as a plain dict (plus `batch_size`,
the per-process batch). Metric names carry their split; each declares its direction: `val/loss` (min).
Validation returns *sums* and a count per batch so the runner can take exact means over a split.

A built task also says what its model's parameters are (`param_roles`): which form the output layer
and which are embeddings, so optimizers never guess from attribute names.

Every entry declares what a failed trial costs (`failure`): the value of each metric for a model that
learned nothing, at chance or at initialization (`ChanceClassifier`, `UniformNextToken`, or any callable
of the options returning a `Failure`). Scores count a failed trial at that value and clip every value at it, as Wortsman et al.
2023 clip the loss at its value at initialization (min(L, L0)); see docs/robustness.md.

    class DigitsOptions(TaskOptions):
        width: int = Field(16, ge=1, description="channels of the first conv layer")

    ENTRIES = (
        TaskEntry(name="digits_cnn", family="digits", size="tiny", ..., options=DigitsOptions,
                  build=Lazy("bench.workloads.digits:build", arch="cnn")),
    )
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch
    from torch import nn

Mode = Literal["min", "max"]


class TaskOptions(BaseModel):
    """Base of every task's option schema: frozen, unknown keys rejected, no silent type coercion
    (an int is accepted where a float is expected, nothing else)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class NoOptions(TaskOptions):
    """A task without options."""


@dataclass(frozen=True)
class ParamRoles:
    """What a model's parameters are, by parameter name (`model.named_parameters()`), as the task that
    built the model declares it. Vectors (biases, norm gains) never take weight decay whatever this
    says; these sets name the matrices that are special.

    head:      the output layer (Muon leaves it to its AdamW side)
    embedding: lookup tables (token and position embeddings, class tokens): no weight decay, and Muon
               leaves them to AdamW
    """

    head: frozenset[str] = frozenset()
    embedding: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Failure:
    """What a failed trial costs for a task built with given options: metric -> value (a metric left
    out has no declared cost), and how the values were obtained."""

    values: Mapping[str, float]
    why: str


@dataclass(frozen=True)
class ChanceClassifier:
    """A classifier that learned nothing predicts uniformly over its C classes: top-1 error 1 - 1/C,
    cross-entropy ln C. C is `classes`, or the task option named by `option`."""

    classes: int | None = None
    option: str = "num_classes"

    def __call__(self, options: Mapping[str, Any]) -> Failure:
        c = self.classes if self.classes is not None else int(options[self.option])
        return Failure(
            {"val/error": 1.0 - 1.0 / c, "val/loss": math.log(c)},
            f"chance: uniform prediction over {c} classes (error 1 - 1/{c}, loss ln {c})",
        )


@dataclass(frozen=True)
class UniformNextToken:
    """A language model that learned nothing predicts every token of its vocabulary alike: loss ln V
    nats per token, perplexity V. At initialization (small weights, logits near 0) the model is nearly
    this uniform predictor over its padded vocabulary (measured: `pydocs_gpt_tiny` scores 5.43-5.47 nats
    untrained, ln 256 = 5.55; tests/tasks/test_entries.py). V comes from the tokenizer named by the
    option `option`, through `vocab_size(spec)` (None when not known without loading the tokenizer)."""

    vocab_size: Callable[[str], int | None]
    option: str = "tokenizer"

    def __call__(self, options: Mapping[str, Any]) -> Failure:
        spec = str(options[self.option])
        v = self.vocab_size(spec)
        if v is None:
            return Failure(
                {}, f"unknown: the vocabulary of tokenizer {spec!r} is not known without loading it"
            )
        return Failure(
            {"val/loss": math.log(v), "val/ppl": float(v)},
            f"initialization: uniform next-token prediction over {v} ids (loss ln {v}, ppl {v})",
        )


class Task(Protocol):
    """One built task for one trial. Batches are whatever the task's loaders yield."""

    def build_model(self) -> nn.Module:
        """A freshly initialised model (seeded by the caller via torch.manual_seed)."""
        ...

    def param_roles(self, model: nn.Module) -> ParamRoles:
        """The output layer and embeddings of `model` (as returned by `build_model`), by name."""
        ...

    def train_loader(self) -> Iterable[Any]:
        """Training batches; the order is a function of the build seed only (same for every optimizer).
        May be finite: the runner cycles it. A torch DataLoader (the runner moves each batch to the
        device and splits it over the processes of a multi-process trial), or a loader with
        `to(device)`, returning one whose batches are already on the device (data resident there),
        and `shard(rank, world)`, returning item `rank` of every group of `world` of its stream
        (`bench.workloads.image_data.ResidentImages`)."""
        ...

    def val_loader(self) -> Iterable[Any]:
        """A fixed held-out set, identical for every trial of the task."""
        ...

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Scalar mean loss of one batch (the quantity that is minimised)."""
        ...

    def validation_sums(self, model: nn.Module, batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        """Per-batch sums of each metric (without the `val/` prefix, e.g. {'loss': ..., 'error': ...})
        and the number of examples (or tokens) they were summed over."""
        ...


@dataclass(frozen=True)
class TaskEntry:
    """A registered workload: its whole contract, declared as data."""

    name: str  # registry key: {dataset}_{model}[_{size}]
    family: str  # gpt, digits, resnet, vit ...
    size: str  # tiny, small, 124m ... (variants are data, not subclasses)
    description: str
    metric: str  # leaderboard metric, e.g. "val/loss"
    mode: Mode
    target: float | None  # value of `metric` that counts as reaching the target (time-to-target)
    steps: int  # default step budget per trial
    batch_size: int
    version: int  # bump whenever results of this task would change
    build: Callable[[Mapping[str, Any], int, Path], Task]  # (options, seed, data_root) -> Task
    options: type[TaskOptions] = NoOptions  # the schema of `options:`; its defaults are the defaults
    eval_every: int = 0  # validate every N steps (0: only at the end)
    metrics: Mapping[str, Mode] = field(default_factory=dict)  # every reported val metric -> mode
    flops_per_step: float | None = None  # forward+backward FLOPs per optimizer step at the defaults
    tokens_per_step: int | None = None  # LM tasks: tokens per optimizer step
    requires_gpu: bool = False  # full-size variants: plan/validate fine, running on CPU warns
    # What a failed trial costs, given the task's options (ChanceClassifier, UniformNextToken);
    # None: undeclared, the scores fall back to the task's worst completed value.
    failure: Callable[[Mapping[str, Any]], Failure] | None = None

    @property
    def default_options(self) -> dict[str, Any]:
        """The options a suite that sets none gets."""
        return self.options().model_dump()

    @property
    def all_metrics(self) -> dict[str, Mode]:
        """Every metric a suite may rank by, with its direction (the leaderboard metric first)."""
        return {self.metric: self.mode, **self.metrics}
