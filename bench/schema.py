"""The suite format as typed, frozen models: one declaration gives validation, defaults and the editor
schema. Imports neither torch nor any registry, so `bench validate` answers in well under a second.

Two kinds of models live here:

- *sections that need no lookup* (`Settings`, `TuningSpec`, `TrainerSpec`, `LeaderboardSpec`): what
  the suite says is what downstream code reads, so they are used as they are;
- *items as written* (`TaskConfig`, `OptimizerConfig`, `ScheduleConfig`, `ParamConfig`): names and
  partial overrides that `bench.resolve` turns into `bench.spec` objects with registry entries.

`SuiteConfig` composes them; `suite_json_schema()` is what `bench schema` prints (shipped suites
point YAML-language-server editors at `docs/suite.schema.json`). Every model is frozen and rejects
unknown keys; values are never coerced (an int is accepted where a number is expected, nothing else),
mappings inside models are `FrozenMap`s and lists tuples, so a parsed suite is immutable all the way
down. Bounds are declared on the fields (`ge=1`), where both the validator and the editor schema read
them; `Hint(...)` adds what a bound means to its error message.

`parse(model, data, path)` validates one section and returns `(value, problems)`, each problem a
`(key path, message)` pair worded for people, e.g. `(("tuning", "trials"), "must be >= 1, got 0")`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import core_schema

from bench.registry import did_you_mean

KeyPath = tuple[str | int, ...]
Problem = tuple[KeyPath, str]

# One definition of each choice: Literal types for the models, tuples for everyone else.
Protocol = Literal["random", "qmc", "tpe", "cmaes", "grid", "sweep", "defaults"]
Pruner = Literal["none", "median", "hyperband"]
CheckMethod = Literal["test", "tolerance"]
Correction = Literal["holm", "bh", "none"]  # the names bench.stats.adjust takes
Device = Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"]
Precision = Literal[
    "64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
    "transformer-engine", "transformer-engine-float16",
]  # fmt: skip
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
PRUNERS: tuple[str, ...] = get_args(Pruner)
ADAPTIVE: tuple[str, ...] = ("tpe", "cmaes")  # protocols whose draws depend on earlier results

# Budgets a study can enqueue up front (each slot is a row in the Optuna storage).
MAX_TRIALS = 100_000
MAX_SEEDS = 1_000
MAX_POINTS = 1_000  # points of one grid axis or one sweep

# Suite names and optimizer labels become parts of study names (`suite.task.label`) and of file names.
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
LABEL_RULE = "a letter or digit, then letters, digits, '_' or '-'"


# ----------------------------------------------------------------------------------------------------
# Immutable containers
# ----------------------------------------------------------------------------------------------------


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable mapping; compares equal to a dict with the same items."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | None = None, /, **kwargs: Any):
        self._data = {**(data or {}), **kwargs}
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(sorted((k, _hashable(v)) for k, v in self._data.items())))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._data,))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            freeze,
            core_schema.dict_schema(keys_schema=core_schema.str_schema()),
            serialization=core_schema.plain_serializer_function_ser_schema(thaw),
        )


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list | set) else value


def freeze(value: Any) -> Any:
    """Mappings -> FrozenMap, lists -> tuples, all the way down."""
    if isinstance(value, Mapping):
        return FrozenMap({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of `freeze`, for JSON, YAML and functions that want plain data: dicts and lists."""
    if isinstance(value, BaseModel):
        return thaw(value.model_dump())
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------
# Field helpers
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hint:
    """What a field's bound means, added to its error: `must be >= 1 (1: no reruns of the best)`."""

    text: str


@dataclass(frozen=True)
class OrNull:
    """Null is a meaningful value of this field (no cap, no EMA): its bound errors say `or null`."""


def _param_value(value: Any) -> Any:
    if isinstance(value, int | float | str | bool):
        raise ValueError(
            f"expected a mapping like {{low: 1e-4, high: 1e-1, log: true}}, got {value!r} "
            "(a value held constant goes under `fixed:`)"
        )
    return value


def _named(value: Any) -> Any:
    """`- adamw` is short for `- {name: adamw}`; `schedule: cosine` for `schedule: {name: cosine}`."""
    return {"name": value} if isinstance(value, str) else value


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _precision(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # `precision: 32`


class Model(BaseModel):
    """Frozen, unknown keys rejected, no coercion but int -> float."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# ----------------------------------------------------------------------------------------------------
# Sections used as they are
# ----------------------------------------------------------------------------------------------------


class Settings(Model):
    """Where things live. Project defaults in benchmark.yaml (top level), then the suite's `settings:`,
    then BENCH_* environment variables, then command-line flags."""

    tracking_uri: str = Field(
        "sqlite:///mlflow.db", description="MLflow tracking URI (a sqlite file, a server, PostgreSQL)"
    )
    storage: str = Field(
        "sqlite:///.bench/optuna.db",
        description="Optuna storage URL, or a path ending in .log (journal file)",
    )
    data_root: str = Field("data", description="where tasks look for local datasets")
    leaderboard_dir: str = Field("results", description="where a run writes its leaderboard files (leaderboards/ holds the committed reference results)")  # fmt: skip
    device: Device = Field(
        "auto", description="default Lightning accelerator when the suite's trainer says auto"
    )
    heartbeat_s: float = Field(
        10.0, gt=0, description="Optuna heartbeat of running trials; a dead trial is retried after 3x this"
    )
    standins: bool = Field(False, description="data_root holds offline stand-ins, written when missing (bench standins)")  # fmt: skip


class SweepSpec(Model):
    """The `sweep` protocol (Zhao et al. 2024): a learning-rate grid, extended one point at a time while
    its best point sits at an edge, then, at the best learning rate, a 1-D grid of each other
    hyperparameter (and of the warmup, when asked) with the rest held at their defaults. Every point is
    one trial; every optimizer gets the same points per axis (see docs/robustness.md)."""

    lr_points: Annotated[int, Hint("an optimum needs a point on each side")] = Field(
        7, ge=3, le=MAX_POINTS,
        description="learning rates of the first grid, centred on the geometric middle of each optimizer's lr range",
    )  # fmt: skip
    per_decade: int = Field(
        2, ge=1, le=24, description="lr grid spacing, in points per decade (2: 1e-3, 3.2e-3, 1e-2, ...)"
    )
    extend: Annotated[int, Hint("0: never extend")] = Field(
        2, ge=0, le=MAX_POINTS,
        description="at most this many more learning rates, one at a time, while the best sits at an edge of those swept",
    )  # fmt: skip
    params: Annotated[tuple[str, ...] | None, BeforeValidator(_tuple)] = Field(
        None,
        description="hyperparameters swept at the best lr (default: every other one of each optimizer's space; [] for none)",
    )  # fmt: skip
    points: int = Field(
        4, ge=2, le=MAX_POINTS,
        description="values per 1-D sweep of another hyperparameter: on a log axis around its default at per_decade spacing (those in its range), on a linear one evenly over its range; every choice of a categorical",
    )  # fmt: skip
    warmup: Annotated[tuple[Annotated[float, Field(ge=0)], ...], BeforeValidator(_tuple)] = Field(
        (),
        description="warmups swept at the best lr (fractions of the steps if < 1, else steps); [] for none",
    )


class TuningSpec(Model):
    """How each study chooses its hyperparameters, with the budget every optimizer gets."""

    protocol: Protocol = Field(
        "random", description="how configurations are chosen (see README: Tuning protocols)"
    )
    trials: int = Field(8, ge=1, le=MAX_TRIALS, description="configurations tried per study (its slots; a sweep's points are set by `sweep`)")  # fmt: skip
    seeds: Annotated[int, Hint("1: no reruns of the best")] = Field(
        1, ge=1, le=MAX_SEEDS, description="seeds the best configuration runs on, counting the tuning run"
    )
    sampler_seed: int = Field(0, description="same seed, same configurations")
    first_seed: int = Field(0, ge=0, description="seed of the tuning trials; the reruns of the best take the next seeds - 1 (another value reruns the suite on fresh seeds)")  # fmt: skip
    pruner: Pruner = Field("none", description="stops unpromising tuning trials early")
    trial_time_budget_s: Annotated[float | None, OrNull()] = Field(
        None, gt=0, description="wall-clock cap per trial (outcome timeout)"
    )
    study_time_budget_s: Annotated[float | None, OrNull()] = Field(
        None, gt=0, description="no new trial once a study's finished trials trained this long"
    )
    divergence_factor: float = Field(3.0, gt=1, description="train loss above this multiple of its first value is divergence")  # fmt: skip
    grid_points: int = Field(4, ge=2, le=MAX_POINTS, description="grid protocol: points per continuous axis (log-spaced on log axes)")  # fmt: skip
    sweep: SweepSpec = Field(default_factory=SweepSpec, description="sweep protocol: its grids (see docs/robustness.md)")  # fmt: skip


class TrainerSpec(Model):
    """Passed to Lightning's Trainer."""

    accelerator: Device = "auto"
    devices: int | str = Field(1, description="devices per node: a count, -1 for all, or 'auto'")
    num_nodes: int = Field(1, ge=1)
    strategy: str = Field("auto", description="auto, ddp, fsdp, ...")
    precision: Annotated[Precision, BeforeValidator(_precision, json_schema_input_type=Precision | Literal[16, 32, 64])] = "32-true"  # fmt: skip
    accumulate_grad_batches: int = Field(1, ge=1, description="micro-batches per optimizer step")
    compile: bool = Field(False, description="torch.compile the model")


class LeaderboardSpec(Model):
    """What the leaderboard computes."""

    ks: Annotated[tuple[Annotated[int, Field(ge=1)], ...], BeforeValidator(_tuple)] = Field(
        (1, 4), min_length=1, description="expected best-of-k columns"
    )
    basin_eps: float = Field(0.01, gt=0, description="tolerance of the learning-rate basin: relative to the best value, or absolute with basin_absolute")  # fmt: skip
    basin_absolute: bool = Field(False, description="basin_eps is in the metric's units instead of relative")
    sensitivity_decades: float = Field(1.0, gt=0, description="width of the window, centred on each optimizer's optimum, over which sensitivities are averaged (log axes)")  # fmt: skip
    alpha: float = Field(0.95, gt=0, le=1, description="alpha-tunability: the budget fraction at which expected best-of-k gets within 1 - alpha (relative) of the task's best")  # fmt: skip
    importance: Literal["fanova", "ped_anova", "none"] = Field("fanova", description="hyperparameter importance of random/qmc/tpe/cmaes studies, by Optuna's evaluator")  # fmt: skip
    bootstrap: Annotated[int, Hint("0: no bands")] = Field(200, ge=0, le=100_000, description="bootstrap resamples for the bands of expected best-of-k")  # fmt: skip
    reference: str | None = Field(None, description="optimizer label the fixed-reference profile divides by (default: adamw, else the first)")  # fmt: skip
    r_max: float = Field(4.0, gt=1, description="performance profiles' largest ratio")
    wall_clock: bool = Field(False, description="show seconds to target and the seconds profile: only for trials that each ran alone on a quiet, dedicated machine (wall-clock time measures the machine's load too)")  # fmt: skip


class CheckSpec(Model):
    """How `bench check` gates a run against a baseline leaderboard and a reference optimizer (the
    statistics are bench/stats.py's; docs/ci.md explains every key). `bench.resolve` checks the labels
    and task names it mentions."""

    method: CheckMethod = Field("test", description="test: one-sided significance tests with a margin; tolerance: the older rule max(rel_tol x |baseline|, seed_k x pooled seed std, abs_tol)")  # fmt: skip
    alpha: float = Field(0.05, gt=0, le=0.5, description="false-alarm rate of the whole gate on unchanged code (family-wise, see correction)")  # fmt: skip
    correction: Correction = Field("holm", description="for testing many (task, optimizer) pairs: holm (family-wise), bh (false discovery rate) or none")  # fmt: skip
    power: float = Field(0.8, gt=0, lt=1, description="power at which the smallest detectable effect is reported")  # fmt: skip
    rel_tol: float = Field(0.02, ge=0, description="margin: a change smaller than rel_tol x |baseline| is never a regression")  # fmt: skip
    abs_tol: float = Field(0.0, ge=0, description="margin in the metric's units (the larger margin applies)")
    seed_k: float = Field(2.0, ge=0, description="method tolerance only: seed stds allowed")
    noise_floor: Annotated[dict[str, Annotated[float, Field(ge=0)]], AfterValidator(lambda v: freeze(v)), PlainSerializer(lambda v: thaw(v))] = Field(default_factory=FrozenMap, description="task -> smallest std of one run's metric the tests assume (modded-nanogpt pins its run-to-run sigma)")  # fmt: skip
    step_time_tol: Annotated[float | None, OrNull()] = Field(0.25, gt=0, description="fail when the step-time ratio to the reference grows by more than this fraction; null: not gated")  # fmt: skip
    update_time_tol: Annotated[float | None, OrNull()] = Field(None, gt=0, description="the same for the optimizer update's time alone; null: not gated")  # fmt: skip
    memory_tol: Annotated[float | None, OrNull()] = Field(0.05, ge=0, description="fail when the optimizer-state bytes ratio to the reference grows by more than this fraction; null: not gated")  # fmt: skip
    beat: str | None = Field(None, description="an optimizer label the others must significantly beat on every task, in the same run")  # fmt: skip
    beat_optimizers: Annotated[tuple[str, ...], BeforeValidator(_tuple)] = Field((), description="the labels that must beat it (default: every other optimizer)")  # fmt: skip
    beat_by: float = Field(0.0, ge=0, description="the improvement required, as a fraction of the reference's |mean|")  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# Items as written, resolved against the registries by bench.resolve
# ----------------------------------------------------------------------------------------------------


class ScheduleConfig(Model):
    """Learning-rate schedule; `warmup` and `cooldown` are fractions of the trial's steps when < 1, else
    step counts. An optimizer's `schedule:` is merged key by key over the suite's."""

    name: str = Field("cosine", description="constant, linear, cosine, wsd, or a plugin's")
    warmup: Annotated[float, Hint("a fraction of steps if < 1, else steps")] = Field(0.0, ge=0)
    cooldown: Annotated[float, Hint("a fraction of steps if < 1, else steps")] = Field(0.2, ge=0, description="wsd only: the final decay")  # fmt: skip
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="the lr the decay ends at, relative to the peak")


Schedule = Annotated[ScheduleConfig, BeforeValidator(_named, json_schema_input_type=str | ScheduleConfig)]


class ParamConfig(Model):
    """One searched hyperparameter: `{low, high, log, type}` or `{choices}`. Keys not given are taken
    from the optimizer's default range for it (bench.space checks the merged range)."""

    low: float | None = None
    high: float | None = None
    log: bool | None = None
    type: Literal["float", "int"] | None = None
    choices: Annotated[tuple[Any, ...] | None, BeforeValidator(_tuple)] = Field(None, min_length=1)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> Any:
        out = handler(schema)
        out["description"] = (
            "{low: 1e-4, high: 1e-1, log: true}, {low: 1, high: 8, type: int} or {choices: [...]}"
        )
        return out


class TaskConfig(Model):
    """A task as the suite uses it: a registry name (or `package.module:factory`) and overrides."""

    name: str = Field(description="a task of `bench ls tasks`, or a plugin's `package.module:factory`")
    version: int | None = Field(None, description="pin the task's version; a mismatch is an error")
    steps: int | None = Field(None, ge=1, description="optimizer steps per trial (default: the task's)")
    batch_size: int | None = Field(None, ge=1, description="global batch of one forward/backward")
    eval_every: Annotated[int | None, Hint("0: only at the end")] = Field(
        None, ge=0, description="validate every N steps"
    )
    target: float | None = Field(None, description="metric value that counts as reaching the target")
    metric: str | None = Field(None, description="the leaderboard metric (default: the task's)")
    failure_value: float | None = Field(None, description="what a failed trial costs in the metric (default: the task's declared value at chance or at initialization)")  # fmt: skip
    options: FrozenMap = Field(default_factory=FrozenMap, description="task options (`bench ls tasks`)")  # fmt: skip


class OptimizerConfig(Model):
    """An optimizer as the suite uses it: a registry name (or `package.module:Name`) and overrides."""

    name: str = Field(description="an optimizer of `bench ls optimizers`, or `package.module:Name`")
    label: str | None = Field(None, description="unique name in the suite (default: the name)")
    fixed: FrozenMap = Field(default_factory=FrozenMap, description="hyperparameters held constant")
    search_space: dict[str, Annotated[ParamConfig | None, BeforeValidator(_param_value)]] | None = Field(None, description="replaces the default space, parameter by parameter")  # fmt: skip
    schedule: Schedule | None = None
    decay_filter: bool = Field(True, description="no weight decay on biases, norms and embeddings")
    ema: Annotated[float | None, Field(gt=0, lt=1), OrNull()] = Field(None, description="also evaluate an EMA of the weights with this decay")  # fmt: skip
    batch_size: int | None = Field(None, ge=1, description="transfer the tuned lr to this batch size")


Task = Annotated[TaskConfig, BeforeValidator(_named, json_schema_input_type=str | TaskConfig)]
Optimizer = Annotated[OptimizerConfig, BeforeValidator(_named, json_schema_input_type=str | OptimizerConfig)]


class SuiteConfig(Model):
    """A suite file. `tasks` and `optimizers` are required of the suite once its includes are merged."""

    include: str | tuple[str, ...] | None = Field(
        None, description="files merged under this one; this file wins"
    )
    name: str | None = Field(None, description="names the studies and runs (default: the file's name)")
    description: str = ""
    settings: Settings = Field(default_factory=Settings)
    tasks: tuple[Task, ...] = Field((), min_length=1)
    optimizers: tuple[Optimizer, ...] = Field((), min_length=1)
    schedule: Schedule = Field(default_factory=ScheduleConfig)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    leaderboard: LeaderboardSpec = Field(default_factory=LeaderboardSpec)
    check: CheckSpec = Field(default_factory=CheckSpec)


class ProjectConfig(Settings):
    """benchmark.yaml: the settings at the top level, plus default `tuning:` and `trainer:` keys."""

    tuning: FrozenMap = Field(default_factory=FrozenMap)
    trainer: FrozenMap = Field(default_factory=FrozenMap)


def suite_json_schema() -> dict[str, Any]:
    """The JSON Schema of a suite file (what `bench schema` prints)."""
    schema = SuiteConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "bench suite"
    return schema


# ----------------------------------------------------------------------------------------------------
# Validation with messages for people
# ----------------------------------------------------------------------------------------------------


def parse(tp: Any, data: Any, path: KeyPath = ()) -> tuple[Any, list[Problem]]:
    """Validate `data` as `tp` (a model or a type); (value or None, problems)."""
    try:
        return TypeAdapter(tp).validate_python(data), []
    except ValidationError as exc:
        return None, problems(exc, tp, data, path)


def problems(exc: ValidationError, tp: Any, data: Any, path: KeyPath = ()) -> list[Problem]:
    """A pydantic error as `(key path, message)` pairs worded as bench words them; for a union, the
    member the value was meant as."""
    out: dict[KeyPath, str] = {}
    for err in exc.errors(include_url=False):
        loc = _clean_loc(err["loc"])
        if (*path, *loc) in out:
            continue  # one message per key (a union reports each of its members)
        field, annotation = _field_at(tp, loc)
        parent = _model_at(tp, loc[:-1]) if err["type"] == "extra_forbidden" else None
        out[(*path, *loc)] = _message(err, field, annotation, _value_at(data, loc), parent)
    return list(out.items())


def _clean_loc(loc: tuple[Any, ...]) -> KeyPath:
    """Drop pydantic's union-member and validator tags (`'int'`, `'function-before[...]'`)."""
    names = {"int", "str", "float", "bool", "none", "tuple", "list", "dict", "ScheduleConfig", "ParamConfig"}
    return tuple(p for p in loc if isinstance(p, int) or not (p in names or "[" in p or p.startswith("lax-")))


def _value_at(data: Any, loc: KeyPath) -> Any:
    for part in loc:
        if isinstance(data, str) and part == "name":
            return data
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


_MISSING = object()


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """(type without Annotated/Optional wrappers, the Annotated metadata found on the way)."""
    meta: list[Any] = []
    while True:
        if get_origin(tp) is Annotated:
            meta += list(tp.__metadata__)
            tp = get_args(tp)[0]
        elif _is_union(tp) and type(None) in get_args(tp):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp, meta
            tp = rest[0]
        else:
            return tp, meta


def _is_union(tp: Any) -> bool:
    import types

    return get_origin(tp) is Union or isinstance(tp, types.UnionType)


def _field_at(tp: Any, loc: KeyPath) -> tuple[FieldInfo | None, Any]:
    """The FieldInfo and annotation of the field at `loc` below type `tp` (None when not a field)."""
    field: FieldInfo | None = None
    annotation = tp
    for part in loc:
        inner, _ = _unwrap(annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and isinstance(part, str):
            field = inner.model_fields.get(part)
            if field is None:
                return None, None
            annotation = (
                Annotated.__class_getitem__((field.annotation, *field.metadata))
                if field.metadata
                else field.annotation
            )  # noqa: E501
        elif get_origin(inner) in (tuple, list) and isinstance(part, int):
            annotation = get_args(inner)[0]
            field = None
        elif get_origin(inner) is dict and isinstance(part, str):
            annotation = get_args(inner)[1]
            field = None
        else:
            return field, annotation
    return field, annotation


def _constraints(field: FieldInfo | None, annotation: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    meta = list(field.metadata) if field is not None else []
    meta += _unwrap(annotation)[1]
    for m in meta:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(m, key, None) is not None:
                found[key] = getattr(m, key)
    return found


def _describe(annotation: Any) -> str:
    """`int | None` -> 'an integer or null'."""
    inner, _ = _unwrap(annotation)
    nullable = _is_union(_strip_annotated(annotation)) and type(None) in get_args(
        _strip_annotated(annotation)
    )
    if _is_union(inner):
        text = " or ".join(_describe(a) for a in get_args(inner) if a is not type(None))
    elif get_origin(inner) in (tuple, list):
        item = _describe(get_args(inner)[0]).removeprefix("an ").removeprefix("a ")
        text = f"a list of {item}s"
    elif (
        isinstance(inner, type)
        and issubclass(inner, BaseModel)
        or inner is FrozenMap
        or get_origin(inner) is dict
    ):
        text = "a mapping"
    elif get_origin(inner) is Literal:
        text = "one of " + ", ".join(map(str, get_args(inner)))
    else:
        text = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
            inner, str(inner)
        )
    return f"{text} or null" if nullable else text


def _strip_annotated(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _fmt(value: Any, annotation: Any) -> str:
    inner, _ = _unwrap(annotation)
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return repr(value)


def _interval(c: dict[str, Any]) -> str:
    lo = ("[", c["ge"]) if "ge" in c else ("(", c["gt"]) if "gt" in c else None
    hi = ("]", c["le"]) if "le" in c else (")", c["lt"]) if "lt" in c else None
    if lo and hi:
        return f"must be in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
    if lo:
        return f"must be {'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
    return f"must be {'<=' if hi[0] == ']' else '<'} {hi[1]:g}"  # type: ignore[index]


def _model_at(tp: Any, loc: KeyPath) -> type[BaseModel] | None:
    """The model class whose fields sit at `loc` below `tp`."""
    _, annotation = _field_at(tp, loc) if loc else (None, tp)
    inner, _ = _unwrap(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _message(
    err: Any, field: FieldInfo | None, annotation: Any, value: Any, parent: type[BaseModel] | None = None
) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    shown = _fmt(value if value is not _MISSING else err.get("input"), annotation)
    meta = _unwrap(annotation)[1] + (list(field.metadata) if field else [])
    hints = list(dict.fromkeys(m.text for m in meta if isinstance(m, Hint)))
    if kind == "extra_forbidden":
        key = err["loc"][-1]
        valid = list(parent.model_fields) if parent is not None else []
        return f"unknown key '{key}'.{did_you_mean(str(key), valid)} Expected one of: {', '.join(valid)}"
    if kind == "missing":
        return f"missing '{err['loc'][-1]}'"
    if kind == "literal_error":
        choices = [str(c) for c in get_args(_unwrap(annotation)[0])]
        what = str(err["loc"][-1]) if err["loc"] and isinstance(err["loc"][-1], str) else "value"
        return (
            f"unknown {what} {shown}.{did_you_mean(str(value), choices)} Expected one of: {', '.join(choices)}"
        ).replace(f"unknown {what} {shown}", f"unknown {what} '{value}'")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        c = _constraints(field, annotation) or {
            {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}[
                kind
            ]: next(iter(ctx.values()))
        }
        hi = c.get("le", c.get("lt"))
        if hi is None or hi > 1:  # a budget's cap: name the bound that was crossed; a fraction: its range
            keep = ("ge", "gt") if kind.startswith("greater") else ("le", "lt")
            c = {k: v for k, v in c.items() if k in keep}
        unit = " seconds" if field is not None and _field_name(err).endswith("_s") else ""
        hint = f" ({'; '.join(hints)})" if hints else ""
        nullable = " or null" if any(isinstance(m, OrNull) for m in meta) else ""
        return f"{_interval(c)}{unit}{hint}{nullable}, got {shown}"
    if kind in ("too_short",) and ctx.get("min_length") is not None:
        return f"expected at least {ctx['min_length']} item(s), got {shown}"
    if kind == "finite_number":
        return f"expected a finite number, got {shown}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"])).removeprefix("Value error, ")
    if (
        kind.endswith("_type")
        or kind.endswith("_parsing")
        or kind in ("int_from_float", "model_type", "dict_type")
    ):
        return f"expected {_describe(annotation)}, got {shown}"
    return f"{err['msg']}, got {shown}"


def _field_name(err: Any) -> str:
    names = [p for p in err["loc"] if isinstance(p, str)]
    return names[-1] if names else ""


def check_finite(value: Any, path: KeyPath = ()) -> list[Problem]:
    """Problems for every NaN or infinite number in plain data (YAML reads `.nan` and `.inf`)."""
    out: list[Problem] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            out += check_finite(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            out += check_finite(v, (*path, i))
    elif isinstance(value, float) and not math.isfinite(value):
        out.append((path, f"expected a finite number, got {value}"))
    return out
