"""`bench check` on hand-made leaderboards: the tolerance rule (as before), the significance tests
(paired and unpaired, significant and not, many comparisons at once), the speed and memory gates, the
improvement-over-a-reference gate, the CI outputs (Markdown, JUnit XML) and the exit codes."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from bench.check import EXIT_CRASH, EXIT_FAILED, EXIT_OK, EXIT_USAGE, compare
from bench.schema import CheckSpec

TOLERANCE = CheckSpec(method="tolerance")


def entry(
    best: float | None,
    n_seeds: int = 0,
    seed_mean: float | None = None,
    seed_std: float | None = None,
    seeds: dict[int, float] | None = None,
    cost: dict | None = None,
) -> dict:
    out = {
        "best": best,
        "n_seeds": n_seeds,
        "seed_mean": seed_mean,
        "seed_std": seed_std,
        "n_trials": 8,
        "n_scored": 8,
    }
    if seeds is not None:  # a leaderboard written since per-seed values exist
        values = list(seeds.values())
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
        out.update(
            n_seeds=len(values),
            seed_mean=mean,
            seed_std=std,
            seed_values={str(k): v for k, v in seeds.items()},
        )
    if cost is not None:
        out["cost"] = cost
    return out


def board() -> dict:
    """Two tasks in the JSON form of report.leaderboard_dict (only the keys compare reads), the older
    format without per-seed values or costs."""
    return {
        "format": "bench-leaderboard/1",
        "suite": "smoke",
        "tasks": {
            "lm": {
                "metric": "val/loss",
                "mode": "min",
                "optimizers": {
                    "adamw": entry(3.0, n_seeds=3, seed_mean=3.10, seed_std=0.02),
                    "sgd": entry(4.0),
                },
            },
            "img": {
                "metric": "val/accuracy",
                "mode": "max",
                "optimizers": {"adamw": entry(0.90), "sgd": entry(0.80)},
            },
        },
    }


def seeded(values: dict[str, dict[int, float]], mode: str = "min", costs: dict | None = None) -> dict:
    """One task `t` with per-seed values per optimizer (and optionally cost entries)."""
    return {
        "format": "bench-leaderboard/1",
        "suite": "s",
        "tasks": {
            "t": {
                "metric": "val/loss",
                "mode": mode,
                "optimizers": {
                    o: entry(min(v.values()), seeds=v, cost=(costs or {}).get(o)) for o, v in values.items()
                },
            }
        },
    }


def statuses(result) -> dict[tuple[str, str], str]:
    return {(r.task, r.optimizer): r.status for r in result.rows}


def row(result, task: str, opt: str):
    return next(r for r in result.rows if (r.task, r.optimizer) == (task, opt))


# -- the tolerance rule, as bench check had it ------------------------------------------------------------
def test_passes_against_itself():
    for spec in (TOLERANCE, CheckSpec()):
        result = compare(board(), board(), spec)
        assert result.ok and not result.failures and result.exit_code == EXIT_OK
        assert set(statuses(result).values()) == {"ok"}
        assert len(result.rows) == 4
        assert "passed" in result.to_markdown()


def test_fails_when_the_baseline_is_made_better():
    baseline = board()
    baseline["tasks"]["lm"]["optimizers"]["sgd"]["best"] = 3.6  # current 4.0 is 11% worse (min)
    baseline["tasks"]["img"]["optimizers"]["adamw"]["best"] = 0.95  # current 0.90 is worse (max)
    result = compare(board(), baseline, TOLERANCE)
    assert not result.ok and result.exit_code == EXIT_FAILED
    s = statuses(result)
    assert s[("lm", "sgd")] == "regressed" and s[("img", "adamw")] == "regressed"
    assert s[("lm", "adamw")] == "ok"
    r = row(result, "lm", "sgd")
    assert r.allowed == pytest.approx(0.02 * 3.6) and r.worse_by == pytest.approx(0.4)
    md = result.to_markdown()
    assert "failed (2 of 4 checks)" in md
    assert "| task | optimizer | metric | baseline | current | worse by | margin |" in md
    assert md.index("regressed") < md.index("✅ ok")  # failures listed first


def test_small_changes_within_relative_tolerance_pass_and_improvements_are_flagged():
    current = board()
    current["tasks"]["lm"]["optimizers"]["sgd"]["best"] = 4.06  # 1.5% worse < 2%
    current["tasks"]["img"]["optimizers"]["sgd"]["best"] = 0.85  # higher accuracy: better
    result = compare(current, board(), TOLERANCE)
    assert result.ok
    assert statuses(result)[("lm", "sgd")] == "ok"
    assert statuses(result)[("img", "sgd")] == "improved"
    assert not compare(current, board(), CheckSpec(method="tolerance", rel_tol=0.01)).ok


def test_seed_noise_widens_the_allowance():
    current = board()
    cur = current["tasks"]["lm"]["optimizers"]["adamw"]
    cur["seed_mean"], cur["seed_std"] = 3.20, 0.06  # +0.10; pooled std sqrt((0.02^2 + 0.06^2)/2) = 0.0447
    loose = CheckSpec(method="tolerance", rel_tol=0.0, seed_k=3.0)  # allows 0.134
    assert statuses(compare(current, board(), loose))[("lm", "adamw")] == "ok"
    tight = CheckSpec(method="tolerance", rel_tol=0.0, seed_k=2.0)  # allows 0.089
    assert statuses(compare(current, board(), tight))[("lm", "adamw")] == "regressed"
    r = compare(current, board(), tight).rows[0]  # the seed mean is compared, not the tune best
    assert (r.baseline, r.current) == (3.10, 3.20)
    assert (r.baseline_n, r.current_n) == ("3 seeds", "3 seeds")


def test_absolute_tolerance():
    current = board()
    current["tasks"]["lm"]["optimizers"]["sgd"]["best"] = 4.3
    assert not compare(current, board(), TOLERANCE).ok
    assert compare(current, board(), CheckSpec(method="tolerance", abs_tol=0.5)).ok


def test_missing_entries_fail_and_new_entries_do_not():
    current = board()
    del current["tasks"]["lm"]["optimizers"]["sgd"]
    del current["tasks"]["img"]
    current["tasks"]["lm"]["optimizers"]["lion"] = entry(2.9)
    result = compare(current, board())
    s = statuses(result)
    assert not result.ok
    assert s[("lm", "sgd")] == s[("img", "adamw")] == s[("img", "sgd")] == "missing"
    assert s[("lm", "lion")] == "new"
    assert {r.status for r in result.failures} == {"missing"}


def test_no_result_no_baseline_and_metric_changed():
    baseline, current = board(), board()
    baseline["tasks"]["img"]["optimizers"]["sgd"]["best"] = None  # nothing completed in the baseline
    current["tasks"]["img"]["optimizers"]["sgd"]["best"] = None
    current["tasks"]["img"]["optimizers"]["adamw"]["best"] = None  # nothing completed now
    s = statuses(compare(current, baseline))
    assert s[("img", "sgd")] == "no baseline" and s[("img", "adamw")] == "no result"
    changed = copy.deepcopy(board())
    changed["tasks"]["lm"]["metric"] = "val/ppl"
    result = compare(changed, board())
    assert statuses(result)[("lm", "adamw")] == "metric changed" and not result.ok


def test_rejects_something_that_is_not_a_leaderboard():
    with pytest.raises(ValueError, match="not a leaderboard JSON"):
        compare({"rows": []}, board())
    with pytest.raises(ValueError, match="baseline: not a leaderboard JSON"):
        compare(board(), {"tasks": []})


# -- significance: paired and unpaired, significant and not --------------------------------------------
BASE = {1: 3.10, 2: 3.30, 3: 2.95, 4: 3.20}  # seeds 1-4; seed-to-seed spread ~0.15


def test_paired_seeds_catch_a_small_consistent_regression():
    worse = {s: v + 0.10 + d for (s, v), d in zip(BASE.items(), (0.004, -0.003, 0.002, -0.001), strict=True)}
    result = compare(seeded({"a": worse}), seeded({"a": BASE}))
    r = result.rows[0]
    assert r.method == "paired t" and r.note == "4 common seeds"
    assert r.worse_by == pytest.approx(0.1005) and r.allowed == pytest.approx(0.02 * 3.1375)
    assert r.p_value < 0.001 and r.status == "regressed" and result.exit_code == EXIT_FAILED
    assert r.allowed < r.detectable < r.worse_by  # it could have caught a smaller one


def test_the_same_regression_is_within_noise_without_pairing():
    worse = {s: v + 0.10 for s, v in BASE.items()}
    # the same four values on other seeds (a rerun on fresh seeds): Welch's test, seed spread included
    fresh = {s + 100: v for s, v in worse.items()}
    r = compare(seeded({"a": fresh}), seeded({"a": BASE})).rows[0]
    assert r.method == "Welch t" and r.p_value > 0.05
    assert r.status == "within noise" and r.worse_by > r.allowed  # worse by more than the margin, not surely


def test_identical_reruns_pass_with_p_one_and_the_margin_as_detectable():
    r = compare(seeded({"a": BASE}), seeded({"a": BASE})).rows[0]
    assert r.status == "ok" and r.p_value == 1.0
    assert r.detectable == pytest.approx(r.allowed)  # zero spread: anything past the margin is caught


def test_a_consistent_change_below_the_margin_is_not_a_regression():
    worse = {s: v + 0.03 for s, v in BASE.items()}  # +1%, margin 2%
    r = compare(seeded({"a": worse}), seeded({"a": BASE})).rows[0]
    assert r.status == "ok" and r.p_value == 1.0


def test_the_noise_floor_keeps_a_deterministic_tiny_change_from_failing():
    worse = {s: v + 0.07 for s, v in BASE.items()}  # identical shift: the paired spread is exactly 0
    spec = CheckSpec(rel_tol=0.0)
    assert compare(seeded({"a": worse}), seeded({"a": BASE}), spec).rows[0].status == "regressed"
    floored = CheckSpec(rel_tol=0.0, noise_floor={"t": 0.1})
    r = compare(seeded({"a": worse}), seeded({"a": BASE}), floored).rows[0]
    assert r.status == "within noise" and "floored" in r.note and r.p_value > 0.1


def test_improvements_are_flagged_when_significant():
    better = {s: v - 0.2 for s, v in BASE.items()}
    r = compare(seeded({"a": better}), seeded({"a": BASE})).rows[0]
    assert r.status == "improved" and r.p_value == 1.0


def test_older_baselines_without_seed_values_are_compared_by_welch_and_best_only_rows_by_tolerance():
    current = board()
    cur = current["tasks"]["lm"]["optimizers"]["adamw"]
    cur["seed_mean"], cur["seed_std"] = 3.30, 0.02
    result = compare(current, board())
    r = row(result, "lm", "adamw")
    assert r.method == "Welch t" and r.status == "regressed"
    sgd = row(result, "lm", "sgd")  # one value on each side, no floor: the tolerance rule
    assert sgd.method == "tolerance" and "too few seeds" in sgd.note and sgd.status == "ok"
    # with a pinned floor the single values are a z-test with that sigma
    current["tasks"]["lm"]["optimizers"]["sgd"]["best"] = 4.5
    floored = compare(current, board(), CheckSpec(noise_floor={"lm": 0.1}))
    z = row(floored, "lm", "sgd")
    assert z.method == "z (noise floor)" and z.status == "regressed"


def test_many_comparisons_are_corrected_together():
    # ten tasks, each worse by an amount that alone is significant at 0.05 (p ~ 0.01-0.03), none surely
    tasks = {}
    for i in range(10):
        base = {1: 1.0, 2: 1.1, 3: 0.9}
        cur = {1: 1.09, 2: 1.17, 3: 1.01 + 0.005 * i}
        tasks[f"t{i}"] = seeded({"a": cur})["tasks"]["t"], seeded({"a": base})["tasks"]["t"]
    current = {"tasks": {k: v[0] for k, v in tasks.items()}}
    baseline = {"tasks": {k: v[1] for k, v in tasks.items()}}
    alone = compare(current, baseline, CheckSpec(rel_tol=0.0, correction="none"))
    assert sum(r.status == "regressed" for r in alone.rows) == 10
    holm = compare(current, baseline, CheckSpec(rel_tol=0.0))
    assert all(r.status == "within noise" for r in holm.rows) and holm.ok
    assert min(r.p_value for r in holm.rows) > 0.05
    assert all(h.detectable > a.detectable for h, a in zip(holm.rows, alone.rows, strict=True))  # alpha/10
    assert "Holm-corrected over 10 tests" in holm.to_markdown()
    # one clear regression among them still fails the gate under Holm, and only it
    current["tasks"]["t0"]["optimizers"]["a"] = entry(2.0, seeds={1: 2.0, 2: 2.1, 3: 1.9})
    holm = compare(current, baseline, CheckSpec(rel_tol=0.0))
    assert [r.task for r in holm.rows if r.status == "regressed"] == ["t0"]


# -- speed and memory ------------------------------------------------------------------------------------
def cost(
    step: float, update: float, state: float | None, ref: str = "ref", state_bytes: float = 1000.0
) -> dict:
    return {
        "reference": ref,
        "n_timed": 3,
        "step_time_s": 0.1 * step,
        "update_time_s": 0.01 * update,
        "state_bytes": state_bytes,
        "step_time_s_ratio": step,
        "update_time_s_ratio": update,
        "state_bytes_ratio": state,
    }


def costed(new: dict, ref: dict | None = None) -> dict:
    values = {"ref": BASE, "new": BASE}
    return seeded(values, costs={"ref": ref or cost(1.0, 1.0, 1.0), "new": new})


def cost_statuses(result) -> dict[str, str]:
    return {r.measure: r.status for r in result.costs if r.optimizer == "new"}


def test_speed_and_memory_gates_use_their_own_tolerances():
    baseline = costed(cost(1.2, 2.0, 2.0))
    same = compare(costed(cost(1.25, 2.1, 2.0)), baseline)  # +4%, +5%, 0%
    assert cost_statuses(same) == {"step time": "ok", "update time": "not gated", "optimizer state": "ok"}
    assert same.ok and all(r.optimizer != "ref" for r in same.costs)  # the reference is 1 by construction
    slower = compare(costed(cost(1.2 * 1.3, 2.0, 2.2)), baseline)  # +30% step time, +10% state
    assert cost_statuses(slower) == {
        "step time": "slower",
        "update time": "not gated",
        "optimizer state": "larger",
    }
    assert slower.exit_code == EXIT_FAILED and len(slower.failures) == 2
    step = next(r for r in slower.costs if r.measure == "step time")
    assert step.change == pytest.approx(0.3) and step.baseline == 1.2
    spec = CheckSpec(step_time_tol=0.5, update_time_tol=0.2, memory_tol=None)
    assert cost_statuses(compare(costed(cost(1.2 * 1.3, 2.5, 2.2)), baseline, spec)) == {
        "step time": "ok", "update time": "slower", "optimizer state": "not gated",
    }  # fmt: skip
    faster = compare(costed(cost(0.8, 2.0, 1.0)), baseline)
    assert (
        cost_statuses(faster)["step time"] == "faster"
        and cost_statuses(faster)["optimizer state"] == "smaller"
    )
    assert faster.ok
    md = slower.to_markdown()
    assert "as ratios to `ref` measured in the same run" in md and "+30.0%" in md


def test_state_bytes_are_compared_absolutely_when_the_reference_keeps_no_state():
    baseline = costed(cost(1.0, 1.0, None, state_bytes=800.0), ref=cost(1.0, 1.0, None, state_bytes=0.0))
    current = costed(cost(1.0, 1.0, None, state_bytes=1600.0), ref=cost(1.0, 1.0, None, state_bytes=0.0))
    r = next(r for r in compare(current, baseline).costs if r.measure == "optimizer state")
    assert r.unit == "bytes" and r.status == "larger" and r.change == pytest.approx(1.0)


def test_cost_needs_the_same_reference_and_old_baselines_have_none():
    baseline = costed(cost(1.2, 2.0, 2.0, ref="adamw"))
    result = compare(costed(cost(1.2, 2.0, 2.0)), baseline)
    assert set(cost_statuses(result).values()) == {"reference changed"} and not result.ok
    old = compare(costed(cost(1.2, 2.0, 2.0)), seeded({"ref": BASE, "new": BASE}))
    assert old.costs == () and old.ok and "no speed or memory figures" in old.to_markdown()


# -- must beat a reference in the same run ------------------------------------------------------------------
def test_beat_gate_requires_a_significant_improvement_on_every_task():
    better = {s: v - 0.1 for s, v in BASE.items()}
    same = dict(BASE)
    current = seeded({"adamw": BASE, "mine": better, "other": same})
    result = compare(current, None, CheckSpec(beat="adamw", beat_optimizers=("mine",)))
    assert result.rows == () and result.costs == () and len(result.beats) == 1
    (b,) = result.beats
    assert b.status == "beats" and b.method == "paired t" and b.improvement == pytest.approx(0.1)
    assert b.p_value < 0.001 and result.ok
    both = compare(current, None, CheckSpec(beat="adamw"))  # every other optimizer by default
    assert {b.optimizer: b.status for b in both.beats} == {"mine": "beats", "other": "not shown"}
    assert both.exit_code == EXIT_FAILED
    # a required margin: 5% of adamw's mean (0.157) is more than the 0.1 it gains
    strict = compare(current, None, CheckSpec(beat="adamw", beat_optimizers=("mine",), beat_by=0.05))
    assert strict.beats[0].status == "not shown" and strict.beats[0].required == pytest.approx(0.05 * 3.1375)
    md = both.to_markdown()
    assert "Improvement over `adamw`" in md and "intersection-union" in md


def test_beat_gate_in_max_mode_and_with_too_few_seeds_or_no_result():
    current = seeded({"adamw": {1: 0.80, 2: 0.81}, "mine": {1: 0.85, 2: 0.87}}, mode="max")
    assert compare(current, None, CheckSpec(beat="adamw")).beats[0].improvement == pytest.approx(0.055)
    one = seeded({"adamw": {1: 0.80}, "mine": {1: 0.85}}, mode="max")
    b = compare(one, None, CheckSpec(beat="adamw")).beats[0]
    assert b.status == "not shown" and "too few seeds" in b.note
    assert compare(one, None, CheckSpec(beat="adamw", noise_floor={"t": 0.01})).beats[0].status == "beats"
    missing = seeded({"adamw": BASE})
    b = compare(missing, None, CheckSpec(beat="adamw", beat_optimizers=("mine",))).beats[0]
    assert b.status == "no result"


# -- CI outputs -------------------------------------------------------------------------------------------
def test_junit_has_one_case_per_check_with_failures_and_skips():
    current = costed(cost(1.2 * 1.5, 2.0, 2.0))
    current["tasks"]["t"]["optimizers"]["lion"] = entry(1.0, seeds={1: 1.0, 2: 1.1})
    result = compare(current, costed(cost(1.2, 2.0, 2.0)), CheckSpec(beat="ref", beat_optimizers=("new",)))
    root = ET.fromstring(result.to_junit("s", time_s=1.5))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(result.all_rows) == int(suite.get("tests")) == int(root.get("tests"))
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["new step time vs baseline", "new beats ref"]
    assert int(suite.get("failures")) == 2 and suite.get("errors") == "0"
    assert failed[0].find("failure").get("type") == "slower" and "+50.0%" in failed[0].find("failure").text
    skipped = [c.get("name") for c in cases if c.find("skipped") is not None]
    assert "lion val/loss vs baseline" in skipped and "new update time vs baseline" in skipped
    assert int(suite.get("skipped")) == len(skipped)
    assert {c.get("classname") for c in cases} == {"s.t"}
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["alpha"] == "0.05" and props["correction"] == "holm"


# -- the command and its exit codes ------------------------------------------------------------------------
class FakeTracker:
    def __init__(self, table: pd.DataFrame):
        self.table = table

    def trials_table(self) -> pd.DataFrame:
        return self.table


def recorded(value: float) -> pd.DataFrame:
    rows = [
        {"task": "lm", "optimizer": "adamw", "kind": "tune", "outcome": "completed", "value": value},
        {"task": "lm", "optimizer": "adamw", "kind": "tune", "outcome": "completed", "value": value + 1},
        {"task": "lm", "optimizer": "sgd", "kind": "tune", "outcome": "diverged", "value": float("nan")},
    ]
    return pd.DataFrame(rows).assign(mode="min", metric="val/loss", target=float("nan"), lr=1e-3)


def fake_suite(**check) -> SimpleNamespace:
    from bench.spec import LeaderboardSpec

    return SimpleNamespace(
        name="smoke", path=Path("suites/smoke.yaml"), leaderboard=LeaderboardSpec(), check=CheckSpec(**check)
    )


def test_run_check_scores_recorded_trials_and_writes_the_summary_and_junit(tmp_path):
    from bench import report, score
    from bench.check import run_check

    suite = fake_suite()
    baseline = tmp_path / "smoke.json"
    baseline.write_text(
        json.dumps(report.leaderboard_dict(score.leaderboard(recorded(3.0), suite.leaderboard), "smoke"))
    )
    summary, junit, lines = tmp_path / "summary.md", tmp_path / "reports" / "check.xml", []
    ok = run_check(
        suite, baseline, tracker=FakeTracker(recorded(3.0)), summary=summary, junit=junit, out=lines.append
    )
    assert ok == EXIT_OK and "passed" in summary.read_text()
    assert ET.parse(junit).getroot().get("failures") == "0"
    bad = run_check(
        suite, baseline, tracker=FakeTracker(recorded(3.5)), summary=summary, junit=junit, out=lines.append
    )
    assert bad == EXIT_FAILED
    text = summary.read_text()
    assert text.count("### bench check") == 2 and "regressed" in text  # appended, not overwritten
    assert ET.parse(junit).getroot().get("failures") == "1"  # rewritten
    assert (
        run_check(suite, baseline, tracker=FakeTracker(recorded(3.0).iloc[:0]), out=lines.append)
        == EXIT_USAGE
    )


def test_run_check_usage_errors_exit_2_before_running_anything(tmp_path):
    from bench.check import run_check

    class Untouchable:
        def trials_table(self):
            raise AssertionError("nothing should be read")

    lines: list[str] = []
    assert (
        run_check(fake_suite(), tmp_path / "nope.json", tracker=Untouchable(), out=lines.append) == EXIT_USAGE
    )
    assert "not found" in lines[-1]
    (tmp_path / "bad.json").write_text("{not json")
    assert (
        run_check(fake_suite(), tmp_path / "bad.json", tracker=Untouchable(), out=lines.append) == EXIT_USAGE
    )
    assert "not JSON" in lines[-1]
    (tmp_path / "rows.json").write_text('{"rows": []}')
    assert (
        run_check(fake_suite(), tmp_path / "rows.json", tracker=Untouchable(), out=lines.append) == EXIT_USAGE
    )
    assert "not a leaderboard JSON" in lines[-1]
    assert run_check(fake_suite(), None, tracker=Untouchable(), out=lines.append) == EXIT_USAGE
    assert "nothing to check" in lines[-1]


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    from bench import check
    from bench.cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text("tasks: [digits_cnn]\noptimizers: [sgd, adamw]\n")
    assert main(["check", str(suite), "--baseline", str(tmp_path / "none.json")]) == EXIT_USAGE
    assert main(["check", str(suite)]) == EXIT_USAGE  # neither a baseline nor check.beat
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [digits_cnn]\noptimizers: [sgd]\ncheck: {beat: adamw}\n")
    assert main(["check", str(bad)]) == EXIT_USAGE
    assert "check.beat: 'adamw' is not an optimizer label" in capsys.readouterr().err

    def crash(*args, **kwargs):
        raise RuntimeError("the store is on fire")

    monkeypatch.setattr(check, "run_check", crash)
    assert main(["check", str(suite), "--baseline", "x.json"]) == EXIT_CRASH
    err = capsys.readouterr().err
    assert "the store is on fire" in err and "bench itself failed" in err
