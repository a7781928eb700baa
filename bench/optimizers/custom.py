"""User optimizers named in a suite by import path: `mypkg.module:MyOptimizer`.

`entry_from_import(path)` accepts three kinds of object at that path:

1. a `torch.optim.Optimizer` subclass: called as `cls(param_groups, **hparams)`;
2. a factory function `fn(params, **hparams) -> torch.optim.Optimizer`: called the same way;
3. an `OptimizerEntry`, or a zero-argument callable returning one: used as it is (full control over
   defaults, search space, flags and building).

For 1 and 2 the shared parameter groups apply (`weight_decay` on matrices only, see
`bench.optimizers.param_groups`), the defaults are the keyword defaults of the signature (`betas`
becomes `beta1`/`beta2`, so `one_minus_beta1` can be searched), the search space is empty (the suite
gives one) and an optional class/function attribute `bench_flags` (e.g. `{"schedule_free"}`) sets the
capability flags.

    # mypkg/module.py
    class MyOptimizer(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0): ...

    # suite.yaml
    optimizers:
      - name: mypkg.module:MyOptimizer
        search_space: {lr: {low: 1e-4, high: 1e-1, log: true}}

Problems raise ImportError, AttributeError or ValueError with a message naming the path; the suite
loader turns them into suite errors.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from bench.optimizers.base import FLAGS, OptimizerEntry, grouped
from bench.registry import load_import_path

_SCALARS = (bool, int, float, str)


def signature_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults of `fn` that are plain values; `betas=(b1, b2)` becomes `beta1`, `beta2`."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    defaults: dict[str, Any] = {}
    for name, p in params.items():
        value = p.default
        if value is inspect.Parameter.empty:
            continue
        if name == "betas" and isinstance(value, tuple) and all(isinstance(b, float | int) for b in value):
            defaults.update({f"beta{i + 1}": float(b) for i, b in enumerate(value[:3])})
        elif isinstance(value, _SCALARS):
            defaults[name] = value
    return defaults


def _checked(factory: Callable[..., Any], path: str) -> Callable[..., torch.optim.Optimizer]:
    def build(params: Any, **kwargs: Any) -> torch.optim.Optimizer:
        opt = factory(params, **kwargs)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer {path!r} returned {type(opt).__name__}, not a torch.optim.Optimizer")
        return opt

    return build


def _required_positional(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in params)


def entry_from_import(path: str) -> OptimizerEntry:
    """The `OptimizerEntry` for a user optimizer at `package.module:Name` (see the module docstring)."""
    return entry_from_object(load_import_path(path, "optimizer"), path)


def entry_from_object(obj: Any, path: str) -> OptimizerEntry:
    """The `OptimizerEntry` for the object found at `path` (see the module docstring)."""
    if isinstance(obj, OptimizerEntry):
        return obj
    if inspect.isclass(obj) and not issubclass(obj, torch.optim.Optimizer):
        raise ValueError(
            f"optimizer {path!r}: {obj.__name__} is a class but not a torch.optim.Optimizer subclass"
        )
    if not callable(obj):
        raise ValueError(
            f"optimizer {path!r}: expected an Optimizer subclass, a factory (params, **kwargs) -> Optimizer "
            f"or an OptimizerEntry, got {type(obj).__name__}"
        )
    if not inspect.isclass(obj) and _required_positional(obj) == 0:
        entry = obj()
        if not isinstance(entry, OptimizerEntry):
            raise ValueError(
                f"optimizer {path!r}: a zero-argument callable must return an OptimizerEntry, "
                f"got {type(entry).__name__}"
            )
        return entry
    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    flags = frozenset(getattr(obj, "bench_flags", ()))
    unknown = flags - FLAGS
    if unknown:
        raise ValueError(f"optimizer {path!r}: unknown bench_flags {sorted(unknown)}")
    return OptimizerEntry(
        name=path,
        source=path,
        paper=doc[0] if doc else "",
        build_fn=grouped(_checked(obj, path)),
        defaults=signature_defaults(obj),
        flags=flags,
    )
