"""The `nsgd` optimizer, declared (no torch here): the entry bench registers through the
`bench.optimizers` entry point."""

from __future__ import annotations

from bench.optimizers.base import OptimizerEntry, grouped, lazy
from bench.space import Float

ENTRIES = (
    OptimizerEntry(
        name="nsgd",
        source="bench_example.nsgd.NormalizedSGD",
        paper="Cutkosky & Mehta 2020, Momentum Improves Normalized SGD",
        # grouped(): bench's shared groups (weight decay on matrices only), then the class's kwargs.
        build_fn=grouped(lazy("bench_example.nsgd:NormalizedSGD")),
        defaults={"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3},
        search_space={
            "lr": Float(1e-4, 0.3, log=True),
            "one_minus_momentum": Float(0.01, 0.5, log=True),
        },
        flags=frozenset(),  # per-tensor norms: not elementwise, so no "fsdp"
        lr_scaling="none",  # a normalised step does not grow with the batch
    ),
)
