"""The plan: studies in suite order, stable ids, fingerprints that track what changes results, costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loader import load_suite
from bench.plan import Plan, format_plan, make_plan, seed_run_id, trial_id

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


def test_grid_counts_its_points_when_the_budget_is_larger(tmp_path: Path) -> None:
    from bench import search

    lr_only = "- {name: adamw, search_space: {lr: {low: 1.0e-4, high: 1.0e-1, log: true}}}"
    grid = {"tuning.protocol": "grid", "tuning.trials": 6}
    plan = plan_of(tmp_path, BASE.replace("- adamw", lr_only), grid)
    adamw = plan.study("p.digits_cnn.adamw")
    assert adamw.trials == 4 and adamw.cost.runs == 4 + 1 and adamw.cost.steps == 5 * 20  # 4 lr points
    for s in plan.studies:  # what the run draws: the whole grid at most
        assert s.trials == len(search.draw_configurations("grid", 0, s.optimizer.search_space, 6))
    assert plan.estimate.trials == sum(s.trials for s in plan.studies) < 4 * 6
    assert plan.estimate.runs == sum(s.trials + 1 for s in plan.studies)
    (row,) = [line for line in format_plan(plan).splitlines() if line.startswith("p.digits_cnn.adamw ")]
    assert row.split()[1:5] == ["4", "2", "20", "5"]  # trials, seeds, steps, runs
    # A budget below the grid's size still runs that many trials.
    assert plan_of(tmp_path, overrides={**grid, "tuning.trials": 2}).estimate.trials == 4 * 2


def test_grid_points_are_configurable_and_change_the_fingerprint_only_when_set(tmp_path: Path) -> None:
    lr_only = "- {name: adamw, search_space: {lr: {low: 1.0e-4, high: 1.0e-1, log: true}}}"
    grid = {"tuning.protocol": "grid", "tuning.trials": 20}
    four = plan_of(tmp_path, BASE.replace("- adamw", lr_only), grid).study("p.digits_cnn.adamw")
    seven = plan_of(tmp_path, BASE.replace("- adamw", lr_only), {**grid, "tuning.grid_points": 7})
    assert four.trials == 4 and seven.study("p.digits_cnn.adamw").trials == 7
    assert seven.study("p.digits_cnn.adamw").fingerprint != four.fingerprint
    explicit = plan_of(tmp_path, BASE.replace("- adamw", lr_only), {**grid, "tuning.grid_points": 4})
    assert explicit.study("p.digits_cnn.adamw").fingerprint == four.fingerprint  # the former fixed grid


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
        {"tuning.first_seed": 100},
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
        {"tuning.trials": 4},  # a larger budget extends the recorded studies (bench.search)
        {"tuning.trial_time_budget_s": 10},
        {"tasks[0].target": 0.5},
        {"tasks[0].eval_every": 5},  # no pruner: evaluation only records curves
        {"optimizers[0].label": "adamw_renamed"},
        {"settings.tracking_uri": "sqlite:///other.db"},
        {"leaderboard.ks": [1, 2, 3]},
        {"description": "other words"},
        {"trainer.accelerator": "cpu"},
        {"tuning.first_seed": 0},  # the default, written out: fingerprints from before the key hold
        {"check.alpha": 0.01},
    ],
    ids=lambda o: f"{next(iter(o))}={next(iter(o.values()))}",
)
def test_fingerprint_ignores_bookkeeping(tmp_path: Path, override: dict) -> None:
    before = plan_of(tmp_path).studies[0].fingerprint
    assert plan_of(tmp_path, overrides=override).studies[0].fingerprint == before


def test_first_seed_moves_the_tuning_seed_and_the_reruns(tmp_path: Path) -> None:
    assert plan_of(tmp_path).studies[0].reruns == (1,)
    study = plan_of(tmp_path, overrides={"tuning.first_seed": 100, "tuning.seeds": 4}).studies[0]
    assert study.first_seed == 100 and study.reruns == (101, 102, 103)


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


def test_shipped_suites_plan() -> None:
    for path in sorted((REPO / "suites").glob("*.yaml")):
        plan = make_plan(load_suite(path))
        format_plan(plan)
        assert len(plan.studies) == len(plan.suite.tasks) * len(plan.suite.optimizers)
        assert len({s.name for s in plan.studies}) == len(plan.studies)


# Planning stays cheap by never importing the libraries that training, tracking and tuning need (the
# speed itself is measured by scripts under benchmarks/, not by unit tests).
HEAVY = ("torch", "lightning", "pytorch_lightning", "mlflow", "optuna", "optuna_integration", "timm")
PLAN_EVERY_SUITE = """
import contextlib, io, json, sys
from bench.cli import main
loaded = {}
for path in sys.argv[2:]:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["plan", path]) == 0, path
    top = {m.split(".")[0] for m in sys.modules}
    loaded[path] = sorted(top & set(json.loads(sys.argv[1])))
print(json.dumps(loaded))
"""


def test_planning_shipped_suites_imports_no_training_tracking_or_tuning_library() -> None:
    suites = [str(p) for p in sorted((REPO / "suites").glob("*.yaml"))]
    assert suites
    out = subprocess.run(  # a fresh interpreter: this test process has imported everything already
        [sys.executable, "-c", PLAN_EVERY_SUITE, json.dumps(HEAVY), *suites],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out.splitlines()[-1]) == {path: [] for path in suites}


def test_quickstart_is_two_tasks_by_three_optimizers() -> None:
    plan = make_plan(load_suite(REPO / "suites" / "quickstart.yaml"))
    assert {s.task.name for s in plan.studies} == {"pydocs_gpt_tiny", "digits_cnn"}
    assert {s.optimizer.label for s in plan.studies} == {"sgd", "adamw", "lion"}
    assert plan.suite.tuning.protocol == "sweep"
    assert plan.estimate.trials == 18 and plan.estimate.extension == 6  # 3 lrs per study, at most 1 more
