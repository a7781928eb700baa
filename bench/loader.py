"""Read a suite: YAML, includes, project defaults, environment, `--set` overrides -> one merged tree.

    suite = load_suite("suites/quickstart.yaml", {"tuning.trials": 2})

`load_suite` reads and merges the files here, then hands the tree to `bench.resolve`, which validates it
against the format (`bench.schema`) and the registries. Loading is pure: it reads files and touches no
store, so `bench validate` and `bench plan` are free. It never imports code a suite names by import
path (`package.module:Name`): that happens when the suite runs.

Precedence, lowest first: `benchmark.yaml` (its `tuning:`/`trainer:` and settings keys) < the files named
under `include:` (in order) < the suite file < `BENCH_*` environment variables (stores, data root) <
command-line overrides (`{"tuning.trials": 2}`). Mappings are deep-merged; lists and scalars are
replaced whole (a suite's `tasks:` replaces an include's). Each key remembers the file it came from,
so an error names that file.

YAML is read safely and within bounds, whatever the file holds: duplicate keys are errors, `1e-4` is a
float (YAML 1.1 needs `1.0e-4`), and a file that is too big, not UTF-8, nested too deep or expands
(through aliases) into too many values is refused with a message instead of hanging or exhausting
memory.
"""

from __future__ import annotations

import copy
import os
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.catalog import REGISTRIES, Registries
from bench.registry import did_you_mean
from bench.resolve import Resolved, resolve
from bench.schema import FrozenMap, KeyPath, ProjectConfig, Settings, TrainerSpec, TuningSpec, parse
from bench.spec import COMMAND_LINE, Origins, Problems, SpecError, Suite, fmt_path

PROJECT_FILE = "benchmark.yaml"
MAX_BYTES = 1 << 20  # a suite is a page of YAML; 1 MiB is generous
MAX_NODES = 100_000  # values after alias expansion (a "billion laughs" file has ~10^9)
MAX_DEPTH = 64  # nesting of mappings and lists
ENV_SETTINGS = {
    "BENCH_TRACKING_URI": "tracking_uri",
    "BENCH_STORAGE": "storage",
    "BENCH_DATA_ROOT": "data_root",
}


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
    """A command-line value read as YAML (`2` -> 2, `1e-3` -> 0.001, `[1, 4]` -> list, `x` -> 'x')."""
    try:
        value = yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, RecursionError):
        return text
    return value if _size_problem(value) is None else text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["tuning.trials=2", "settings.device=cpu"]` -> `{"tuning.trials": 2, "settings.device": "cpu"}`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(COMMAND_LINE, "", f"expected an override like tuning.trials=2, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def show(path: Path) -> str:
    """A path as the user should see it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _size_problem(data: Any) -> str | None:
    """Why `data` is too big or too deep to be a suite (counting shared alias targets each time)."""
    count, stack = 0, [(data, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            return f"expands to more than {MAX_NODES:,} values (through aliases?); a suite is far smaller"
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return None


def read_yaml(path: Path) -> dict:
    """One YAML file as a mapping, or a SpecError naming the file."""
    shown = show(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SpecError(shown, "", f"the file is {size:,} bytes; a suite may be at most {MAX_BYTES:,}")
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(shown, "", f"cannot read the file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(shown, "", f"not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start}") from None
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
    except RecursionError:
        raise SpecError(shown, "", f"invalid YAML: nested more than {MAX_DEPTH} levels deep") from None
    too_big = _size_problem(data)
    if too_big:
        raise SpecError(shown, "", too_big)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(shown, "", f"expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _record(origins: Origins, tree: Mapping, source: str, prefix: KeyPath = ()) -> None:
    for key, value in tree.items():
        path = (*prefix, key)
        if not isinstance(value, Mapping):  # replaces anything that was below this path
            for old in [o for o in origins if len(o) > len(path) and o[: len(path)] == path]:
                del origins[old]
        origins[path] = source
        if isinstance(value, Mapping):
            _record(origins, value, source, path)


def merge(base: Mapping, top: Mapping) -> dict:
    """Deep merge: mappings merge key by key, `top` wins; lists and scalars are replaced whole."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_tree(path: Path, stack: tuple[Path, ...], origins: Origins) -> dict:
    """The file at `path` with its includes merged in (recursively); fills `origins`."""
    shown = show(path)
    raw = read_yaml(path)
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
            raise SpecError(shown, f"include[{i}]", f"no such file '{rel}' (looked for {show(target)})")
        if target.resolve() in stack:
            cycle = stack[stack.index(target.resolve()) :] + (target.resolve(),)
            chain = " -> ".join(show(p) for p in cycle)
            raise SpecError(shown, f"include[{i}]", f"include cycle: {chain}")
        merged = merge(merged, _load_tree(target, (*stack, target.resolve()), origins))
    _record(origins, raw, shown)
    return merge(merged, raw)


def find_project_file(start: Path | None) -> Path | None:
    """The nearest benchmark.yaml from `start` upward, else in the working directory."""
    dirs: list[Path] = []
    if start is not None:
        start = start.resolve()
        dirs += [start, *start.parents]
    dirs.append(Path.cwd())
    for d in dirs:
        if (d / PROJECT_FILE).is_file():
            return d / PROJECT_FILE
    return None


def _read_project(start: Path | None) -> tuple[dict, Origins, Problems]:
    """benchmark.yaml in suite shape: `{"settings": {...}, "tuning": {...}, "trainer": {...}}`, its
    origins, and its problems (the sections are validated as a suite's would be)."""
    path = find_project_file(start)
    if path is None:
        return {}, {}, Problems(PROJECT_FILE)
    shown = show(path)
    raw = read_yaml(path)
    problems = Problems(shown)
    valid = list(ProjectConfig.model_fields)
    for key in raw:
        if key not in valid:
            hint = " (settings keys go at the top level of benchmark.yaml)" if key == "settings" else ""
            problems.add((key,), f"unknown key '{key}'.{did_you_mean(str(key), valid)} Expected one of: {', '.join(valid)}{hint}")  # fmt: skip
    settings = {k: v for k, v in raw.items() if k in Settings.model_fields}
    tree: dict = {"settings": settings} if settings else {}
    tree.update({k: raw[k] for k in ("tuning", "trainer") if k in raw})
    origins: Origins = {}
    _record(origins, tree, shown)
    return tree, origins, problems


def load_settings(start: Path | None = None) -> tuple[Settings, dict]:
    """Settings from the nearest benchmark.yaml (from `start` upward, then the working directory), and
    its raw `{"tuning": {...}, "trainer": {...}}` defaults (validated). Defaults when there is none."""
    tree, origins, problems = _read_project(start)
    problems.origins = origins
    settings = Settings()
    for key, model in (("settings", Settings), ("tuning", TuningSpec), ("trainer", TrainerSpec)):
        value, found = parse(model, tree.get(key, {}), (key,))
        problems.extend([((p[1:] if key == "settings" else p), m) for p, m in found])
        if key == "settings" and value is not None:
            settings = value
    problems.raise_if_any()
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
            raise SpecError(COMMAND_LINE, fmt_path(here), f"no such item in the suite (overriding {key})")
        if isinstance(part, str) and not isinstance(node, dict):
            raise SpecError(COMMAND_LINE, fmt_path(here[:-1]), f"is not a mapping; cannot set '{part}' in it")
        if depth == len(path) - 1:
            old = node[part] if isinstance(part, int) else node.get(part)
            # A mapping merges like an included file would; anything else replaces.
            node[part] = merge(old, value) if isinstance(old, dict) and isinstance(value, Mapping) else value
            break
        child = node[part] if isinstance(part, int) else node.get(part)
        if isinstance(child, str):  # a bare name (`- adamw`, `schedule: cosine`): make it a mapping
            child = {"name": child}
        elif not isinstance(child, dict | list):
            child = {}
        node[part] = child
        node = child
    _record(origins, {path[-1]: value}, COMMAND_LINE, path[:-1])


def read_suite(
    path: str | Path, overrides: Mapping[str, Any] | None = None
) -> tuple[dict, Origins, Problems]:
    """The merged tree of a suite (project file, includes, environment, overrides), where each key came
    from, and the problems found in benchmark.yaml. File-level problems (YAML, includes) raise."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(show(path), "", "no such suite file")
    tree, origins, project_problems = _read_project(path.parent)
    tree = merge(tree, _load_tree(path, (path.resolve(),), origins))
    # Shared stores for a fleet of workers are set once in the environment: it beats the files,
    # and the command line beats it.
    env = {f"settings.{key}": os.environ[var] for var, key in ENV_SETTINGS.items() if os.environ.get(var)}
    for key, value in {**env, **(overrides or {})}.items():
        _apply_override(tree, key, copy.deepcopy(value), origins)
    return tree, origins, project_problems


def check_suite(
    path: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    registries: Registries = REGISTRIES,
    imports: bool = True,
) -> Resolved:
    """Read, merge, validate and resolve a suite. Raises one SpecError listing every problem. With
    `imports=False` nothing a suite names by import path is imported (`bench validate`): the result
    then holds no suite if there are such names, and lists them."""
    path = Path(path)
    tree, origins, project_problems = read_suite(path, overrides)
    problems = Problems(show(path), origins)
    problems.found += project_problems.found
    return resolve(tree, path, problems, registries, overrides=FrozenMap(overrides or {}), imports=imports)


def load_suite(
    path: str | Path, overrides: Mapping[str, Any] | None = None, *, registries: Registries = REGISTRIES
) -> Suite:
    """The suite at `path`, with every name resolved (importing what it names by import path)."""
    suite = check_suite(path, overrides, registries=registries).suite
    assert suite is not None  # imports=True resolves every name or raises
    return suite
