"""The plan: studies in suite order, stable ids, fingerprints that track what changes results, costs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import bench.catalog
from bench.plan import Plan, format_plan, make_plan, seed_run_id, trial_id
from bench.spec import load_suite

REPO = Path(__file__).resolve().parents[1]

BASE = """\
name: p
tasks:
  - {name: digits_cnn, steps: 20, eval_every: 10}
  - {name: pydocs_gpt_tiny, steps: 30}
optimizers:
  - adamw
  - {name: sgd, fixed: {nesterov: true}}
tuning: {protocol: random, trials: 3, seeds: 2, sampler_seed: 0, pruner: none}
"""


@pytest.fixture(autouse=True)
def _catalog() -> None:
    bench.catalog.load()


def plan_of(tmp_path: Path, text: str = BASE, overrides: dict | None = None) -> Plan:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return make_plan(load_suite(path, overrides))


def test_studies_are_task_by_optimizer_in_suite_order(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    assert [s.name for s in plan.studies] == [
        "p.digits_cnn.adamw",
        "p.digits_cnn.sgd",
        "p.pydocs_gpt_tiny.adamw",
        "p.pydocs_gpt_tiny.sgd",
    ]
    s = plan.study("p.digits_cnn.sgd")
    assert (s.trials, s.seeds, s.steps, s.reruns) == (3, 2, 20, (1,))
    assert s.task.name == "digits_cnn" and s.optimizer.label == "sgd"
    assert s.cost.runs == 4 and s.cost.steps == 80
    with pytest.raises(KeyError):
        plan.study("p.nope.adamw")


def test_one_trial_when_nothing_is_searched(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, overrides={"tuning.protocol": "defaults"})
    assert {s.trials for s in plan.studies} == {1}
    text = BASE.replace("- adamw", "- {name: adamw, search_space: {}}")
    plan = plan_of(tmp_path, text)
    assert plan.study("p.digits_cnn.adamw").trials == 1 and plan.study("p.digits_cnn.sgd").trials == 3


def test_ids_are_stable_and_distinct() -> None:
    assert trial_id("q.t.adamw", 3) == trial_id("q.t.adamw", 3)
    ids = {trial_id("q.t.adamw", n) for n in range(20)} | {seed_run_id("q.t.adamw", s) for s in range(5)}
    ids |= {trial_id("q.t.sgd", n) for n in range(20)}
    assert len(ids) == 45
    assert trial_id("q.t.adamw", 1) != trial_id("q.t.adamw", 11)


def test_fingerprint_is_stable_across_loads(tmp_path: Path) -> None:
    a = [s.fingerprint for s in plan_of(tmp_path).studies]
    b = [s.fingerprint for s in plan_of(tmp_path).studies]
    assert a == b and len(set(a)) == 4 and all(len(f) == 12 for f in a)


@pytest.mark.parametrize(
    "override",
    [
        {"tasks[0].steps": 21},
        {"tasks[0].batch_size": 32},
        {"tasks[0].options.width": 8},
        {"optimizers[0].fixed.weight_decay": 0.0},
        {"optimizers[0].search_space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}},
        {"optimizers[0].schedule": {"name": "wsd"}},
        {"optimizers[0].decay_filter": False},
        {"schedule.warmup": 0.3},
        {"tuning.protocol": "qmc"},
        {"tuning.sampler_seed": 1},
        {"tuning.trials": 4},
        {"tuning.pruner": "median"},
        {"trainer.precision": "bf16-mixed"},
    ],
    ids=lambda o: next(iter(o)),
)
def test_fingerprint_changes_with_what_changes_results(tmp_path: Path, override: dict) -> None:
    before = plan_of(tmp_path).study("p.digits_cnn.adamw").fingerprint
    assert plan_of(tmp_path, overrides=override).study("p.digits_cnn.adamw").fingerprint != before


@pytest.mark.parametrize(
    "override",
    [
        {"tuning.seeds": 5},
        {"tuning.trial_time_budget_s": 10},
        {"tasks[0].target": 0.5},
        {"tasks[0].eval_every": 5},  # no pruner: evaluation only records curves
        {"optimizers[0].label": "adamw_renamed"},
        {"settings.tracking_uri": "sqlite:///other.db"},
        {"leaderboard.ks": [1, 2, 3]},
        {"description": "other words"},
        {"trainer.accelerator": "cpu"},
    ],
    ids=lambda o: next(iter(o)),
)
def test_fingerprint_ignores_bookkeeping(tmp_path: Path, override: dict) -> None:
    before = plan_of(tmp_path).studies[0].fingerprint
    assert plan_of(tmp_path, overrides=override).studies[0].fingerprint == before


def test_other_studies_keep_their_fingerprint(tmp_path: Path) -> None:
    before = plan_of(tmp_path)
    after = plan_of(tmp_path, overrides={"optimizers[0].fixed.weight_decay": 0.0})
    assert after.study("p.digits_cnn.sgd").fingerprint == before.study("p.digits_cnn.sgd").fingerprint


def test_estimate_totals_and_scaling(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    est = plan.estimate
    assert est.trials == 4 * 3 and est.runs == 4 * (3 + 1)
    assert est.steps == 2 * 4 * 20 + 2 * 4 * 30
    cnn = plan.study("p.digits_cnn.adamw")
    entry = cnn.task.entry
    assert cnn.cost.flops == pytest.approx(entry.flops_per_step * 4 * 20)
    assert cnn.cost.tokens is None
    gpt = plan.study("p.pydocs_gpt_tiny.adamw")
    assert gpt.cost.tokens == pytest.approx(gpt.task.entry.tokens_per_step * 4 * 30)
    assert est.tokens == pytest.approx(2 * gpt.cost.tokens)
    assert "tokens" in est.partial  # the digits studies have no token count
    assert est.flops == pytest.approx(sum(s.cost.flops for s in plan.studies))
    # Per-step figures are at the default batch size: doubling the batch doubles compute.
    double = plan_of(tmp_path, overrides={"tasks[0].batch_size": 2 * entry.batch_size})
    assert double.study("p.digits_cnn.adamw").cost.flops == pytest.approx(2 * cnn.cost.flops)


def test_format_plan(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    text = format_plan(plan)
    lines = text.splitlines()
    assert lines[0].startswith("suite p: 2 tasks x 2 optimizers, protocol random")
    for s in plan.studies:
        (row,) = [line for line in lines if line.startswith(s.name + " ")]
        assert s.fingerprint in row and f" {s.trials} " in row
    assert lines[-1].startswith("total (4 studies)")
    assert "FLOP" in lines[-1] and ">=" in lines[-1]  # tokens cover only the GPT studies


def test_shipped_suites_plan_instantly() -> None:
    import bench.catalog
    from bench.registry import OPTIMIZERS, TASKS

    # Importing the libraries behind the registry entries is start-up, not planning: time only the plan.
    bench.catalog.load()
    for registry in (TASKS, OPTIMIZERS):
        list(registry.items())
    for path in sorted((REPO / "suites").glob("*.yaml")):
        start = time.perf_counter()
        plan = make_plan(load_suite(path))
        format_plan(plan)
        assert time.perf_counter() - start < 1.0, path
        assert len(plan.studies) == len(plan.suite.tasks) * len(plan.suite.optimizers)
        assert len({s.name for s in plan.studies}) == len(plan.studies)


def test_quickstart_is_two_tasks_by_three_optimizers() -> None:
    plan = make_plan(load_suite(REPO / "suites" / "quickstart.yaml"))
    assert {s.task.name for s in plan.studies} == {"pydocs_gpt_tiny", "digits_cnn"}
    assert {s.optimizer.label for s in plan.studies} == {"sgd", "adamw", "lion"}
    assert plan.suite.tuning.protocol == "random"
