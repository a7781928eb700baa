"""`bench check`: passes against itself, fails when the baseline is better beyond the noise allowance."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from bench.check import compare


def entry(
    best: float | None, n_seeds: int = 0, seed_mean: float | None = None, seed_std: float | None = None
) -> dict:
    return {
        "best": best,
        "n_seeds": n_seeds,
        "seed_mean": seed_mean,
        "seed_std": seed_std,
        "n_trials": 8,
        "n_scored": 8,
    }


def board() -> dict:
    """Two tasks in the JSON form of report.leaderboard_dict (only the keys compare reads)."""
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


def statuses(result) -> dict[tuple[str, str], str]:
    return {(r.task, r.optimizer): r.status for r in result.rows}


def test_passes_against_itself():
    result = compare(board(), board())
    assert result.ok and not result.failures
    assert set(statuses(result).values()) == {"ok"}
    assert len(result.rows) == 4
    assert "passed" in result.to_markdown()


def test_fails_when_the_baseline_is_made_better():
    baseline = board()
    baseline["tasks"]["lm"]["optimizers"]["sgd"]["best"] = 3.6  # current 4.0 is 11% worse (min)
    baseline["tasks"]["img"]["optimizers"]["adamw"]["best"] = 0.95  # current 0.90 is worse (max)
    result = compare(board(), baseline)
    assert not result.ok
    s = statuses(result)
    assert s[("lm", "sgd")] == "regressed" and s[("img", "adamw")] == "regressed"
    assert s[("lm", "adamw")] == "ok"
    row = next(r for r in result.rows if (r.task, r.optimizer) == ("lm", "sgd"))
    assert row.allowed == pytest.approx(0.02 * 3.6) and row.worse_by == pytest.approx(0.4)
    md = result.to_markdown()
    assert "failed (2 of 4 entries)" in md
    assert "| task | optimizer | metric | baseline | current | allowed | status |" in md
    assert md.index("regressed") < md.index("✅ ok")  # failures listed first


def test_small_changes_within_relative_tolerance_pass_and_improvements_are_flagged():
    current = board()
    current["tasks"]["lm"]["optimizers"]["sgd"]["best"] = 4.06  # 1.5% worse < 2%
    current["tasks"]["img"]["optimizers"]["sgd"]["best"] = 0.85  # higher accuracy: better
    result = compare(current, board())
    assert result.ok
    assert statuses(result)[("lm", "sgd")] == "ok"
    assert statuses(result)[("img", "sgd")] == "improved"
    assert not compare(current, board(), rel_tol=0.01).ok


def test_seed_noise_widens_the_allowance():
    current = board()
    cur = current["tasks"]["lm"]["optimizers"]["adamw"]
    cur["seed_mean"], cur["seed_std"] = 3.20, 0.06  # +0.10; pooled std sqrt((0.02^2 + 0.06^2)/2) = 0.0447
    assert statuses(compare(current, board(), rel_tol=0.0, seed_k=3.0))[("lm", "adamw")] == "ok"  # 0.134
    assert (
        statuses(compare(current, board(), rel_tol=0.0, seed_k=2.0))[("lm", "adamw")] == "regressed"
    )  # 0.089
    # the seed mean is compared, not the tune best
    row = compare(current, board(), rel_tol=0.0).rows[0]
    assert (row.baseline, row.current) == (3.10, 3.20)
    assert (row.baseline_n, row.current_n) == ("3 seeds", "3 seeds")


def test_absolute_tolerance():
    current = board()
    current["tasks"]["lm"]["optimizers"]["sgd"]["best"] = 4.3
    assert not compare(current, board()).ok
    assert compare(current, board(), abs_tol=0.5).ok


def test_missing_entries_fail_and_new_entries_do_not():
    current = board()
    del current["tasks"]["lm"]["optimizers"]["sgd"]
    del current["tasks"]["img"]
    current["tasks"]["lm"]["optimizers"]["lion"] = entry(2.9)
    result = compare(current, board())
    s = statuses(result)
    assert not result.ok
    assert (
        s[("lm", "sgd")] == "missing" and s[("img", "adamw")] == "missing" and s[("img", "sgd")] == "missing"
    )
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


def test_run_check_scores_recorded_trials_and_writes_the_summary(tmp_path):
    from bench import report, score
    from bench.check import run_check
    from bench.spec import LeaderboardSpec

    suite = SimpleNamespace(name="smoke", path=Path("suites/smoke.yaml"), leaderboard=LeaderboardSpec())
    baseline = tmp_path / "smoke.json"
    baseline.write_text(
        json.dumps(report.leaderboard_dict(score.leaderboard(recorded(3.0), suite.leaderboard), "smoke"))
    )
    summary, lines = tmp_path / "summary.md", []
    assert (
        run_check(suite, baseline, tracker=FakeTracker(recorded(3.0)), summary=summary, out=lines.append) == 0
    )
    assert "passed" in summary.read_text()
    assert (
        run_check(suite, baseline, tracker=FakeTracker(recorded(3.5)), summary=summary, out=lines.append) == 1
    )
    text = summary.read_text()
    assert text.count("### bench check") == 2 and "regressed" in text  # appended, not overwritten
    assert run_check(suite, tmp_path / "nope.json", tracker=FakeTracker(recorded(3.0)), out=lines.append) == 2
    assert "not found" in lines[-1]
    assert run_check(suite, baseline, tracker=FakeTracker(recorded(3.0).iloc[:0]), out=lines.append) == 2
