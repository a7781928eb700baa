"""One small generic registry, used for tasks, optimizers and schedules.

Register a factory with a decorator, look it up by name, and get a helpful error for a typo:

    @TASKS.register("digits_cnn")
    def digits_cnn() -> TaskEntry: ...

    TASKS.get("digit_cnn")
    # UnknownNameError: Unknown task 'digit_cnn'. Did you mean 'digits_cnn'? Available: digits_cnn, ...

Entries are created lazily: `register` stores the factory, `get` calls it once and caches the result,
so importing bench stays cheap even when an entry pulls heavy libraries in its factory.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not in a registry. `str()` is the user-facing message."""

    def __init__(self, kind: str, name: str, available: list[str]):
        self.kind, self.name, self.available = kind, name, available
        self.suggestion = suggest(name, available)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        hint = f" Did you mean '{self.suggestion}'?" if self.suggestion else ""
        return f"Unknown {self.kind} '{self.name}'.{hint} Available: {', '.join(self.available)}"

    def __str__(self) -> str:
        return self.message


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The closest valid name to `name`, case-insensitively, or None when nothing is close."""
    lowered = {c.lower(): c for c in choices}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


class Registry(Generic[T]):
    """Named, lazily built entries of one kind (`kind` is used in messages: 'task', 'optimizer')."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[[], T]] = {}
        self._built: dict[str, T] = {}

    def register(self, name: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
        """Decorator: `@REGISTRY.register("name")` on a zero-argument factory returning the entry."""

        def decorator(factory: Callable[[], T]) -> Callable[[], T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def add(self, name: str, entry: T) -> T:
        """Register an already-built entry."""
        self.register(name)(lambda: entry)
        return entry

    def get(self, name: str) -> T:
        if name not in self._factories:
            raise UnknownNameError(self.kind, name, self.names())
        if name not in self._built:
            self._built[name] = self._factories[name]()
        return self._built[name]

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def names(self) -> list[str]:
        return sorted(self._factories)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self.get(name)

    def __len__(self) -> int:
        return len(self._factories)


# The project's registries. Entries register on import of `bench.tasks` and `bench.optimizers`;
# `bench.catalog.load()` imports both (and any user plugin modules).
TASKS: Registry = Registry("task")
OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")
