"""`bench ls`: the registries as readable tables."""

from __future__ import annotations

from bench.registry import OPTIMIZERS, SCHEDULES, TASKS


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def tasks() -> str:
    rows = []
    for name, e in TASKS.items():
        target = f"{e.target:g}" if e.target is not None else "-"
        budget = f"{e.steps} steps"
        if e.tokens_per_step:
            budget += f" ({e.steps * e.tokens_per_step / 1e6:.3g}M tokens)"
        rows.append([name, e.size, f"{e.metric} ({e.mode})", target, budget, str(e.batch_size),
                     f"v{e.version}", "gpu" if e.requires_gpu else "cpu ok"])  # fmt: skip
    return _table(["task", "size", "metric", "target", "default budget", "batch", "version", "device"], rows)


def optimizers() -> str:
    rows = []
    for name, e in OPTIMIZERS.items():
        space = ", ".join(f"{k} {v}" for k, v in e.search_space.items())
        rows.append([name, e.source, ",".join(sorted(e.flags)) or "-", space])
    return _table(["optimizer", "source", "flags", "default search space"], rows)


def schedules() -> str:
    return _table(["schedule"], [[n] for n in SCHEDULES.names()])


def list_registry(what: str = "all") -> str:
    parts = {"tasks": tasks, "optimizers": optimizers, "schedules": schedules}
    chosen = parts if what == "all" else {what: parts[what]}
    return "\n\n".join(fn() for fn in chosen.values())
