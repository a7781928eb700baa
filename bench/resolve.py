"""Resolve a merged suite tree against the registries: names -> entries, partial overrides -> complete
specs, every problem collected.

`resolve(tree, path, problems, registries)` is called by `bench.loader.load_suite`; the registries are
an argument (tests pass their own), nothing here fills or reads a global one. The tree is first checked
section by section against the format (`bench.schema`), then the domain rules below apply to whatever
parsed, so one run reports the mistakes of every section and every item.

Rules, so that downstream code need not know them:
- A task's `options:` are validated by the entry's options schema and completed with its defaults.
  A `metric:` other than the entry's has no target unless the suite gives one.
- An optimizer's `search_space:` replaces the entry's default space; each parameter given is merged
  key by key over the entry's default for it (`lr: {high: 0.1}` keeps the default low and log), and
  `weight_decay: {}` keeps a default parameter as it is.
- A hyperparameter under `fixed:` is removed from the searched space (`betas` covers `beta1`,
  `one_minus_beta1`, ...); naming it in both `fixed:` and `search_space:` is an error.
- An optimizer's `schedule:` is merged over the suite's `schedule:`; optimizers flagged `schedule_free`
  or `no_schedule` get a constant schedule unless their item names one.
- `leaderboard.reference` defaults to `adamw` when the suite has it, else to the first optimizer.
- `check:` names optimizer labels (`beat`, `beat_optimizers`) and tasks (`noise_floor`) of this suite.
- What needs no launch to check is checked here: FSDP needs optimizers flagged `fsdp`, each task's
  global batch must split over `trainer.devices x trainer.num_nodes` processes, and optimizers flagged
  `closure` (SAM) can't accumulate gradients.
- Protocol `sweep` needs a log-scale `lr` in every optimizer's search space (its first stage sweeps
  it); each name of `tuning.sweep.params` must be searched by at least one optimizer (each optimizer
  sweeps the ones it has), and `lr` is not one of them.
- A task's failure cost (what a failed trial counts as in every score) is the suite's
  `failure_value`, else what the task declares for its options and metric (`TaskEntry.failure`).
- A task's `scan:` (see `bench.scans`) needs at least one axis, `steps` or `tokens` but not both,
  `tokens` only for tasks that count them, no value twice; every `options` value is checked by the
  entry's options schema, and every point's batch must split over the processes.
- `cooldown_shape` other than linear and `horizons` need the `wsd` schedule; the horizons of every
  (task or point, optimizer) must make branches of one run (`bench.horizons.plan_horizons`: distinct
  step counts, each cooldown starting after the warmup).

Names written as import paths (`package.module:Name`, a user's task factory or optimizer) are imported
only with `imports=True` (`bench run`, `bench plan`); `bench validate` only checks that the module
exists, and runs no code a suite names (see `unresolved` in the result).
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.horizons import HorizonError, plan_horizons
from bench.optimizers.schedules import needs_schedule
from bench.registry import UnknownNameError, did_you_mean, entries_of, load_import_path
from bench.scans import points
from bench.schema import (
    LABEL,
    LABEL_RULE,
    CheckSpec,
    FrozenMap,
    KeyPath,
    LeaderboardSpec,
    Optimizer,
    ScanConfig,
    Schedule,
    ScheduleConfig,
    Settings,
    SuiteConfig,
    Task,
    TaskConfig,
    TrainerSpec,
    TuningSpec,
    check_finite,
    freeze,
    parse,
)
from bench.space import Float, Param, SpaceError, parse_param
from bench.spec import OptimizerSpec, Problems, ScanSpec, ScheduleSpec, Suite, TaskSpec

if TYPE_CHECKING:
    from bench.catalog import Registries
    from bench.optimizers.base import OptimizerEntry
    from bench.tasks.base import TaskEntry

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
FSDP = re.compile(r"fsdp", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What `resolve` returns: the suite, or (with `imports=False`) None when some entries are named
    by import path and were left unimported; `unresolved` lists those paths."""

    suite: Suite | None
    unresolved: tuple[str, ...] = ()


def is_import_path(name: str) -> bool:
    return ":" in name


def locate(path: str) -> str | None:
    """Why the module of `package.module:Name` can't be found (None when it can), without importing
    anything: parents are searched, not executed."""
    module = path.partition(":")[0]
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name is found, not imported
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                break
            spec = importlib.machinery.PathFinder.find_spec(
                ".".join(parts[: i + 1]), spec.submodule_search_locations
            )
    except (ImportError, ValueError) as e:
        return f"cannot look for module '{module}': {e}"
    return None if spec is not None else f"no module named '{module}' on the Python path"


def processes(devices: int | str, num_nodes: int) -> int | None:
    """Processes a trainer asks for (devices x nodes), None when Lightning decides (`auto`, `-1`)."""
    if isinstance(devices, int) and devices >= 1:
        return devices * num_nodes
    if isinstance(devices, str) and devices.isdigit() and int(devices) >= 1:
        return int(devices) * num_nodes
    if isinstance(devices, str) and re.fullmatch(r"\d+(,\d+)*,?", devices):  # "0,1": device indices
        return len([d for d in devices.split(",") if d]) * num_nodes
    return None


def uses_fsdp(strategy: str) -> bool:
    return bool(FSDP.search(strategy))


class _Resolver:
    def __init__(self, tree: Mapping[str, Any], problems: Problems, registries: Registries, imports: bool):
        self.tree, self.problems, self.reg, self.imports = tree, problems, registries, imports
        self.unresolved: list[str] = []

    # -- sections -------------------------------------------------------------------------------
    def section(self, key: str, tp: Any, default: Any) -> Any:
        if self.tree.get(key) is None:
            return default
        value, found = parse(tp, self.tree[key], (key,))
        self.problems.extend(found)
        return default if value is None else value

    def items(self, key: str, tp: Any, example: str) -> list[tuple[int, Any, bool]]:
        """(index, parsed item, written as a bare name) for each parsable item of a list section."""
        if key not in self.tree:
            self.problems.add((key,), f"missing; expected a list like {example}")
            return []
        raw = self.tree[key]
        if not isinstance(raw, list) or not raw:
            self.problems.add((key,), f"expected a non-empty list like {example}, got {raw!r}")
            return []
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, str | Mapping):
                what = key[:-1]
                self.problems.add((key, i), f"expected {'an' if what[0] in 'aeiou' else 'a'} {what} name or a mapping with 'name', got {item!r}")  # fmt: skip
                continue
            value, found = parse(tp, item, (key, i))
            self.problems.extend(found)
            if value is not None:
                out.append((i, value, isinstance(item, str)))
        return out

    # -- tasks ----------------------------------------------------------------------------------
    def task_entry(self, name: str, where: KeyPath) -> TaskEntry | None:
        if is_import_path(name):
            return self.imported(name, where, "task", lambda obj: entries_of(obj, "task", name))
        try:
            return self.reg.tasks.get(name)
        except UnknownNameError as e:
            self.problems.add(where, str(e))
            return None

    def task(self, i: int, cfg: TaskConfig, bare: bool) -> TaskSpec | None:
        p: KeyPath = ("tasks", i)
        entry = self.task_entry(cfg.name, p if bare else (*p, "name"))
        if entry is None:
            return None
        ok = self.problems.require(
            cfg.version is None or cfg.version == entry.version,
            (*p, "version"),
            f"the suite pins version {cfg.version} but task '{entry.name}' is at version {entry.version} "
            "(results of another version are not comparable; update the pin)",
        )
        metric = cfg.metric or entry.metric
        metrics = entry.all_metrics
        if metric not in metrics:
            self.problems.add(
                (*p, "metric"),
                f"unknown metric '{metric}' for task '{entry.name}'.{did_you_mean(metric, metrics)} "
                f"Expected one of: {', '.join(metrics)}",
            )
            ok = False
        options = self.task_options(entry, cfg.options, (*p, "options"))
        if not ok or options is None:
            return None
        scan = self.scan(entry, cfg.scan, options, (*p, "scan")) if cfg.scan is not None else None
        if cfg.scan is not None and scan is None:
            return None
        # The entry's target is for its own metric; another metric has none unless the suite gives one.
        target = cfg.target if cfg.target is not None else (entry.target if metric == entry.metric else None)
        failure_value, failure_why = failure_cost(entry, options, metric, cfg.failure_value)
        return TaskSpec(
            name=entry.name,
            entry=entry,
            steps=cfg.steps if cfg.steps is not None else entry.steps,
            batch_size=cfg.batch_size if cfg.batch_size is not None else entry.batch_size,
            options=options,
            metric=metric,
            mode=metrics[metric],
            target=target,
            eval_every=cfg.eval_every if cfg.eval_every is not None else entry.eval_every,
            failure_value=failure_value,
            failure_why=failure_why,
            scan=scan,
        )

    def scan(self, entry: TaskEntry, cfg: ScanConfig, options: FrozenMap, where: KeyPath) -> ScanSpec | None:
        """The scan's axes in product order (batch_size, options as written, steps or tokens)."""
        ok = True
        axes: list[tuple[str, tuple[Any, ...]]] = []
        if cfg.batch_size is not None:
            axes.append(("batch_size", cfg.batch_size))
        known = list(entry.options.model_fields)
        for key, values in cfg.options.items():
            if key not in known:
                self.problems.add((*where, "options", key), f"unknown option '{key}' for task '{entry.name}'."
                                  f"{did_you_mean(key, known)} Options: {', '.join(known) or '(none)'}")  # fmt: skip
                ok = False
                continue
            if not isinstance(values, tuple) or not values:
                self.problems.add(
                    (*where, "options", key), f"expected a non-empty list of values, got {values!r}"
                )
                ok = False
                continue
            for j, value in enumerate(values):
                _, found = parse(entry.options, {**options, key: value})
                for path, message in found:
                    self.problems.add((*where, "options", key, j, *path[1:]), message)
                    ok = False
            axes.append((f"options.{key}", values))
        if cfg.steps is not None and cfg.tokens is not None:
            self.problems.add((*where, "tokens"), "give the training lengths as steps or as tokens, not both")
            ok = False
        if cfg.tokens is not None and entry.tokens_per_step is None:
            self.problems.add(
                (*where, "tokens"), f"task '{entry.name}' does not count tokens; scan `steps` instead"
            )
            ok = False
        if cfg.steps is not None:
            axes.append(("steps", cfg.steps))
        if cfg.tokens is not None:
            axes.append(("tokens", cfg.tokens))
        if not axes and ok:
            self.problems.add(where, "expected at least one axis: batch_size, options, steps or tokens")
            ok = False
        for axis, values in axes:
            repeated = sorted({repr(v) for v in values if values.count(v) > 1})
            if repeated:
                key = (*where, *axis.split(".", 1))
                self.problems.add(key, f"{', '.join(repeated)} given twice: each value is one point")
                ok = False
        return ScanSpec(axes=tuple(axes), lr=cfg.lr) if ok else None

    def task_options(self, entry: TaskEntry, given: Mapping[str, Any], where: KeyPath) -> FrozenMap | None:
        known = list(entry.options.model_fields)
        found = []
        for key in given:
            if key not in known:
                found.append(((*where, key), f"unknown option '{key}' for task '{entry.name}'."
                              f"{did_you_mean(str(key), known)} Options: {', '.join(known) or '(none)'}"))  # fmt: skip
        checked = {k: v for k, v in given.items() if k in known}
        value, problems = parse(entry.options, dict(checked), where)
        for path, message in problems:
            default = entry.options.model_fields[path[len(where)]].default if len(path) > len(where) else None
            if message.startswith("expected ") and default is not None and len(path) == len(where) + 1:
                message = message.replace(", got", f" (like the default {default!r}), got", 1)
            found.append((path, message))
        self.problems.extend(found)
        return freeze(value.model_dump()) if value is not None and not found else None

    # -- optimizers -----------------------------------------------------------------------------
    def optimizer_entry(self, name: str, where: KeyPath) -> OptimizerEntry | None:
        if is_import_path(name):
            if not IMPORT_PATH.match(name):
                self.problems.add(where, f"expected a user optimizer as 'package.module:Name', got {name!r}")
                return None

            def entry(obj: Any) -> Any:
                from bench.optimizers.custom import entry_from_object  # torch: only suites that use one

                found = entry_from_object(obj, name)
                # The import path is the optimizer's identity (provenance, fingerprints, `resolved`).
                return found if found.name == name else dataclasses.replace(found, name=name)

            return self.imported(name, where, "user optimizer", entry)
        try:
            return self.reg.optimizers.get(name)
        except UnknownNameError as e:
            self.problems.add(where, str(e))
        except ImportError as e:  # an optional library behind a plugin entry
            self.problems.add(where, f"optimizer '{name}' is unavailable: {e}")
        return None

    def imported(self, path: str, where: KeyPath, what: str, make: Any) -> Any:
        if not IMPORT_PATH.match(path):
            self.problems.add(where, f"expected a {what} as 'package.module:Name', got {path!r}")
            return None
        missing = locate(path)
        if missing:
            self.problems.add(where, f"cannot use {what} '{path}': {missing}")
            return None
        if not self.imports:
            self.unresolved.append(path)
            return None
        try:
            obj = load_import_path(path, what)
        except (ImportError, AttributeError, ValueError) as e:  # the message names the path
            self.problems.add(where, f"cannot use {e}")
            return None
        try:
            found = make(obj)
        except Exception as e:  # the user's code: whatever it raises is the user's message
            self.problems.add(where, f"cannot use {what} '{path}': {e}")
            return None
        return found[0] if isinstance(found, list) else found

    def optimizer(
        self, i: int, cfg: Any, bare: bool, suite_schedule: Mapping[str, Any]
    ) -> OptimizerSpec | None:
        p: KeyPath = ("optimizers", i)
        entry = self.optimizer_entry(cfg.name, p if bare else (*p, "name"))
        label = label_of(cfg)
        label_ok = self.problems.require(
            bool(LABEL.match(label)), (*p, "label"), f"expected {LABEL_RULE} (it becomes part of study names), got {label!r}"
        )  # fmt: skip
        if entry is None:
            return None
        user = is_import_path(cfg.name)
        valid = None if user else hparam_names(entry)
        ok = label_ok
        for section, keys in (("fixed", list(cfg.fixed)), ("search_space", list(cfg.search_space or {}))):
            for key in keys:
                if valid is not None and key.removeprefix("one_minus_") not in valid:
                    self.problems.add(
                        (*p, section, key),
                        f"unknown hyperparameter '{key}' for optimizer '{entry.name}'."
                        f"{did_you_mean(key, valid)} Known: {', '.join(valid)}",
                    )
                    ok = False
        space = self.search_space(entry, cfg, p)
        schedule = self.schedule(entry, cfg, suite_schedule, p)
        if not ok or space is None or schedule is None:
            return None
        return OptimizerSpec(
            label=label,
            entry=entry,
            search_space=space,
            fixed=cfg.fixed,
            schedule=schedule,
            decay_filter=cfg.decay_filter,
            ema=cfg.ema,
            batch_size=cfg.batch_size,
        )

    def search_space(self, entry: OptimizerEntry, cfg: Any, p: KeyPath) -> FrozenMap | None:
        fixed = list(cfg.fixed)
        if cfg.search_space is None:
            return FrozenMap(
                {k: v for k, v in entry.search_space.items() if not any(_covers(f, k) for f in fixed)}
            )
        space: dict[str, Param] = {}
        ok = True
        for key, given in cfg.search_space.items():
            for f in fixed:
                if _covers(f, key):
                    self.problems.add(
                        (*p, "fixed", f),
                        f"'{f}' is also in search_space ('{key}'); a hyperparameter is either fixed or searched",
                    )
                    ok = False
            raw = given.model_dump(exclude_unset=True) if given is not None else {}
            if "choices" in raw:
                raw["choices"] = list(raw["choices"])
            default = entry.search_space.get(key)
            # Merge per parameter over the entry's default, when both are ranges (choices replace a range).
            if default is not None and "choices" not in raw and not hasattr(default, "choices"):
                raw = {**default.to_dict(), **raw}
            elif default is not None and not raw:
                raw = default.to_dict()
            if raw.get("type") is None:
                raw.pop("type", None)
            try:
                space[key] = parse_param(raw)
            except SpaceError as e:
                self.problems.add((*p, "search_space", key, *((e.key,) if e.key else ())), str(e))
                ok = False
        return FrozenMap(space) if ok else None

    def schedule_spec(self, raw: Mapping[str, Any], where: KeyPath) -> ScheduleSpec | None:
        cfg, found = parse(ScheduleConfig, dict(raw), where)
        self.problems.extend(found)
        if cfg is None:
            return None
        try:
            entry = self.reg.schedules.get(cfg.name)
        except UnknownNameError as e:
            self.problems.add((*where, "name"), str(e))
            return None
        ok = True
        for key, given in (
            ("cooldown_shape", cfg.cooldown_shape != "linear"),
            ("horizons", bool(cfg.horizons)),
        ):
            if given and entry.name != "wsd":
                self.problems.add(
                    (*where, key), f"applies to the wsd schedule only, not '{entry.name}' (set name: wsd)"
                )
                ok = False
        if len(set(cfg.horizons)) != len(cfg.horizons):
            self.problems.add((*where, "horizons"), f"a horizon is given twice: {list(cfg.horizons)}")
            ok = False
        if not ok:
            return None
        return ScheduleSpec(
            entry=entry,
            warmup=cfg.warmup,
            cooldown=cfg.cooldown,
            min_lr_ratio=cfg.min_lr_ratio,
            cooldown_shape=cfg.cooldown_shape,
            horizons=tuple(sorted(cfg.horizons)),
        )

    def schedule(
        self, entry: OptimizerEntry, cfg: Any, suite_schedule: Mapping[str, Any], p: KeyPath
    ) -> ScheduleSpec | None:
        if cfg.schedule is not None:
            merged = {**suite_schedule, **cfg.schedule.model_dump(exclude_unset=True)}
            return self.schedule_spec(merged, (*p, "schedule"))
        if entry.flags & {"schedule_free", "no_schedule"}:
            return ScheduleSpec(entry=self.reg.schedules.get("constant"))
        return self.schedule_spec(suite_schedule, ("schedule",))

    # -- the suite ------------------------------------------------------------------------------
    def suite(self, path: Path, overrides: FrozenMap) -> Suite | None:
        tree, pr = self.tree, self.problems
        pr.extend(check_finite(tree))
        valid = [k for k in SuiteConfig.model_fields if k != "include"]
        for key in tree:
            if key not in valid:
                pr.add(
                    (key,),
                    f"unknown key '{key}'.{did_you_mean(str(key), valid)} Expected one of: {', '.join(valid)}",
                )
        name = tree.get("name", path.stem)
        if not isinstance(name, str):
            pr.add(("name",), f"expected a string, got {name!r}")
        else:
            pr.require(bool(LABEL.match(name)), ("name",), f"expected {LABEL_RULE}, got {name!r}")
        description = tree.get("description", "")
        pr.require(isinstance(description, str), ("description",), f"expected a string, got {description!r}")
        settings = self.section("settings", Settings, Settings())
        tuning = self.section("tuning", TuningSpec, TuningSpec())
        trainer = self.section("trainer", TrainerSpec, TrainerSpec())
        if trainer.accelerator == "auto" and settings.device != "auto":  # the project's default device
            trainer = trainer.model_copy(update={"accelerator": settings.device})
        leaderboard = self.section("leaderboard", LeaderboardSpec, LeaderboardSpec())
        check = self.section("check", CheckSpec, CheckSpec())
        schedule_cfg = self.section("schedule", Schedule, ScheduleConfig())
        suite_schedule = schedule_cfg.model_dump(exclude_unset=True)
        self.schedule_spec(suite_schedule, ("schedule",))  # validate even if every optimizer overrides it

        tasks: list[TaskSpec] = []
        task_names: list[str] = []  # every item's name, resolved or not
        task_at: list[int] = []  # the item index of each resolved task
        for i, cfg, bare in self.items("tasks", Task, "[digits_cnn, pydocs_gpt_tiny]"):
            task_names.append(cfg.name)
            task = self.task(i, cfg, bare)
            if task is None:
                continue
            for j, other in enumerate(tasks):
                pr.require(
                    task.name != other.name, ("tasks", i), f"duplicate task '{task.name}' (also tasks[{j}])"
                )
            tasks.append(task)
            task_at.append(i)
        optimizers: list[OptimizerSpec] = []
        where: list[int] = []  # the item index of each resolved optimizer
        written: list[str] = []  # every item's label, resolved or not (an unimported one still has one)
        for i, cfg, bare in self.items("optimizers", Optimizer, "[adamw, sgd]"):
            written.append(label_of(cfg))
            opt = self.optimizer(i, cfg, bare, suite_schedule)
            if opt is None:
                continue
            where.append(i)
            for j, other in enumerate(optimizers):
                pr.require(
                    opt.label != other.label,
                    ("optimizers", i),
                    f"duplicate optimizer label '{opt.label}' (also optimizers[{j}]); give one a `label:`",
                )
            optimizers.append(opt)
        leaderboard = self.reference(leaderboard, written)
        self.check_names(check, written, list(dict.fromkeys([*task_names, *(t.name for t in tasks)])))
        self.launch_free_checks(trainer, tasks, optimizers)
        if tuning.protocol == "sweep":
            self.sweep_checks(tuning, list(zip(where, optimizers, strict=True)))
            for i, task in zip(task_at, tasks, strict=True):
                if task.scan is not None and task.scan.lr == "transfer":
                    self.problems.add(
                        ("tasks", i, "scan", "lr"),
                        "'transfer' runs the first point's best configuration once per point, which a "
                        "sweep's stages cannot; with protocol sweep use lr: retune (every point swept)",
                    )
        warmups = tuple(tuning.sweep.warmup) if tuning.protocol == "sweep" else ()
        self.horizon_checks(tasks, optimizers, trainer.accumulate_grad_batches, warmups)
        if pr or self.unresolved:
            return None
        return Suite(
            name=name,
            path=path,
            description=description,
            tasks=tuple(tasks),
            optimizers=tuple(optimizers),
            tuning=tuning,
            trainer=trainer,
            leaderboard=leaderboard,
            settings=settings,
            overrides=overrides,
            check=check,
        )

    def reference(self, lb: LeaderboardSpec, labels: list[str]) -> LeaderboardSpec:
        if lb.reference is not None:
            if labels and lb.reference not in labels:
                self.problems.add(
                    ("leaderboard", "reference"),
                    f"'{lb.reference}' is not an optimizer label of this suite.{did_you_mean(lb.reference, labels)} "
                    f"Labels: {', '.join(labels)}",
                )
            return lb
        default = "adamw" if "adamw" in labels else (labels[0] if labels else None)
        return lb.model_copy(update={"reference": default})

    def sweep_checks(self, tuning: TuningSpec, optimizers: list[tuple[int, OptimizerSpec]]) -> None:
        """The sweep's first stage is an lr grid; its 1-D sweeps name hyperparameters some optimizer has."""
        for i, opt in optimizers:
            lr = opt.search_space.get("lr")
            if lr is None:
                fixed = " (it is under `fixed:`)" if "lr" in opt.fixed else ""
                self.problems.add(
                    ("optimizers", i),
                    f"protocol sweep needs 'lr' in the search space of '{opt.label}'{fixed}: its first stage "
                    "is a learning-rate grid. Searched: " + (", ".join(opt.search_space) or "(nothing)"),
                )
            elif not (isinstance(lr, Float) and lr.log):
                self.problems.add(
                    ("optimizers", i, "search_space", "lr"),
                    f"protocol sweep needs a log-scale lr range (its grid is in points per decade), got {lr}",
                )
        names = tuning.sweep.params or ()
        searched = sorted({n for _, o in optimizers for n in o.search_space if n != "lr"})
        for j, name in enumerate(names):
            if name == "lr":
                self.problems.add(
                    ("tuning", "sweep", "params", j),
                    "'lr' is swept by the first stage; list the other hyperparameters here",
                )
            elif optimizers and name not in searched:
                self.problems.add(
                    ("tuning", "sweep", "params", j),
                    f"'{name}' is in no optimizer's search space.{did_you_mean(name, searched)} "
                    f"Searched: {', '.join(searched) or '(nothing but lr)'}",
                )

    def check_names(self, check: CheckSpec, labels: list[str], tasks: list[str]) -> None:
        """The labels and tasks `check:` names are this suite's."""
        if not labels or not tasks:
            return  # the optimizers or tasks had their own problems
        named = [(("check", "beat"), check.beat)] if check.beat is not None else []
        named += [(("check", "beat_optimizers", i), b) for i, b in enumerate(check.beat_optimizers)]
        for where, label in named:
            self.problems.require(
                label in labels,
                where,
                f"'{label}' is not an optimizer label of this suite.{did_you_mean(label, labels)} "
                f"Labels: {', '.join(labels)}",
            )
        if check.beat is not None:
            self.problems.require(
                check.beat not in check.beat_optimizers,
                ("check", "beat_optimizers"),
                f"'{check.beat}' is the optimizer to beat (check.beat); it cannot also have to beat itself",
            )
            self.problems.require(
                len(labels) > 1 or bool(check.beat_optimizers),
                ("check", "beat"),
                f"the suite has no other optimizer to compare with '{check.beat}'",
            )
        for task in check.noise_floor:
            self.problems.require(
                task in tasks,
                ("check", "noise_floor", task),
                f"'{task}' is not a task of this suite.{did_you_mean(task, tasks)} Tasks: {', '.join(tasks)}",
            )

    def horizon_checks(
        self,
        tasks: list[TaskSpec],
        optimizers: list[OptimizerSpec],
        accumulate: int,
        warmups: tuple[float, ...] = (),
    ) -> None:
        """Every (task or scan point, optimizer) with horizons makes branches of one run, at its own
        warmup and at each warmup a sweep's warmup points train with (`warmups`)."""
        for i, opt in enumerate(optimizers):
            if not opt.schedule.horizons:
                continue
            item = self.tree.get("optimizers", [])[i] if i < len(self.tree.get("optimizers", [])) else None
            own = (
                isinstance(item, Mapping)
                and isinstance(item.get("schedule"), Mapping)
                and "horizons" in item["schedule"]
            )
            where: KeyPath = ("optimizers", i, "schedule", "horizons") if own else ("schedule", "horizons")
            for task in tasks:
                for point in points(task, accumulate):
                    for w in (None, *(warmups if needs_schedule(opt.entry) else ())):
                        schedule = opt.schedule if w is None else dataclasses.replace(opt.schedule, warmup=w)
                        try:
                            plan_horizons(schedule, point.steps)
                        except HorizonError as e:
                            at = "" if w is None else f", the sweep's warmup point {w:g}"
                            self.problems.add(
                                where,
                                f"{point.label} ({point.steps} steps), optimizer '{opt.label}'{at}: {e}",
                            )

    def launch_free_checks(
        self, trainer: TrainerSpec, tasks: list[TaskSpec], optimizers: list[OptimizerSpec]
    ) -> None:
        """FSDP needs elementwise optimizers; a global batch must split over the processes; closure
        optimizers train under manual optimization, which has no gradient accumulation."""
        wanted = processes(trainer.devices, trainer.num_nodes)
        if wanted is not None and wanted > 1:
            check_batches(tasks, wanted, self.problems)
            if any(o.schedule.horizons for o in optimizers):
                self.problems.add(
                    ("schedule", "horizons"),
                    f"horizons run on one process for now ({wanted} asked by trainer.devices x num_nodes): "
                    "which branch to train next is decided from the tracking store on one process",
                )
        if uses_fsdp(trainer.strategy):
            supported = [n for n, e in self.reg.optimizers.items() if "fsdp" in e.flags]
            for i, opt in enumerate(optimizers):
                self.problems.require(
                    "fsdp" in opt.entry.flags,
                    ("optimizers", i),
                    f"'{opt.label}' ({opt.entry.source}) does not support FSDP (strategy: {trainer.strategy}): its "
                    "update needs whole parameters (matrix preconditioners, layer-wise norms or Hessian "
                    "products) but FSDP hands each rank a flat shard. Use strategy: ddp for it. Optimizers "
                    f"flagged `fsdp`: {', '.join(supported) or '(none)'}",
                )
        if trainer.accumulate_grad_batches > 1:
            for i, opt in enumerate(optimizers):
                self.problems.require(
                    "closure" not in opt.entry.flags,
                    ("optimizers", i),
                    f"'{opt.label}' ({opt.entry.source}) takes a second forward-backward inside its step "
                    f"(flag `closure`), which gradient accumulation cannot split "
                    f"(trainer.accumulate_grad_batches: {trainer.accumulate_grad_batches}); use 1 for it",
                )


def failure_cost(
    entry: TaskEntry, options: Mapping[str, Any], metric: str, given: float | None
) -> tuple[float | None, str]:
    """What a failed trial of this task costs in `metric`, and why: the suite's `failure_value`, else
    what the entry declares for its options (`TaskEntry.failure`), else nothing (None)."""
    declared = entry.failure(options) if entry.failure is not None else None
    value = declared.values.get(metric) if declared is not None else None
    if given is not None and given != value:
        return float(given), "set by the suite (tasks[].failure_value)"
    if declared is None:
        return None, f"not declared by task '{entry.name}'"
    if value is None:
        return None, f"not declared for {metric}: {declared.why}"
    return float(value), declared.why


def label_of(cfg: Any) -> str:
    """An optimizer item's label: `label:`, else its name (the class name of an import path)."""
    return cfg.label if cfg.label is not None else cfg.name.rsplit(":", 1)[-1]


def check_batches(tasks: list[TaskSpec] | tuple[TaskSpec, ...], n: int, problems: Problems) -> None:
    """Each task's (and each scan point's) global batch splits evenly over `n` processes."""
    for i, task in enumerate(tasks):
        scanned = dict(task.scan.axes).get("batch_size", ()) if task.scan is not None else ()
        problems.require(
            task.batch_size % n == 0 or bool(scanned),  # a scanned batch replaces the task's own
            ("tasks", i, "batch_size"),
            f"{task.batch_size} does not split evenly over {n} processes (the batch size is global: "
            f"each process loads batch_size / {n}); use a multiple of {n}",
        )
        for j, batch in enumerate(scanned):
            problems.require(
                batch % n == 0,
                ("tasks", i, "scan", "batch_size", j),
                f"{batch} does not split evenly over {n} processes (the batch size is global); use a multiple of {n}",
            )


def hparam_names(entry: OptimizerEntry) -> list[str]:
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


def resolve(
    tree: Mapping[str, Any],
    path: Path,
    problems: Problems,
    registries: Registries,
    *,
    overrides: FrozenMap | None = None,
    imports: bool = True,
) -> Resolved:
    """The `Suite` of a merged tree; raises one SpecError with every problem found."""
    r = _Resolver(tree, problems, registries, imports)
    suite = r.suite(path, overrides or FrozenMap())
    problems.raise_if_any()
    return Resolved(suite, tuple(r.unresolved))
