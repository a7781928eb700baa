"""`bench ls`: the registries as readable tables, each entry with where it comes from."""

from __future__ import annotations

from bench.catalog import REGISTRIES, Registries
from bench.plan import si


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _broken(registry: object) -> str:
    errors = getattr(registry, "plugin_errors", {})
    return "".join(f"\nplugin failed to load: {k}: {v}" for k, v in errors.items())


def tasks(reg: Registries = REGISTRIES) -> str:
    rows = []
    for name, e in reg.tasks.items():
        target = f"{e.target:g}" if e.target is not None else "-"
        budget = f"{e.steps} steps"
        if e.tokens_per_step:
            budget += f" ({si(e.steps * e.tokens_per_step)} tokens)"
        options = ", ".join(e.default_options) or "-"
        rows.append([name, e.size, f"{e.metric} ({e.mode})", target, budget, str(e.batch_size), f"v{e.version}",
                     "gpu" if e.requires_gpu else "cpu ok", reg.tasks.origin(name), options])  # fmt: skip
    header = [
        "task",
        "size",
        "metric",
        "target",
        "default budget",
        "batch",
        "version",
        "device",
        "from",
        "options",
    ]
    return _table(header, rows) + _broken(reg.tasks)


def optimizers(reg: Registries = REGISTRIES) -> str:
    rows = []
    for name, e in reg.optimizers.items():
        space = ", ".join(f"{k} {v}" for k, v in e.search_space.items())
        origin = reg.optimizers.origin(name)
        rows.append([name, e.source if origin == "bench" else f"{e.source} [{origin}]", ",".join(sorted(e.flags)) or "-",
                     e.lr_scaling, space])  # fmt: skip
    return _table(["optimizer", "source", "flags", "lr scaling", "default search space"], rows) + _broken(
        reg.optimizers
    )


def schedules(reg: Registries = REGISTRIES) -> str:
    rows = [[n, getattr(e, "description", ""), reg.schedules.origin(n)] for n, e in reg.schedules.items()]
    return _table(["schedule", "shape", "from"], rows) + _broken(reg.schedules)


def list_registry(what: str = "all", reg: Registries = REGISTRIES) -> str:
    parts = {"tasks": tasks, "optimizers": optimizers, "schedules": schedules}
    chosen = parts if what == "all" else {what: parts[what]}
    return "\n\n".join(fn(reg) for fn in chosen.values())
