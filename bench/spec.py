"""Load a suite: includes, project defaults, validation -> frozen typed objects.

`load_suite(path, overrides)` is the only way a suite enters bench. Everything downstream reads the
frozen dataclasses below, never raw dicts. Any problem raises `SpecError`, whose message names the
file, the key path, the bad value, what was expected and (for names) the nearest valid one:

    suites/vision.yaml: optimizers[1].search_space.lr.low: must be > 0 for a log scale, got 0.0

Loading is pure: it reads files and touches no store, so `bench validate` and `bench plan` are free.

Precedence, lowest first: `benchmark.yaml` (its `tuning:`/`trainer:` and settings keys) < the files named
under `include:` (in order) < the suite file < CLI overrides (`{"tuning.trials": 2}`). Mappings are
deep-merged; lists and scalars are replaced whole (a suite's `tasks:` replaces an include's).

A few rules the loader applies so that downstream code need not:
- An optimizer's `search_space:` replaces the entry's default space; each parameter given is merged
  key by key over the entry's default for it (`lr: {high: 0.1}` keeps the default low and log).
  `weight_decay: {}` keeps a default parameter as it is.
- A hyperparameter under `fixed:` is removed from the searched space (`betas` covers `beta1`,
  `one_minus_beta1`, ...); naming it in both `fixed:` and `search_space:` is an error.
- An optimizer's `schedule:` is merged over the suite's `schedule:`; optimizers flagged `schedule_free`
  or `no_schedule` get a constant schedule unless their item names one.
- `leaderboard.reference` defaults to `adamw` when the suite has it, else to the first optimizer.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.optimizers.base import OptimizerEntry
from bench.registry import OPTIMIZERS, SCHEDULES, TASKS, UnknownNameError, suggest
from bench.space import Param, SpaceError, parse_param
from bench.tasks.base import Mode, TaskEntry


class SpecError(ValueError):
    """A malformed suite or benchmark.yaml. `str()` is the whole user-facing message."""

    def __init__(self, file: str | Path, key: str, message: str):
        self.file, self.key = str(file), key
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


@dataclass(frozen=True)
class Settings:
    """Project defaults from benchmark.yaml (then the suite's `settings:`, then CLI flags)."""

    tracking_uri: str = "sqlite:///mlflow.db"  # MLflow's own default store, in the working directory
    storage: str = "sqlite:///.bench/optuna.db"  # Optuna storage URL, or a path ending in .log (journal)
    data_root: str = "data"  # where tasks look for local datasets (imagefolder, parquet, ...)
    leaderboard_dir: str = "leaderboards"
    device: str = "auto"  # Lightning accelerator: auto, cpu, gpu
    heartbeat_s: float = 10.0  # Optuna heartbeat of running trials; a dead trial is retried after 3x this
    standins: bool = False  # data_root holds offline stand-ins (bench.tasks.standins), written when missing


@dataclass(frozen=True)
class TaskSpec:
    """One task as the suite uses it: the registry entry plus the suite's overrides."""

    name: str
    entry: TaskEntry
    steps: int
    batch_size: int
    options: Mapping[str, Any]
    metric: str
    mode: Mode
    target: float | None
    eval_every: int


@dataclass(frozen=True)
class ScheduleSpec:
    """Learning-rate schedule: constant, linear, cosine or wsd, each with linear warmup.
    `warmup` and `cooldown` are fractions of the trial's steps when < 1, else step counts."""

    name: str = "cosine"
    warmup: float = 0.0
    cooldown: float = 0.2  # wsd only: the final decay phase
    min_lr_ratio: float = 0.0


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer as the suite uses it. `label` is unique in the suite (defaults to the name)."""

    label: str
    entry: OptimizerEntry
    search_space: Mapping[str, Param]  # the entry's default unless the suite replaces it
    fixed: Mapping[str, Any]  # hyperparameters held fixed (not searched), over the entry's defaults
    schedule: ScheduleSpec
    decay_filter: bool = True  # no weight decay on biases, norms and embeddings
    ema: float | None = None  # evaluate an EMA of the weights with this decay, beside the raw weights
    batch_size: int | None = None  # transfer the tuned lr to this batch size (entry.lr_scaling)


@dataclass(frozen=True)
class TuningSpec:
    protocol: str = "random"  # random, qmc, tpe, cmaes, grid, defaults
    trials: int = 8  # trials per study
    seeds: int = 1  # seeds the best configuration of each study is run on (1: no reruns)
    sampler_seed: int = 0
    pruner: str = "none"  # none, median, hyperband
    trial_time_budget_s: float | None = None
    study_time_budget_s: float | None = None
    divergence_factor: float = 3.0  # train loss above this multiple of its first value is divergence


@dataclass(frozen=True)
class TrainerSpec:
    """Passed to Lightning's Trainer."""

    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    compile: bool = False


@dataclass(frozen=True)
class LeaderboardSpec:
    ks: tuple[int, ...] = (1, 4)  # expected best-of-k columns
    basin_eps: float = 0.01  # relative tolerance for the learning-rate basin
    reference: str = "adamw"  # fixed denominator for the reference performance profile
    r_max: float = 4.0


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    tasks: tuple[TaskSpec, ...]
    optimizers: tuple[OptimizerSpec, ...]
    tuning: TuningSpec
    trainer: TrainerSpec
    leaderboard: LeaderboardSpec
    settings: Settings
    resolved: Mapping[str, Any] = field(default_factory=dict)  # includes merged, for provenance


# ----------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------

PROJECT_FILE = "benchmark.yaml"
COMMAND_LINE = "command line"  # the "file" named in errors about CLI overrides

SUITE_KEYS = (
    "name", "description", "include", "settings", "tasks", "optimizers", "schedule", "tuning", "trainer",
    "leaderboard",
)  # fmt: skip
TASK_KEYS = ("name", "version", "steps", "batch_size", "eval_every", "target", "metric", "options")
OPTIMIZER_KEYS = ("name", "label", "fixed", "search_space", "schedule", "decay_filter", "ema", "batch_size")
PROTOCOLS = ("random", "qmc", "tpe", "cmaes", "grid", "defaults")
PRUNERS = ("none", "median", "hyperband")
DEVICES = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRECISIONS = (
    "64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
    "transformer-engine", "transformer-engine-float16",
)  # fmt: skip
# Suite names and optimizer labels become parts of study names (`suite.task.label`) and of file names.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

KeyPath = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads `1e-4` as a float (YAML 1.1 needs `1.0e-4`)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, typing.Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str) -> Any:
    """A CLI value read as YAML (`2` -> 2, `1e-3` -> 0.001, `[1, 4]` -> list, `x` -> 'x')."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["tuning.trials=2", "settings.device=cpu"]` -> `{"tuning.trials": 2, "settings.device": "cpu"}`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(COMMAND_LINE, "", f"expected an override like tuning.trials=2, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def _show(path: Path) -> str:
    """A path as the user should see it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _fmt(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _read_yaml(path: Path) -> dict:
    shown = _show(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(shown, "", f"cannot read the file: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({e.context})" if e.context else ""
        if e.context and e.context_mark and e.context_mark.line != getattr(mark, "line", None):
            context = f" ({e.context} started at line {e.context_mark.line + 1})"
        raise SpecError(shown, "", f"invalid YAML{where}: {e.problem}{context}") from None
    except yaml.YAMLError as e:
        raise SpecError(shown, "", f"invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(shown, "", f"expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


# Where each key path of the merged tree was last set: deep-merging keeps track of it so that an error in
# a key that came from an include or from benchmark.yaml names that file, not the suite.
Origins = dict[KeyPath, str]


def _record(origins: Origins, tree: Mapping, source: str, prefix: KeyPath = ()) -> None:
    for key, value in tree.items():
        path = (*prefix, key)
        if not isinstance(value, Mapping):  # replaces anything that was below this path
            for old in [o for o in origins if len(o) > len(path) and o[: len(path)] == path]:
                del origins[old]
        origins[path] = source
        if isinstance(value, Mapping):
            _record(origins, value, source, path)


def _merge(base: dict, top: Mapping) -> dict:
    """Deep merge: mappings merge key by key, `top` wins; lists and scalars are replaced whole."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_tree(path: Path, stack: tuple[Path, ...], origins: Origins) -> dict:
    """The file at `path` with its includes merged in (recursively); fills `origins`."""
    shown = _show(path)
    raw = _read_yaml(path)
    includes = raw.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise SpecError(shown, "include", f"expected a path or a list of paths, got {includes!r}")
    if len(stack) > 1 and "name" in raw:
        raise SpecError(shown, "name", "not allowed in an included file (a suite is named by its own file)")
    merged: dict = {}
    for i, rel in enumerate(includes):
        target = path.parent / rel
        if not target.is_file():
            raise SpecError(shown, f"include[{i}]", f"no such file '{rel}' (looked for {_show(target)})")
        if target.resolve() in stack:
            cycle = stack[stack.index(target.resolve()) :] + (target.resolve(),)
            chain = " -> ".join(_show(p) for p in cycle)
            raise SpecError(shown, f"include[{i}]", f"include cycle: {chain}")
        merged = _merge(merged, _load_tree(target, (*stack, target.resolve()), origins))
    _record(origins, raw, shown)
    return _merge(merged, raw)


def _find_project_file(start: Path | None) -> Path | None:
    dirs: list[Path] = []
    if start is not None:
        start = start.resolve()
        dirs += [start, *start.parents]
    dirs.append(Path.cwd())
    for d in dirs:
        if (d / PROJECT_FILE).is_file():
            return d / PROJECT_FILE
    return None


_SETTINGS_KEYS = tuple(f.name for f in dataclasses.fields(Settings))


def _read_project(start: Path | None) -> tuple[dict, Origins]:
    """benchmark.yaml in suite shape: `{"settings": {...}, "tuning": {...}, "trainer": {...}}`."""
    path = _find_project_file(start)
    if path is None:
        return {}, {}
    shown = _show(path)
    raw = _read_yaml(path)
    valid = (*_SETTINGS_KEYS, "tuning", "trainer")
    for key in raw:
        if key not in valid:
            hint = " (settings keys go at the top level of benchmark.yaml)" if key == "settings" else ""
            raise SpecError(shown, str(key), _unknown_key(key, valid) + hint)
    tree: dict = {"settings": {k: v for k, v in raw.items() if k in _SETTINGS_KEYS}}
    tree.update({k: raw[k] for k in ("tuning", "trainer") if k in raw})
    origins: Origins = {}
    _record(origins, tree, shown)
    return tree, origins


def load_settings(start: Path | None = None) -> tuple[Settings, dict]:
    """Settings from the nearest benchmark.yaml (from `start` upward, then the working directory), and
    its raw `{"tuning": {...}, "trainer": {...}}` defaults (validated). Defaults when there is none."""
    tree, origins = _read_project(start)
    ctx = _Context(PROJECT_FILE, origins)
    settings = _settings(tree.get("settings", {}), ctx)
    _tuning(tree.get("tuning", {}), ctx)
    _trainer(tree.get("trainer", {}), ctx)
    return settings, {k: copy.deepcopy(tree[k]) for k in ("tuning", "trainer") if k in tree}


def _parse_key(key: str) -> KeyPath:
    """`optimizers[1].fixed.lr` -> ("optimizers", 1, "fixed", "lr")."""
    parts: list[str | int] = []
    for chunk in key.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", chunk)
        if not m:
            raise SpecError(
                COMMAND_LINE, key, "expected a dotted key like tuning.trials or optimizers[0].ema"
            )
        parts.append(m.group(1))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return tuple(parts)


def _apply_override(tree: dict, key: str, value: Any, origins: Origins) -> None:
    path = _parse_key(key)
    node: Any = tree
    for depth, part in enumerate(path):
        here = path[: depth + 1]
        if isinstance(part, int) and (not isinstance(node, list) or part >= len(node)):
            raise SpecError(COMMAND_LINE, _fmt(here), f"no such item in the suite (overriding {key})")
        if isinstance(part, str) and not isinstance(node, dict):
            raise SpecError(COMMAND_LINE, _fmt(here[:-1]), f"is not a mapping; cannot set '{part}' in it")
        if depth == len(path) - 1:
            old = node[part] if isinstance(part, int) else node.get(part)
            # A mapping merges like an included file would; anything else replaces.
            node[part] = _merge(old, value) if isinstance(old, dict) and isinstance(value, Mapping) else value
            break
        child = node[part] if isinstance(part, int) else node.get(part)
        if isinstance(child, str):  # a bare name (`- adamw`, `schedule: cosine`): make it a mapping
            child = {"name": child}
        elif not isinstance(child, dict | list):
            child = {}
        node[part] = child
        node = child
    _record(origins, {path[-1]: value}, COMMAND_LINE, path[:-1])


ENV_SETTINGS = {
    "BENCH_TRACKING_URI": "tracking_uri",
    "BENCH_STORAGE": "storage",
    "BENCH_DATA_ROOT": "data_root",
}


def load_suite(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Suite:
    """Read, merge and validate a suite. Raises SpecError for anything wrong; touches no store."""
    import bench.catalog

    bench.catalog.load()
    path = Path(path)
    if not path.is_file():
        raise SpecError(_show(path), "", "no such suite file")
    tree, origins = _read_project(path.parent)
    tree = _merge(tree, _load_tree(path, (path.resolve(),), origins))
    # Shared stores for a fleet of workers are set once in the environment: it beats the files,
    # and the command line beats it.
    env = {f"settings.{key}": os.environ[var] for var, key in ENV_SETTINGS.items() if os.environ.get(var)}
    for key, value in {**env, **(overrides or {})}.items():
        _apply_override(tree, key, copy.deepcopy(value), origins)
    return _build_suite(tree, path, _Context(_show(path), origins))


# ----------------------------------------------------------------------------------------------------
# Validation: raw merged tree -> typed objects
# ----------------------------------------------------------------------------------------------------


class _Context:
    """Turns a key path into a SpecError naming the file the key came from."""

    def __init__(self, main: str, origins: Origins):
        self.main, self.origins = main, origins

    def file_of(self, path: KeyPath) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return self.main

    def error(self, path: KeyPath, message: str) -> SpecError:
        return SpecError(self.file_of(path), _fmt(path), message)

    def has(self, path: KeyPath) -> bool:
        """Whether the key was written somewhere (rather than being a default)."""
        return path in self.origins


def _unknown_key(key: Any, valid: Iterable[str]) -> str:
    valid = list(valid)
    hint = suggest(str(key), valid)
    did = f" Did you mean '{hint}'?" if hint else ""
    return f"unknown key '{key}'.{did} Expected one of: {', '.join(valid)}"


def _mapping(raw: Any, path: KeyPath, ctx: _Context, what: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ctx.error(path, f"expected a mapping of {what}, got {raw!r}")
    return dict(raw)


def _check_keys(raw: Mapping, valid: Iterable[str], path: KeyPath, ctx: _Context) -> None:
    valid = tuple(valid)
    for key in raw:
        if key not in valid:
            raise ctx.error((*path, key), _unknown_key(key, valid))


def _describe(tp: Any) -> str:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        parts = [_describe(a) for a in typing.get_args(tp) if a is not type(None)]
        if type(None) in typing.get_args(tp):
            parts.append("null")
        return " or ".join(parts)
    if typing.get_origin(tp) is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('an ').removeprefix('a ')}s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


_INVALID = object()


def _coerce(value: Any, tp: Any) -> Any:
    """`value` as type `tp` (int accepted for float; list for tuple), or _INVALID."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in typing.get_args(tp):
            return None
        for arg in typing.get_args(tp):
            if arg is not type(None) and (out := _coerce(value, arg)) is not _INVALID:
                return out
        return _INVALID
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list | tuple):
            return _INVALID
        items = [_coerce(v, typing.get_args(tp)[0]) for v in value]
        return _INVALID if any(i is _INVALID for i in items) else tuple(items)
    if tp is bool:
        return value if isinstance(value, bool) else _INVALID
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if tp is float:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _INVALID
    if tp is str:
        return value if isinstance(value, str) else _INVALID
    return value


def _typed(value: Any, tp: Any, path: KeyPath, ctx: _Context) -> Any:
    out = _coerce(value, tp)
    if out is _INVALID:
        raise ctx.error(path, f"expected {_describe(tp)}, got {value!r}")
    return out


def _fields(cls: type, raw: Any, path: KeyPath, ctx: _Context) -> dict[str, Any]:
    """Keys of a config dataclass read from `raw`: unknown keys rejected, types checked."""
    names = [f.name for f in dataclasses.fields(cls)]
    raw = _mapping(raw, path, ctx, ", ".join(names))
    _check_keys(raw, names, path, ctx)
    hints = typing.get_type_hints(cls)
    return {k: _typed(v, hints[k], (*path, k), ctx) for k, v in raw.items()}


def _require(ok: bool, path: KeyPath, ctx: _Context, message: str) -> None:
    if not ok:
        raise ctx.error(path, message)


def _one_of(
    value: str, choices: Iterable[str], path: KeyPath, ctx: _Context, what: str, owner: str = ""
) -> None:
    choices = list(choices)
    if value not in choices:
        hint = suggest(value, choices)
        did = f" Did you mean '{hint}'?" if hint else ""
        of = f" for {owner}" if owner else ""
        raise ctx.error(path, f"unknown {what} '{value}'{of}.{did} Expected one of: {', '.join(choices)}")


def _settings(raw: Any, ctx: _Context) -> Settings:
    values = _fields(Settings, raw, ("settings",), ctx)
    if "device" in values:
        _one_of(values["device"], DEVICES, ("settings", "device"), ctx, "device")
    settings = Settings(**values)
    hb = settings.heartbeat_s
    _require(hb > 0, ("settings", "heartbeat_s"), ctx, f"must be > 0 seconds, got {hb}")
    return settings


def _tuning(raw: Any, ctx: _Context) -> TuningSpec:
    p: KeyPath = ("tuning",)
    t = TuningSpec(**_fields(TuningSpec, raw, p, ctx))
    _one_of(t.protocol, PROTOCOLS, (*p, "protocol"), ctx, "protocol")
    _one_of(t.pruner, PRUNERS, (*p, "pruner"), ctx, "pruner")
    _require(t.trials >= 1, (*p, "trials"), ctx, f"must be >= 1, got {t.trials}")
    _require(t.seeds >= 1, (*p, "seeds"), ctx, f"must be >= 1 (1: no reruns of the best), got {t.seeds}")
    for key in ("trial_time_budget_s", "study_time_budget_s"):
        v = getattr(t, key)
        _require(v is None or v > 0, (*p, key), ctx, f"must be > 0 seconds or null, got {v}")
    _require(
        t.divergence_factor > 1, (*p, "divergence_factor"), ctx, f"must be > 1, got {t.divergence_factor}"
    )
    return t


def _trainer(raw: Any, ctx: _Context) -> TrainerSpec:
    p: KeyPath = ("trainer",)
    raw = _mapping(raw, p, ctx, "trainer keys")
    if isinstance(raw.get("precision"), int) and not isinstance(raw["precision"], bool):
        raw["precision"] = str(raw["precision"])  # Lightning accepts `precision: 32`
    t = TrainerSpec(**_fields(TrainerSpec, raw, p, ctx))
    _one_of(t.accelerator, DEVICES, (*p, "accelerator"), ctx, "accelerator")
    _one_of(t.precision, PRECISIONS, (*p, "precision"), ctx, "precision")
    if isinstance(t.devices, int):
        _require(
            t.devices >= 1 or t.devices == -1, (*p, "devices"), ctx, f"must be >= 1 or -1, got {t.devices}"
        )
    _require(t.num_nodes >= 1, (*p, "num_nodes"), ctx, f"must be >= 1, got {t.num_nodes}")
    _require(
        t.accumulate_grad_batches >= 1,
        (*p, "accumulate_grad_batches"),
        ctx,
        f"must be >= 1, got {t.accumulate_grad_batches}",
    )
    return t


def _schedule_raw(raw: Any, path: KeyPath, ctx: _Context) -> dict:
    """A schedule as a mapping; `schedule: cosine` is short for `schedule: {name: cosine}`."""
    return {"name": raw} if isinstance(raw, str) else _mapping(raw, path, ctx, "schedule keys")


def _schedule(raw: dict, path: KeyPath, ctx: _Context) -> ScheduleSpec:
    s = ScheduleSpec(**_fields(ScheduleSpec, raw, path, ctx))
    if SCHEDULES.names():  # empty only while the optimizer package is half-written
        try:
            SCHEDULES.get(s.name)
        except UnknownNameError as e:
            raise ctx.error((*path, "name"), str(e)) from None
    for key in ("warmup", "cooldown"):
        v = getattr(s, key)
        _require(v >= 0, (*path, key), ctx, f"must be >= 0 (a fraction of steps if < 1, else steps), got {v}")
    _require(
        0 <= s.min_lr_ratio <= 1, (*path, "min_lr_ratio"), ctx, f"must be in [0, 1], got {s.min_lr_ratio}"
    )
    return s


def _leaderboard(raw: Any, labels: list[str], ctx: _Context) -> LeaderboardSpec:
    p: KeyPath = ("leaderboard",)
    values = _fields(LeaderboardSpec, raw, p, ctx)
    lb = LeaderboardSpec(**values)
    _require(len(lb.ks) > 0, (*p, "ks"), ctx, "expected at least one k, got []")
    for i, k in enumerate(lb.ks):
        _require(k >= 1, (*p, "ks", i), ctx, f"must be >= 1, got {k}")
    _require(lb.basin_eps > 0, (*p, "basin_eps"), ctx, f"must be > 0, got {lb.basin_eps}")
    _require(lb.r_max > 1, (*p, "r_max"), ctx, f"must be > 1, got {lb.r_max}")
    if "reference" in values:
        if lb.reference not in labels:
            hint = suggest(lb.reference, labels)
            did = f" Did you mean '{hint}'?" if hint else ""
            raise ctx.error(
                (*p, "reference"),
                f"'{lb.reference}' is not an optimizer label of this suite.{did} Labels: {', '.join(labels)}",
            )
    elif lb.reference not in labels:
        lb = dataclasses.replace(lb, reference=labels[0])
    return lb


def _item(raw: Any, path: KeyPath, ctx: _Context, what: str, keys: tuple[str, ...]) -> tuple[dict, KeyPath]:
    """A list item that is a bare name or a mapping with `name`; returns it and the path of its name."""
    if isinstance(raw, str):
        return {"name": raw}, path
    if not isinstance(raw, Mapping):
        raise ctx.error(path, f"expected {what} name or a mapping with 'name', got {raw!r}")
    _check_keys(raw, keys, path, ctx)
    if "name" not in raw:
        raise ctx.error(path, f"missing 'name' ({what} name)")
    if not isinstance(raw["name"], str):
        raise ctx.error((*path, "name"), f"expected {what} name, got {raw['name']!r}")
    return dict(raw), (*path, "name")


def _option_value(value: Any, default: Any, path: KeyPath, ctx: _Context) -> Any:
    """A task option, checked against the type of its default."""
    tp = {bool: bool, int: int, float: float, str: str}.get(type(default))
    if tp is None:
        return value
    out = _coerce(value, tp)
    if out is _INVALID:
        raise ctx.error(path, f"expected {_describe(tp)} (like the default {default!r}), got {value!r}")
    return out


def _task(raw: Any, i: int, ctx: _Context) -> TaskSpec:
    p: KeyPath = ("tasks", i)
    raw, name_path = _item(raw, p, ctx, "a task", TASK_KEYS)
    try:
        entry: TaskEntry = TASKS.get(raw["name"])
    except UnknownNameError as e:
        raise ctx.error(name_path, str(e)) from None

    def get(key: str, tp: Any, default: Any) -> Any:
        return _typed(raw[key], tp, (*p, key), ctx) if key in raw else default

    version = get("version", int, entry.version)
    _require(
        version == entry.version,
        (*p, "version"),
        ctx,
        f"the suite pins version {version} but task '{entry.name}' is at version {entry.version} "
        "(results of another version are not comparable; update the pin)",
    )
    steps = get("steps", int, entry.steps)
    _require(steps >= 1, (*p, "steps"), ctx, f"must be >= 1, got {steps}")
    batch_size = get("batch_size", int, entry.batch_size)
    _require(batch_size >= 1, (*p, "batch_size"), ctx, f"must be >= 1, got {batch_size}")
    eval_every = get("eval_every", int, entry.eval_every)
    _require(eval_every >= 0, (*p, "eval_every"), ctx, f"must be >= 0 (0: only at the end), got {eval_every}")
    metric = get("metric", str, entry.metric)
    metrics = {entry.metric: entry.mode, **entry.metrics}
    _one_of(metric, metrics, (*p, "metric"), ctx, "metric", f"task '{entry.name}'")
    # The entry's target is for its own metric; another metric has none unless the suite gives one.
    target = get("target", float | None, entry.target if metric == entry.metric else None)
    given = _mapping(raw.get("options"), (*p, "options"), ctx, "task options")
    options = dict(entry.options)
    for key, value in given.items():
        if key not in entry.options:
            known = ", ".join(entry.options) or "(none)"
            hint = suggest(str(key), list(entry.options))
            did = f" Did you mean '{hint}'?" if hint else ""
            raise ctx.error(
                (*p, "options", key), f"unknown option '{key}' for task '{entry.name}'.{did} Options: {known}"
            )
        options[key] = _option_value(value, entry.options[key], (*p, "options", key), ctx)
    return TaskSpec(
        name=entry.name,
        entry=entry,
        steps=steps,
        batch_size=batch_size,
        options=options,
        metric=metric,
        mode=metrics[metric],
        target=target,
        eval_every=eval_every,
    )


def _user_optimizer(name: str, path: KeyPath, ctx: _Context) -> OptimizerEntry:
    if not _IMPORT_PATH.match(name):
        raise ctx.error(path, f"expected a user optimizer as 'package.module:Name', got {name!r}")
    from bench.optimizers.custom import entry_from_import  # only suites that use one pay for it

    try:
        entry = entry_from_import(name)
    except (ImportError, AttributeError, ValueError, TypeError) as e:
        raise ctx.error(path, f"cannot use user optimizer '{name}': {e}") from None
    # The import path is the optimizer's identity (provenance, fingerprints, reloading `resolved`).
    return entry if entry.name == name else dataclasses.replace(entry, name=name)


def _hparam_names(entry: OptimizerEntry) -> list[str]:
    """Names a suite may fix or search for a registry optimizer: its defaults and search space, plus the
    `beta1`/`beta2` spelling of `betas` (any of them may also be written `one_minus_X`)."""
    names = set(entry.defaults) | set(entry.search_space)
    names |= {n.removeprefix("one_minus_") for n in names}
    if "betas" in names:
        betas = entry.defaults.get("betas", (0.9, 0.999))
        count = len(betas) if isinstance(betas, list | tuple) else 2
        names |= {f"beta{j + 1}" for j in range(count)}
    return sorted(names)


def _covers(fixed: str, searched: str) -> bool:
    """Whether fixing `fixed` takes the searched name `searched` out of the space."""
    base, target = searched.removeprefix("one_minus_"), fixed.removeprefix("one_minus_")
    return base == target or (target == "betas" and re.fullmatch(r"beta\d", base) is not None)


def _param(raw: Any, default: Param | None, path: KeyPath, ctx: _Context) -> Param:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        hint = " (a value held constant goes under `fixed:`)" if isinstance(raw, int | float | str) else ""
        raise ctx.error(
            path, f"expected a mapping like {{low: 1e-4, high: 1e-1, log: true}}, got {raw!r}{hint}"
        )
    merged: dict[str, Any] = dict(raw)
    # Merge per parameter over the entry's default, when both are ranges (choices replace a range).
    if default is not None and "choices" not in raw and not hasattr(default, "choices"):
        merged = {**default.to_dict(), **raw}
    elif default is not None and not raw:
        merged = default.to_dict()
    try:
        return parse_param(merged)
    except SpaceError as e:
        sub = (*path, e.key) if e.key else path
        raise ctx.error(sub, str(e)) from None


def _optimizer(raw: Any, i: int, suite_schedule: dict, ctx: _Context) -> OptimizerSpec:
    p: KeyPath = ("optimizers", i)
    raw, name_path = _item(raw, p, ctx, "an optimizer", OPTIMIZER_KEYS)
    name: str = raw["name"]
    user = ":" in name
    if user:
        entry = _user_optimizer(name, name_path, ctx)
    else:
        try:
            entry = OPTIMIZERS.get(name)
        except UnknownNameError as e:
            raise ctx.error(name_path, str(e)) from None
        except ImportError as e:  # an optional library behind the entry
            raise ctx.error(name_path, f"optimizer '{name}' is unavailable: {e}") from None
    label = _typed(raw.get("label", name.rsplit(":", 1)[-1]), str, (*p, "label"), ctx)
    _require(
        bool(_LABEL.match(label)),
        (*p, "label"),
        ctx,
        f"expected letters, digits, '_' or '-' (it becomes part of study names), got {label!r}",
    )
    valid = None if user else _hparam_names(entry)

    def check_name(key: Any, section: str) -> None:
        if not isinstance(key, str):
            raise ctx.error((*p, section, key), f"expected a hyperparameter name, got {key!r}")
        if valid is not None and key.removeprefix("one_minus_") not in valid:
            hint = suggest(key, valid)
            did = f" Did you mean '{hint}'?" if hint else ""
            raise ctx.error(
                (*p, section, key),
                f"unknown hyperparameter '{key}' for optimizer '{entry.name}'.{did} Known: {', '.join(valid)}",
            )

    fixed = _mapping(raw.get("fixed"), (*p, "fixed"), ctx, "hyperparameter values")
    for key in fixed:
        check_name(key, "fixed")
    if "search_space" in raw:
        given = _mapping(raw["search_space"], (*p, "search_space"), ctx, "hyperparameter ranges")
        space: dict[str, Param] = {}
        for key, value in given.items():
            check_name(key, "search_space")
            for f in fixed:
                _require(
                    not _covers(f, key),
                    (*p, "fixed", f),
                    ctx,
                    f"'{f}' is also in search_space ('{key}'); a hyperparameter is either fixed or searched",
                )
            space[key] = _param(value, entry.search_space.get(key), (*p, "search_space", key), ctx)
    else:
        space = {k: v for k, v in entry.search_space.items() if not any(_covers(f, k) for f in fixed)}

    if "schedule" in raw:
        sp = (*p, "schedule")
        schedule = _schedule(_merge(suite_schedule, _schedule_raw(raw["schedule"], sp, ctx)), sp, ctx)
    elif entry.flags & {"schedule_free", "no_schedule"}:
        schedule = ScheduleSpec(name="constant", warmup=0.0)
    else:
        schedule = _schedule(suite_schedule, ("schedule",), ctx)
    decay_filter = _typed(raw.get("decay_filter", True), bool, (*p, "decay_filter"), ctx)
    ema = _typed(raw.get("ema"), float | None, (*p, "ema"), ctx)
    _require(ema is None or 0 < ema < 1, (*p, "ema"), ctx, f"must be in (0, 1) or null, got {ema}")
    batch_size = _typed(raw.get("batch_size"), int | None, (*p, "batch_size"), ctx)
    _require(
        batch_size is None or batch_size >= 1, (*p, "batch_size"), ctx, f"must be >= 1, got {batch_size}"
    )
    return OptimizerSpec(
        label=label,
        entry=entry,
        search_space=space,
        fixed=fixed,
        schedule=schedule,
        decay_filter=decay_filter,
        ema=ema,
        batch_size=batch_size,
    )


def _list(tree: Mapping, key: str, ctx: _Context, example: str) -> list:
    if key not in tree:
        raise ctx.error((key,), f"missing; expected a list like {example}")
    value = tree[key]
    if not isinstance(value, list) or not value:
        raise ctx.error((key,), f"expected a non-empty list like {example}, got {value!r}")
    return value


def _build_suite(tree: dict, path: Path, ctx: _Context) -> Suite:
    _check_keys(tree, [k for k in SUITE_KEYS if k != "include"], (), ctx)
    name = _typed(tree.get("name", path.stem), str, ("name",), ctx)
    _require(bool(_LABEL.match(name)), ("name",), ctx, f"expected letters, digits, '_' or '-', got {name!r}")
    description = _typed(tree.get("description", ""), str, ("description",), ctx)
    settings = _settings(tree.get("settings"), ctx)
    tuning = _tuning(tree.get("tuning"), ctx)
    trainer = _trainer(tree.get("trainer"), ctx)

    tasks: list[TaskSpec] = []
    for i, item in enumerate(_list(tree, "tasks", ctx, "[digits_cnn, pydocs_gpt_tiny]")):
        task = _task(item, i, ctx)
        for j, other in enumerate(tasks):
            _require(
                task.name != other.name,
                ("tasks", i),
                ctx,
                f"duplicate task '{task.name}' (also tasks[{j}])",
            )
        tasks.append(task)

    suite_schedule = _schedule_raw(tree.get("schedule"), ("schedule",), ctx)
    _schedule(suite_schedule, ("schedule",), ctx)  # validate even if every optimizer overrides it
    optimizers: list[OptimizerSpec] = []
    for i, item in enumerate(_list(tree, "optimizers", ctx, "[adamw, sgd]")):
        opt = _optimizer(item, i, suite_schedule, ctx)
        for j, other in enumerate(optimizers):
            _require(
                opt.label != other.label,
                ("optimizers", i),
                ctx,
                f"duplicate optimizer label '{opt.label}' (also optimizers[{j}]); give one a `label:`",
            )
        optimizers.append(opt)

    leaderboard = _leaderboard(tree.get("leaderboard"), [o.label for o in optimizers], ctx)
    suite = Suite(
        name=name,
        path=path,
        description=description,
        tasks=tuple(tasks),
        optimizers=tuple(optimizers),
        tuning=tuning,
        trainer=trainer,
        leaderboard=leaderboard,
        settings=settings,
    )
    return dataclasses.replace(suite, resolved=resolve(suite))


def _plain(value: Any) -> Any:
    """JSON/YAML-ready: mappings -> dicts, tuples -> lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def task_dict(t: TaskSpec) -> dict[str, Any]:
    """A task as the suite resolved it (loadable again as a `tasks:` item)."""
    return _plain(
        {
            "name": t.name,
            "version": t.entry.version,
            "steps": t.steps,
            "batch_size": t.batch_size,
            "eval_every": t.eval_every,
            "metric": t.metric,
            "target": t.target,
            "options": t.options,
        }
    )


def optimizer_dict(o: OptimizerSpec) -> dict[str, Any]:
    """An optimizer as the suite resolved it (loadable again as an `optimizers:` item)."""
    return _plain(
        {
            "name": o.entry.name,
            "label": o.label,
            "search_space": {k: p.to_dict() for k, p in o.search_space.items()},
            "fixed": o.fixed,
            "schedule": dataclasses.asdict(o.schedule),
            "decay_filter": o.decay_filter,
            "ema": o.ema,
            "batch_size": o.batch_size,
        }
    )


def resolve(suite: Suite) -> dict[str, Any]:
    """The fully merged suite as plain data: includes, project defaults and entry defaults applied.
    It is itself a valid suite file, so a logged `resolved` can be run again."""
    return _plain(
        {
            "name": suite.name,
            "description": suite.description,
            "settings": dataclasses.asdict(suite.settings),
            "tasks": [task_dict(t) for t in suite.tasks],
            "optimizers": [optimizer_dict(o) for o in suite.optimizers],
            "tuning": dataclasses.asdict(suite.tuning),
            "trainer": dataclasses.asdict(suite.trainer),
            "leaderboard": dataclasses.asdict(suite.leaderboard),
        }
    )
