"""The suite format: the models' messages, immutability, and the JSON Schema editors read.

`docs/suite.schema.json` is what `bench schema` prints; the shipped suites point YAML-language-server
editors at it, so it must stay current and accept every shipped and good suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from bench.loader import read_yaml
from bench.schema import (
    FrozenMap,
    LeaderboardSpec,
    Optimizer,
    ScheduleConfig,
    Task,
    TrainerSpec,
    TuningSpec,
    freeze,
    parse,
    suite_json_schema,
    thaw,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "docs" / "suite.schema.json"
SUITE_FILES = sorted(
    [
        *REPO.glob("suites/*.yaml"),
        *REPO.glob("suites/common/*.yaml"),
        *REPO.glob("tests/suites/good/**/*.yaml"),
    ]
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_what_bench_schema_prints() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "schema"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert json.loads(out) == suite_json_schema()
    assert json.loads(SCHEMA_FILE.read_text()) == suite_json_schema(), (
        "docs/suite.schema.json is stale: run `bench schema -o docs/suite.schema.json`"
    )


@pytest.mark.parametrize("path", SUITE_FILES, ids=[str(p.relative_to(REPO)) for p in SUITE_FILES])
def test_json_schema_accepts_every_shipped_and_good_suite(path: Path, validator) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(read_yaml(path))]
    assert errors == []


@pytest.mark.parametrize(
    "doc",
    [
        {"tunning": {"trials": 2}},
        {"tuning": {"trials": 0}},
        {"tuning": {"protocol": "randon"}},
        {"tasks": "digits_cnn"},
        {"tasks": [3]},
        {"optimizers": [{"name": "adamw", "ema": 1.5}]},
        {"optimizers": [{"name": "adamw", "searchspace": {}}]},
        {"schedule": {"name": "cosine", "warmup": -1}},
        {"trainer": {"precision": "bf16mixed"}},
        {"leaderboard": {"ks": [1, 0]}},
    ],
)
def test_json_schema_rejects_malformed_suites(doc: dict, validator) -> None:
    assert list(validator.iter_errors(doc)), f"accepted {doc}"


@pytest.mark.parametrize("path", sorted(REPO.glob("suites/**/*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_point_editors_at_the_schema(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target == SCHEMA_FILE


@pytest.mark.parametrize(
    ("tp", "data", "path", "message"),
    [
        (TuningSpec, {"trials": 0}, ("tuning", "trials"), "must be >= 1, got 0"),
        (TuningSpec, {"trials": "many"}, ("tuning", "trials"), "expected an integer, got 'many'"),
        (TuningSpec, {"trials": True}, ("tuning", "trials"), "expected an integer, got True"),
        (TuningSpec, {"seeds": -1}, ("tuning", "seeds"), "must be >= 1 (1: no reruns of the best), got -1"),
        (
            TuningSpec,
            {"trial_time_budget_s": -5},
            ("tuning", "trial_time_budget_s"),
            "must be > 0 seconds or null, got -5.0",
        ),
        (TuningSpec, {"trails": 2}, ("tuning", "trails"), "unknown key 'trails'. Did you mean 'trials'?"),
        (
            TuningSpec,
            {"protocol": "randon"},
            ("tuning", "protocol"),
            "unknown protocol 'randon'. Did you mean 'random'? Expected one of: random, qmc, tpe, cmaes, grid, sweep, defaults",
        ),
        (TuningSpec, {"trials": 10**12}, ("tuning", "trials"), "must be <= 100000, got 1000000000000"),
        (TrainerSpec, {"precision": "bf16mixed"}, ("trainer", "precision"), "Did you mean 'bf16-mixed'?"),
        (
            ScheduleConfig,
            {"warmup": -0.1},
            ("schedule", "warmup"),
            "must be >= 0 (a fraction of steps if < 1, else steps), got -0.1",
        ),
        (ScheduleConfig, {"min_lr_ratio": 2}, ("schedule", "min_lr_ratio"), "must be in [0, 1], got 2.0"),
        (LeaderboardSpec, {"ks": [1, 0]}, ("leaderboard", "ks", 1), "must be >= 1, got 0"),
        (
            Optimizer,
            {"name": "adamw", "ema": 1.5},
            ("optimizers", 0, "ema"),
            "must be in (0, 1) or null, got 1.5",
        ),
        (
            Optimizer,
            {"name": "adamw", "decay_filter": "yes"},
            ("optimizers", 0, "decay_filter"),
            "expected true or false, got 'yes'",
        ),
        (
            Optimizer,
            {"name": "adamw", "search_space": {"lr": 0.01}},
            ("optimizers", 0, "search_space", "lr"),
            "got 0.01 (a value held constant goes under `fixed:`)",
        ),
        (Task, {"name": "digits_cnn", "steps": -10}, ("tasks", 0, "steps"), "must be >= 1, got -10"),
        (Task, {"steps": 3}, ("tasks", 0, "name"), "missing 'name'"),
    ],  # fmt: skip
)
def test_problem_messages(tp, data, path, message) -> None:
    value, problems = parse(tp, data, path[: 2 if path[0] in ("tasks", "optimizers") else 1])
    assert value is None
    found = dict(problems)
    assert path in found, problems
    assert message in found[path]


def test_one_problem_per_key_and_all_keys_at_once() -> None:
    _, problems = parse(
        TuningSpec, {"trials": 0, "seeds": 0, "pruner": "x", "sampler_seed": 1.5}, ("tuning",)
    )
    assert sorted(p for p, _ in problems) == [
        ("tuning", "pruner"), ("tuning", "sampler_seed"), ("tuning", "seeds"), ("tuning", "trials")
    ]  # fmt: skip


def test_bare_names_are_short_for_mappings() -> None:
    task, _ = parse(Task, "digits_cnn")
    assert task.name == "digits_cnn" and task.steps is None
    schedule, _ = parse(ScheduleConfig | None, None)
    assert schedule is None
    trainer, _ = parse(TrainerSpec, {"precision": 32})
    assert trainer.precision == "32"


def test_parsed_sections_are_deeply_immutable() -> None:
    opt, problems = parse(Optimizer, {"name": "sgd", "fixed": {"momentum": 0.9, "nested": {"a": [1, 2]}}})
    assert not problems
    with pytest.raises(ValidationError):
        opt.label = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        opt.fixed["momentum"] = 0.5  # type: ignore[index]
    assert isinstance(opt.fixed["nested"], FrozenMap) and opt.fixed["nested"]["a"] == (1, 2)
    assert opt.fixed == {"momentum": 0.9, "nested": {"a": (1, 2)}}
    assert thaw(opt.fixed) == {"momentum": 0.9, "nested": {"a": [1, 2]}}
    tuning = TuningSpec()
    with pytest.raises(ValidationError):
        tuning.trials = 3  # type: ignore[misc]


def test_frozen_map_is_hashable_and_picklable() -> None:
    import pickle

    a = freeze({"x": [1, {"y": 2}]})
    assert hash(a) == hash(freeze({"x": [1, {"y": 2}]}))
    assert pickle.loads(pickle.dumps(a)) == a
    assert json.dumps(thaw(a)) == '{"x": [1, {"y": 2}]}'
