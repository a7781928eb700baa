"""One small generic registry, used for tasks, optimizers and schedules, and the "did you mean" text.

A registry holds *entries*: small frozen declarations (a `TaskEntry`, an `OptimizerEntry`, a
`Schedule`) that carry their own `name`. Declaring an entry imports nothing heavy: whatever needs
torch is named by import path and imported on first call (`Lazy`). So listing and validating are
cheap, and the name is written once, in the entry.

    TASKS = Registry("task", group="bench.tasks", entries=digits.ENTRIES)
    TASKS.get("digit_cnn")
    # UnknownNameError: Unknown task 'digit_cnn'. Did you mean 'digits_cnn'? Available: digits_cnn, ...

Installed packages add entries through entry points named after the registries (`bench.tasks`,
`bench.optimizers`, `bench.schedules`). An entry point's object is an entry, a sequence of entries,
or a zero-argument callable returning either. Plugins are loaded the first time a name is missing or
the whole registry is listed; a plugin that fails to load is recorded in `plugin_errors` (named in
every "unknown name" message) and never breaks the built-in entries.

This module knows nothing about bench's own entries: `bench.catalog` builds the project's registries.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from typing import Any, Generic, Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)

BUILTIN = "bench"  # the origin of bench's own entries


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """The closest valid name to `name`, case-insensitively, or None when nothing is close."""
    lowered = {c.lower(): c for c in choices}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """` Did you mean 'x'?` when a choice is close to `name`, else ''. The one place this is worded."""
    hint = suggest(name, choices)
    return f" Did you mean '{hint}'?" if hint else ""


class UnknownNameError(KeyError):
    """A name that is not in a registry. `str()` is the user-facing message."""

    def __init__(self, kind: str, name: str, available: Sequence[str], note: str = ""):
        self.kind, self.name, self.available = kind, name, list(available)
        self.note = note
        super().__init__(self.message)

    @property
    def message(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return (
            f"Unknown {self.kind} '{self.name}'.{did_you_mean(self.name, self.available)} "
            f"Available: {', '.join(self.available)}{note}"
        )

    def __str__(self) -> str:
        return self.message


class Lazy:
    """A callable named by import path, imported on its first call: `Lazy("torch.optim:AdamW")`.

    Keyword arguments given here are bound (`Lazy("bench.workloads.digits:build", arch="cnn")`).
    Declarations use it so that describing an entry never imports the library behind it.
    """

    def __init__(self, target: str, **bound: Any):
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"expected 'package.module:name', got {target!r}")
        self.target, self.bound = target, bound
        self._obj: Any = None

    def resolve(self) -> Any:
        if self._obj is None:
            module, _, attr = self.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._obj = obj
        return self._obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **{**self.bound, **kwargs})

    def __repr__(self) -> str:
        bound = "".join(f", {k}={v!r}" for k, v in self.bound.items())
        return f"Lazy({self.target!r}{bound})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lazy) and (self.target, self.bound) == (other.target, other.bound)

    def __hash__(self) -> int:
        return hash(self.target)

    @property
    def __name__(self) -> str:  # what `source` strings and error messages show
        return self.target.rpartition(":")[2]


class Registry(Generic[T]):
    """Named entries of one kind (`kind` is used in messages: 'task', 'optimizer')."""

    def __init__(self, kind: str, *, group: str | None = None, entries: Iterable[T] = ()):
        self.kind, self.group = kind, group
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._plugins_loaded = group is None
        self.plugin_errors: dict[str, str] = {}  # entry point -> why it could not be loaded
        for entry in entries:
            self.add(entry)

    def add(self, entry: T, *, origin: str = BUILTIN) -> T:
        """Add an entry under its own name; a name is registered once."""
        name = entry.name
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice ({self._origins[name]} and {origin})")
        self._entries[name] = entry
        self._origins[name] = origin
        return entry

    def get(self, name: str) -> T:
        if name not in self._entries:
            self.load_plugins()
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self.names(), self._plugin_note())
        return self._entries[name]

    def origin(self, name: str) -> str:
        """Where an entry comes from: 'bench', or 'plugin <distribution> (<module:object>)'."""
        self.get(name)
        return self._origins[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._entries:
            self.load_plugins()
        return name in self._entries

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self._entries[name]

    def __len__(self) -> int:
        return len(self.names())

    # -- plugins ----------------------------------------------------------------------------------
    def load_plugins(self) -> None:
        """Add the entries that installed packages declare under this registry's entry-point group."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.group or ""):
            dist = ep.dist.name if ep.dist is not None else "?"
            where = f"plugin {dist} ({ep.value})"
            try:
                for entry in entries_of(ep.load(), self.kind, ep.value):
                    self.add(entry, origin=where)
            except Exception as exc:  # a broken plugin must not take the built-in entries down
                self.plugin_errors[f"{ep.name} = {ep.value}"] = f"{type(exc).__name__}: {exc}"

    def _plugin_note(self) -> str:
        if not self.plugin_errors:
            return ""
        broken = "; ".join(f"{k}: {v}" for k, v in self.plugin_errors.items())
        return f"plugins that failed to load: {broken}"


def entries_of(obj: Any, kind: str, where: str) -> list[Any]:
    """The entries an entry point or import path names: an entry, a sequence of entries, or a
    zero-argument callable returning either."""
    if callable(obj) and not hasattr(obj, "name"):
        obj = obj()
    items = list(obj) if isinstance(obj, list | tuple) else [obj]
    for item in items:
        if not isinstance(getattr(item, "name", None), str):
            raise TypeError(
                f"{where}: expected a {kind} entry (or a list of them), got {type(item).__name__}"
            )
    return items


def load_import_path(path: str, what: str) -> Any:
    """The object at `package.module:name`, with errors that name the path (ImportError, AttributeError)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} import path {path!r}: expected 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"{what} {path!r}: cannot import module {module_name!r}: {e}") from e
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([module_name, *attr.split(".")[:i]])
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise AttributeError(
                f"{what} {path!r}: '{owner}' has no attribute '{part}'.{did_you_mean(part, names)}"
            )
        obj = getattr(obj, part)
    return obj
