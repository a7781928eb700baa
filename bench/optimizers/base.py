"""The optimizer contract: a registry entry that builds a `torch.optim.Optimizer` for a model.

An optimizer never sees Lightning. The runner calls `entry.build(model, hparams)` with the sampled
hyperparameters (search names, see `bench.space.to_kwargs`) and reads `entry.flags` for special needs:

- `schedule_free`: the optimizer has `.train()` / `.eval()` that must be called around evaluation, and
  runs without a learning-rate schedule.
- `create_graph`: `loss.backward(create_graph=True)` is needed (Hessian-vector products, e.g. Sophia-H).
- `no_schedule`: learning-rate-free or self-scheduling methods that should not get an LR schedule.
- `fsdp`: works with FSDP-sharded parameters (elementwise update rule).
- `fused`: the class takes `fused=True`, torch's fused CUDA kernel (one launch for the whole update
  instead of a few per tensor: `torch.optim.AdamW`, `Adam`, `SGD`). `build` passes it when the model's
  parameters are on a GPU and the suite set neither `fused` nor `foreach`; on a CPU nothing changes.
  The fused kernel computes the same update with other rounding, so GPU results differ from the
  multi-tensor (`foreach`) kernel's in the last bits.
- `closure`: `step(closure)` needs the batch's gradient computed *before* the call and a `closure`
  that zeroes the gradients, recomputes the loss and its gradient on the same batch, and returns the
  loss (the SAM family: a second forward-backward at perturbed weights). The runner trains such an
  optimizer with Lightning's manual optimization; gradient accumulation is refused for it.

Most entries are a library class called with the shared parameter groups (`grouped(cls)`): the
decayed matrices and the undecayed vectors/embeddings of `bench.optimizers.param_groups`. Declaring an
entry imports no torch: a class is named as `lazy("module:Class")` and imported when the first
optimizer is built, so describing an entry (`bench validate`, `plan`, `ls`) costs nothing. An entry's
name is written once, in the entry; a module lists its entries in `ENTRIES` (see `bench.catalog`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from bench.registry import Lazy
from bench.space import Param, to_kwargs

if TYPE_CHECKING:
    import torch
    from torch import nn

Flag = Literal["schedule_free", "create_graph", "no_schedule", "fsdp", "closure", "fused"]
FLAGS: frozenset[str] = frozenset(get_args(Flag))  # every flag an entry may carry


@dataclass(frozen=True)
class OptimizerEntry:
    name: str
    source: str  # the library (and class) the update rule comes from, e.g. "torch.optim.AdamW"
    paper: str  # short citation
    # (model, optimizer kwargs after to_kwargs, weight_decay_filter) -> optimizer
    build_fn: Callable[[nn.Module, dict[str, Any], bool], torch.optim.Optimizer]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, Param] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    lr_scaling: Literal["linear", "sqrt", "none"] = "sqrt"  # batch-size transfer rule

    def build(
        self, model: nn.Module, sampled: Mapping[str, Any], *, decay_filter: bool = True
    ) -> torch.optim.Optimizer:
        kwargs = to_kwargs(self.defaults, sampled)
        if "fused" in self.flags and not {"fused", "foreach"} & set(kwargs) and on_gpu(model):
            kwargs["fused"] = True
        return self.build_fn(model, kwargs, decay_filter)


def on_gpu(model: nn.Module) -> bool:
    """Whether every parameter of `model` is on a CUDA device (what torch's fused kernels take)."""
    devices = {p.device.type for p in model.parameters()}
    return devices == {"cuda"}


def grouped(
    factory: Callable[..., torch.optim.Optimizer], **fixed: Any
) -> Callable[[nn.Module, dict[str, Any], bool], torch.optim.Optimizer]:
    """A `build_fn` calling `factory(param_groups, **fixed, **kwargs)`, where `weight_decay` goes to the
    decayed group only (all groups when the filter is off)."""

    def build(model: nn.Module, kwargs: dict[str, Any], decay_filter: bool) -> torch.optim.Optimizer:
        from bench.optimizers.param_groups import param_groups

        kwargs = {**fixed, **kwargs}
        weight_decay = kwargs.pop("weight_decay", 0.0)
        return factory(param_groups(model, weight_decay, decay_filter), **kwargs)

    return build


def lazy(target: str) -> Callable[..., torch.optim.Optimizer]:
    """`"module:Class"` as a factory that imports the module on its first call."""
    return Lazy(target)
