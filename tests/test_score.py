"""Every scoring formula on hand-made tables whose answers were worked out by hand (in the comments)."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pandas as pd
import pytest

from bench import score
from bench.spec import LeaderboardSpec

NAN, INF = float("nan"), float("inf")


def trial(task: str, optimizer: str, value: float, **kw) -> dict:
    """One row of the trials table with neutral defaults."""
    row = {
        "suite": "s",
        "task": task,
        "optimizer": optimizer,
        "study": f"{task}/{optimizer}",
        "kind": "tune",
        "seed": 0,
        "outcome": "completed",
        "value": value,
        "mode": "min",
        "target": NAN,
        "lr": NAN,
        "params": {},
        "steps": 1000,
        "time_s": 10.0,
        "steps_to_target": NAN,
        "tokens_to_target": NAN,
        "seconds_to_target": NAN,
        "tokens_per_step": NAN,
    }
    row.update(kw)
    return row


def table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["trial_id"] = [f"{r['task']}/{r['optimizer']}/{i}" for i, r in enumerate(rows)]
    df["number"] = df.groupby(["task", "optimizer"]).cumcount()
    return df


def hand_table() -> pd.DataFrame:
    """Task t (min, target 0.5): a tunes well and has seeds; b never reaches the target; c only fails.
    Task u (max, target 0.8): a and b tie on their best; c did not run on it."""
    t = {"task": "t", "target": 0.5}
    u = {"task": "u", "target": 0.8, "mode": "max"}
    rows = [
        trial(optimizer="a", value=0.3, lr=1e-3, steps_to_target=100, seconds_to_target=1.0, **t),
        trial(optimizer="a", value=0.4, lr=1e-2, steps_to_target=200, seconds_to_target=2.0, **t),
        trial(optimizer="a", value=NAN, lr=1.0, outcome="diverged", **t),
        trial(optimizer="a", value=0.9, lr=1e-4, outcome="pruned", **t),  # censored: not the worst value
        trial(
            optimizer="a",
            value=0.32,
            lr=1e-3,
            kind="seed",
            seed=1,
            steps_to_target=110,
            seconds_to_target=11,
            **t,
        ),
        trial(
            optimizer="a",
            value=0.34,
            lr=1e-3,
            kind="seed",
            seed=2,
            steps_to_target=120,
            seconds_to_target=12,
            **t,
        ),
        trial(
            optimizer="a",
            value=0.30,
            lr=1e-3,
            kind="seed",
            seed=3,
            steps_to_target=130,
            seconds_to_target=13,
            **t,
        ),
        trial(optimizer="b", value=0.6, lr=1e-3, **t),
        trial(optimizer="b", value=0.7, lr=1e-2, **t),
        trial(optimizer="c", value=NAN, lr=1e-3, outcome="diverged", **t),
        trial(optimizer="c", value=NAN, lr=1e-2, outcome="error", **t),
        trial(optimizer="a", value=0.9, lr=1e-3, steps_to_target=50, seconds_to_target=5.0, **u),
        trial(optimizer="a", value=0.85, lr=3e-3, steps_to_target=80, seconds_to_target=8.0, **u),
        trial(optimizer="a", value=NAN, lr=1e-1, outcome="oom", **u),
        trial(optimizer="b", value=0.9, lr=1e-2, steps_to_target=40, seconds_to_target=4.0, **u),
        trial(optimizer="b", value=0.7, lr=1e-1, **u),
    ]
    return table(rows)


SPEC = LeaderboardSpec(ks=(1, 2, 3, 4), basin_eps=0.01, reference="a", r_max=4.0, wall_clock=True)


# --- expected best of k ----------------------------------------------------------------------------


def brute_force_expected_best(values: list[float], k: int) -> float:
    """Mean of the minimum over every ordered k-tuple of draws with replacement."""
    return float(np.mean([min(c) for c in itertools.product(values, repeat=k)]))


def test_expected_best_small_case_by_hand():
    # n=3, k=2: weights 1-(2/3)^2 = 5/9, (2/3)^2-(1/3)^2 = 3/9, (1/3)^2 = 1/9 -> (5 + 6 + 3) / 9
    assert score.expected_best_of_k([3.0, 1.0, 2.0], 2) == pytest.approx(14 / 9)
    assert score.expected_best_of_k([3.0, 1.0, 2.0], 1) == pytest.approx(2.0)  # E_1 is the mean
    # mode max mirrors: 3 * 5/9 + 2 * 3/9 + 1 * 1/9
    assert score.expected_best_of_k([1.0, 2.0, 3.0], 2, mode="max") == pytest.approx(22 / 9)


@pytest.mark.parametrize("values", [[0.5, 0.1, 0.9, 0.3], [1.0, 1.0, 2.0], [2.0, 2.0, 2.0], [7.0]])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_expected_best_matches_brute_force_including_ties(values, k):
    if k > len(values):
        assert math.isnan(score.expected_best_of_k(values, k))
    else:
        assert score.expected_best_of_k(values, k) == pytest.approx(brute_force_expected_best(values, k))


def test_expected_best_curve_is_monotone_and_tends_to_the_best():
    rng = np.random.default_rng(0)
    values = rng.normal(size=50)
    curve = score.expected_best_curve(values)
    assert curve.shape == (50,)
    assert curve[0] == pytest.approx(values.mean())
    assert np.all(np.diff(curve) <= 1e-12)
    assert score.expected_best_curve(values, [10_000])[0] == pytest.approx(values.min())


def test_expected_best_single_trial_inf_and_nan():
    assert score.expected_best_of_k([0.4], 1) == 0.4
    assert math.isnan(score.expected_best_of_k([0.4], 2))  # k > n: not reported
    assert score.expected_best_of_k([1.0, INF], 1) == INF  # a failed task with no finite value
    assert score.expected_best_of_k([1.0, INF], 2) == INF
    with pytest.raises(ValueError, match="NaN"):
        score.expected_best_curve([1.0, NAN])


# --- ranks -----------------------------------------------------------------------------------------


def test_rank_with_ties_within_combined_std_and_nan_last():
    # |1.05 - 1.0| = 0.05 <= sqrt(0.05^2 + 0^2): tie; NaN (nothing completed) ranks last
    ranks, tied = score.rank_with_ties([1.05, 2.0, NAN, 1.0], [0.0, 0.0, NAN, 0.05])
    assert ranks.tolist() == [1, 3, 4, 1]
    assert tied.tolist() == [True, False, False, True]


def test_rank_with_ties_exact_equality_and_no_chaining():
    ranks, tied = score.rank_with_ties([2.0, 1.0, 1.0])
    assert ranks.tolist() == [3, 1, 1] and tied.tolist() == [False, True, True]
    # 0.8 is within sqrt(0.6^2 + 0.6^2) = 0.85 of 0.0; 1.6 is within it of 0.8 but not of 0.0
    ranks, tied = score.rank_with_ties([0.0, 0.8, 1.6], [0.6, 0.6, 0.6])
    assert ranks.tolist() == [1, 1, 3] and tied.tolist() == [True, True, False]


# --- performance profiles --------------------------------------------------------------------------


def profile_times(**extra: list[float]) -> pd.DataFrame:
    cols = {"x": [100.0, 300.0, INF], "y": [200.0, 150.0, 50.0], "z": [INF, 600.0, 500.0], **extra}
    return pd.DataFrame(cols, index=["A", "B", "C"])


def test_performance_profile_vs_fastest():
    p = score.performance_profile(profile_times(), r_max=4.0)
    # r: A: x 1, y 2, z inf | B: x 2, y 1, z 4 | C: x inf, y 1, z 10 -> inf (beyond r_max)
    assert p.ratios.loc["C", "z"] == INF and p.ratios.loc["B", "z"] == 4.0
    # credit per task: r_max - r when r <= r_max; x: 3 + 2 + 0, y: 2 + 3 + 3, z: 0 + 0 + 0
    assert p.scores["x"] == pytest.approx(5 / 9)
    assert p.scores["y"] == pytest.approx(8 / 9)
    assert p.scores["z"] == pytest.approx(0.0)
    assert p.rho_at(2.0)["x"] == pytest.approx(2 / 3)
    assert p.rho_at(4.0)["z"] == pytest.approx(1 / 3)  # r = 4 exactly counts at tau = r_max
    assert p.rho.loc["z"].iloc[-1] == pytest.approx(1 / 3) and p.rho.loc["y"].iloc[0] == pytest.approx(2 / 3)
    # the exact integral agrees with a fine trapezoid of rho
    fine = score.performance_profile(profile_times(), r_max=4.0, num_points=30_001)
    trapz = np.trapezoid(fine.rho.to_numpy(), fine.taus, axis=1) / 3.0
    np.testing.assert_allclose(trapz, p.scores.to_numpy(), atol=1e-3)


def test_performance_profile_with_reference_is_stable_and_handles_unsolved_reference():
    p = score.performance_profile(profile_times(), r_max=4.0, reference="x")
    # vs x: A: x 1, y 2, z inf | B: x 1, y 0.5 (full credit), z 2 | C: x never -> solvers get r = 1
    assert p.ratios.loc["B", "y"] == pytest.approx(0.5)
    assert p.ratios.loc["C", "y"] == 1.0 and p.ratios.loc["C", "z"] == 1.0 and p.ratios.loc["C", "x"] == INF
    assert p.scores["x"] == pytest.approx((3 + 3 + 0) / 9)
    assert p.scores["y"] == pytest.approx((2 + 3 + 3) / 9)
    assert p.scores["z"] == pytest.approx((0 + 2 + 3) / 9)
    # adding a much faster optimizer moves the min-based scores but not the reference-based ones
    more = profile_times(w=[1.0, 1.0, 1.0])
    again = score.performance_profile(more, r_max=4.0, reference="x")
    pd.testing.assert_series_equal(again.scores[["x", "y", "z"]], p.scores)
    assert score.performance_profile(more, r_max=4.0).scores["y"] < 8 / 9
    with pytest.raises(KeyError, match="reference"):
        score.performance_profile(profile_times(), reference="nope")


# --- the leaderboard on the hand table -------------------------------------------------------------


@pytest.fixture(scope="module")
def board() -> score.Leaderboard:
    return score.leaderboard(hand_table(), SPEC, metrics={"t": "val/loss", "u": "val/accuracy"})


def test_failed_trials_are_filled_with_the_task_worst_and_pruned_are_censored(board):
    # worst completed value of task t over all optimizers and kinds: 0.7 (b); the pruned 0.9 is ignored
    assert board.tasks.loc["t", "worst"] == pytest.approx(0.7)
    assert board.tasks.loc["u", "worst"] == pytest.approx(0.7)  # mode max: the lowest accuracy
    a = board.row("t", "a")
    assert (a["n_trials"], a["n_scored"], a["n_completed"], a["n_pruned"], a["n_diverged"]) == (4, 3, 2, 1, 1)
    # sample [0.3, 0.4, 0.7]: median 0.4, E_1 = mean, E_2 = (0.3*5 + 0.4*3 + 0.7*1)/9, E_3 = 9.2/27
    assert a["best"] == pytest.approx(0.3) and a["best_lr"] == pytest.approx(1e-3)
    assert a["median"] == pytest.approx(0.4)
    assert a["E_1"] == pytest.approx(1.4 / 3)
    assert a["E_2"] == pytest.approx(3.4 / 9)
    assert a["E_3"] == pytest.approx(9.2 / 27)
    assert math.isnan(a["E_4"])  # k > n
    np.testing.assert_allclose(board.curves[("t", "a")], [1.4 / 3, 3.4 / 9, 9.2 / 27])


def test_seeds_rates_and_time_to_target(board):
    a = board.row("t", "a")
    assert a["n_seeds"] == 3
    assert a["seed_mean"] == pytest.approx(0.32) and a["seed_std"] == pytest.approx(0.02)
    assert a["success_rate"] == pytest.approx(2 / 3) and a["divergence_rate"] == pytest.approx(1 / 3)
    # median over the three seed reruns, not the tune trial's 100 steps
    assert a["steps_to_target"] == 120 and a["seconds_to_target"] == 12 and a["ttt_n"] == 3
    assert math.isnan(a["tokens_to_target"])  # no token count in this table
    b = board.row("t", "b")
    assert b["n_seeds"] == 0 and math.isnan(b["seed_mean"])
    assert b["success_rate"] == 0.0 and b["steps_to_target"] == INF  # never reached
    assert b["E_1"] == pytest.approx(0.65)


def test_an_optimizer_that_only_fails(board):
    c = board.row("t", "c")
    assert math.isnan(c["best"]) and pd.isna(c["best_trial_id"])
    assert (c["n_completed"], c["n_diverged"], c["n_error"], c["n_failed"]) == (0, 1, 1, 2)
    assert c["E_1"] == pytest.approx(0.7) and c["median"] == pytest.approx(0.7)  # both filled with the worst
    assert c["divergence_rate"] == 0.5 and c["success_rate"] == 0.0
    assert c["steps_to_target"] == INF and c["rank"] == 3
    assert math.isnan(c["basin_decades"]) and "2 learning rate(s)" in c["why_lr"]


def test_mode_max_task(board):
    a, b = board.row("u", "a"), board.row("u", "b")
    # a: sample (accuracy) [0.9, 0.85, 0.7 (oom -> worst)]
    assert a["best"] == pytest.approx(0.9) and a["median"] == pytest.approx(0.85)
    assert a["E_1"] == pytest.approx(2.45 / 3)
    assert a["E_2"] == pytest.approx((0.9 * 5 + 0.85 * 3 + 0.7) / 9)
    assert b["E_2"] == pytest.approx(0.9 * 0.75 + 0.7 * 0.25)
    assert a["success_rate"] == pytest.approx(2 / 3) and b["success_rate"] == pytest.approx(0.5)
    assert a["n_oom"] == 1 and a["n_failed"] == 1
    # equal best accuracy and no seeds: an exact tie sharing rank 1
    assert (a["rank"], a["tied"], b["rank"], b["tied"]) == (1, True, 1, True)
    assert a["steps_to_target"] == 50 and b["steps_to_target"] == 40


def test_ranks_basin_and_metadata(board):
    rows = board.rows[board.rows["task"] == "t"]
    assert rows["optimizer"].tolist() == ["a", "b", "c"] and rows["rank"].tolist() == [1, 2, 3]
    assert not rows["tied"].any()
    assert board.row("t", "a")["rank_value"] == pytest.approx(0.32)  # seed mean
    assert board.row("t", "b")["rank_value"] == pytest.approx(0.6)  # tune best
    assert board.row("t", "a")["metric"] == "val/loss" and board.row("u", "a")["mode"] == "max"
    assert board.optimizers.loc["a", "mean_rank"] == 1.0 and board.optimizers.loc["a", "wins"] == 2
    assert board.optimizers.loc["b", "mean_rank"] == 1.5 and board.optimizers.loc["c", "n_tasks"] == 1


def test_lr_curve_of_a_study_that_searched_the_lr_alone(board):
    # a on t: lrs 1e-3 (0.3), 1e-2 (0.4), 1 (diverged: the task's worst, 0.7); the pruned 1e-4 is left out.
    # tau = 0.3 * 1.01 = 0.303: the best is the first point (open below), then -3 + 1 (0.003 / 0.1)
    a = board.row("t", "a")
    assert a["lr_points"] == 3 and a["lr_edge"] == "low" and bool(a["basin_open"])
    assert a["basin_decades"] == pytest.approx(0.03)
    # a window of 1 decade around 1e-3 reaches below the sweep: not a number, with the reason
    assert math.isnan(a["lr_sensitivity"]) and a["why_lr"] == ""
    assert a["headroom"] == pytest.approx(10.0) and not a["headroom_censored"]  # 1e-2 completed, 1 did not
    (row,) = board.axes[(board.axes["task"] == "t") & (board.axes["optimizer"] == "a")].to_dict("records")
    assert (
        row["axis"] == "lr"
        and row["best_at"] == pytest.approx(1e-3)
        and "past the values swept" in row["why"]
    )


def test_basin_absolute_per_task():
    board = score.leaderboard(hand_table(), SPEC, basin_abs={"t": 0.15})
    # tau = 0.45: 0.4 at 1e-2 is in; then the line to (1, 0.7) crosses at -2 + 2 (0.05 / 0.3) = -1.667
    assert board.row("t", "a")["basin_decades"] == pytest.approx(-2 + 2 * 0.05 / 0.3 + 3)
    # u: a has lrs 1e-3 (0.9), 3e-3 (0.85), 0.1 (oom -> 0.7), relative 1% there: tau 0.891 (oriented -0.891)
    # -3 + 0.477 (0.009 / 0.05) = -2.914
    assert board.row("u", "a")["basin_decades"] == pytest.approx(np.log10(3) * 0.009 / 0.05)


def test_leaderboard_performance_profiles(board):
    profiles = {p.name: p for p in board.profiles}
    assert set(profiles) == {"steps", "steps vs a", "seconds", "seconds vs a"}  # no tokens measured
    steps = profiles["steps"]
    # t: a 120 (seed median), b and c never | u: a 50, b 40, c did not run (never)
    assert steps.ratios.loc["u", "a"] == pytest.approx(1.25) and steps.ratios.loc["u", "c"] == INF
    assert steps.scores["a"] == pytest.approx((3 + 2.75) / 6)
    assert steps.scores["b"] == pytest.approx(3 / 6) and steps.scores["c"] == 0.0
    ref = profiles["steps vs a"]
    assert ref.scores["a"] == pytest.approx(1.0) and ref.scores["b"] == pytest.approx(0.5)
    assert board.optimizers.loc["a", "profile_steps"] == pytest.approx(steps.scores["a"])
    assert board.optimizers.loc["b", "profile_steps_ref"] == pytest.approx(0.5)


def test_single_trial_and_no_target():
    df = table([trial("t", "a", 0.5, lr=1e-3)])
    board = score.leaderboard(df, SPEC)
    a = board.row("t", "a")
    # one trial is no sample and no curve: E_1 would be the best by construction
    assert (
        a["best"] == 0.5 and math.isnan(a["E_1"]) and math.isnan(a["median"]) and "1 trial" in a["why_random"]
    )
    assert math.isnan(a["basin_decades"]) and a["why_lr"]
    assert math.isnan(a["success_rate"]) and math.isnan(a["steps_to_target"])
    assert board.profiles == ()  # no task with a target


def test_final_value_reaching_target_without_intermediate_evals():
    # no steps_to_target recorded, but the final value meets the target: reached at the last step
    df = table([trial("t", "a", 0.2, target=0.5, steps=300, time_s=3.0, tokens_per_step=64.0)])
    a = score.leaderboard(df, SPEC).row("t", "a")
    assert (a["steps_to_target"], a["seconds_to_target"], a["tokens_to_target"]) == (300, 3.0, 300 * 64)
    assert a["success_rate"] == 1.0


def test_completed_without_a_value_counts_as_a_failure():
    df = table([trial("t", "a", 0.2), trial("t", "a", NAN), trial("t", "b", 0.4)])
    a = score.leaderboard(df, SPEC).row("t", "a")
    assert (a["n_completed"], a["n_error"], a["n_failed"]) == (1, 1, 1)
    assert a["E_1"] == pytest.approx((0.2 + 0.4) / 2)


def test_lr_profile_bins():
    df = table(
        [
            trial("t", "a", 0.3, lr=1.0e-3),
            trial("t", "a", 0.2, lr=1.5e-3),  # same 0.25-decade bin as 1e-3
            trial("t", "a", NAN, lr=1.0e-1, outcome="diverged"),
            trial("t", "a", 0.1, lr=1.0e-2, outcome="pruned"),  # censored
        ]
    )
    prof = score.lr_profile(df)
    assert prof["log10_lr"].tolist() == pytest.approx([-2.875, -0.875])
    assert prof["best"].tolist() == pytest.approx([0.2, 0.3])  # the failed bin shows the worst value
    assert prof["n"].tolist() == [2, 1] and prof["n_failed"].tolist() == [0, 1]


def test_table_validation():
    with pytest.raises(ValueError, match="missing columns"):
        score.prepare(pd.DataFrame({"task": ["t"]}))
    with pytest.raises(ValueError, match="unknown outcome"):
        score.prepare(table([trial("t", "a", 0.1, outcome="crashed")]))
    with pytest.raises(ValueError, match="empty"):
        score.leaderboard(table([trial("t", "a", 0.1)]).iloc[:0], SPEC)
    with pytest.raises(ValueError, match="both modes"):
        score.prepare(table([trial("t", "a", 0.1), trial("t", "b", 0.1, mode="max")]))


def test_ten_thousand_trials_score_fast():
    rng = np.random.default_rng(0)
    n = 10_000
    tasks = np.array([f"task{i}" for i in range(8)])
    opts = np.array([f"opt{i}" for i in range(6)])
    lr = 10 ** rng.uniform(-5, -1, n)
    value = 0.2 + 0.05 * (np.log10(lr) + 3) ** 2 + rng.normal(0, 0.01, n)
    outcome = rng.choice(np.array(OUTCOMES_WEIGHTED), n)
    df = pd.DataFrame(
        {
            "task": rng.choice(tasks, n),
            "optimizer": rng.choice(opts, n),
            "kind": np.where(rng.uniform(size=n) < 0.05, "seed", "tune"),
            "outcome": outcome,
            "value": np.where(outcome == "completed", value, NAN),
            "mode": "min",
            "target": 0.3,
            "lr": lr,
            "steps_to_target": np.where(value < 0.3, 500.0, NAN),
            "seconds_to_target": np.where(value < 0.3, 5.0, NAN),
            "trial_id": np.arange(n).astype(str),
        }
    )
    t0 = time.perf_counter()
    board = score.leaderboard(df, LeaderboardSpec(ks=(1, 4, 16)))
    elapsed = time.perf_counter() - t0
    assert len(board.rows) == 48
    assert board.rows["n_trials"].sum() + board.tasks["n_seeds"].sum() == n
    assert elapsed < 10.0, f"leaderboard() on 10k trials took {elapsed:.1f} s"


OUTCOMES_WEIGHTED = ["completed"] * 16 + ["pruned", "diverged", "diverged", "oom", "timeout", "error"]


# -- what bench check compares: per-seed values and the cost of a step --------------------------------
def gate_table() -> pd.DataFrame:
    """Task t (min): `ref` and `new` with two seed reruns each; `new` has a failed rerun on seed 2.
    Task u (max): one seed rerun each. Costs: `new` steps 1.5x slower and keeps 2x the state on t."""
    t, u = {"task": "t"}, {"task": "u", "mode": "max"}
    cost = {"step_time_s": 0.10, "update_time_s": 0.01, "state_bytes": 800.0}
    slow = {"step_time_s": 0.15, "update_time_s": 0.03, "state_bytes": 1600.0}
    rows = [
        trial(optimizer="ref", value=0.30, **t, **cost),
        trial(optimizer="ref", value=0.32, kind="seed", seed=1, **t, **cost),
        trial(optimizer="ref", value=0.34, kind="seed", seed=2, **t, **{**cost, "step_time_s": 0.50}),
        trial(optimizer="new", value=0.20, **t, **slow),
        trial(optimizer="new", value=0.22, kind="seed", seed=1, **t, **slow),
        trial(optimizer="new", value=NAN, kind="seed", seed=2, outcome="diverged", **t, **slow),
        trial(optimizer="ref", value=0.8, **u, **cost),
        trial(optimizer="ref", value=0.7, kind="seed", seed=1, **u, **cost),
        trial(optimizer="new", value=0.9, **u),  # no cost measured (a table from before StepClock)
        trial(optimizer="new", value=0.85, kind="seed", seed=1, **u),
    ]
    return table(rows)


def test_seed_values_are_the_unselected_runs_of_the_best_configuration_by_seed():
    values = score.seed_values(gate_table())
    # one tuning run per study (nothing was selected): it counts, on its seed 0, beside the reruns
    assert values[("t", "ref")] == {0: 0.30, 1: 0.32, 2: 0.34}
    assert values[("t", "new")] == {0: 0.20, 1: 0.22, 2: 0.34}  # the failed rerun counts as t's worst, 0.34
    assert values[("u", "new")] == {0: 0.9, 1: 0.85}  # in the metric's units (max)
    # a second tuning trial: the best one was selected, so only the reruns are unbiased
    searched = pd.concat(
        [gate_table(), table([trial(optimizer="ref", value=0.5, task="t")])], ignore_index=True
    )
    assert score.seed_values(searched)[("t", "ref")] == {1: 0.32, 2: 0.34}
    board = score.leaderboard(searched, LeaderboardSpec(reference="ref"))
    assert board.seed_values == score.seed_values(searched)
    reruns = score.seed_values(searched)[("t", "ref")].values()
    assert np.mean(list(reruns)) == pytest.approx(board.row("t", "ref")["seed_mean"])
    assert score.seed_values(gate_table().drop(columns="seed")) == {}


def test_costs_are_medians_over_completed_trials_and_ratios_to_the_reference():
    c = score.costs(gate_table(), "ref")
    # ref on t: step times 0.10, 0.10, 0.50 -> median 0.10 (the disturbed trial does not move it)
    assert c.loc[("t", "ref"), "step_time_s"] == pytest.approx(0.10) and c.loc[("t", "ref"), "n_timed"] == 3
    # new on t: the diverged rerun is left out; 0.15 over 0.10
    assert c.loc[("t", "new"), "n_timed"] == 2
    assert c.loc[("t", "new"), "step_time_s_ratio"] == pytest.approx(1.5)
    assert c.loc[("t", "new"), "update_time_s_ratio"] == pytest.approx(3.0)
    assert c.loc[("t", "new"), "state_bytes_ratio"] == pytest.approx(2.0)
    assert c.loc[("t", "ref"), "step_time_s_ratio"] == pytest.approx(1.0)
    assert math.isnan(c.loc[("u", "new"), "step_time_s"]) and c.loc[("u", "new"), "n_timed"] == 0
    assert math.isnan(c.loc[("u", "new"), "state_bytes_ratio"])
    assert score.costs(gate_table(), None)["step_time_s_ratio"].isna().all()
    assert (
        score.costs(gate_table().drop(columns=["step_time_s", "update_time_s", "state_bytes"]), "ref")[
            "step_time_s"
        ]
        .isna()
        .all()
    )
    board = score.leaderboard(gate_table(), LeaderboardSpec(reference="ref"))
    assert board.costs.loc[("t", "new"), "state_bytes"] == 1600


def test_wall_clock_time_is_not_measured_unless_the_suite_declares_a_dedicated_machine():
    df = table(
        [
            trial("t", "a", 0.2, target=0.5, steps=300, time_s=3.0),
            trial("t", "b", 0.3, target=0.5, steps=300, time_s=1.0),
        ]
    )
    shared = score.leaderboard(df, LeaderboardSpec(ks=(1,), reference="a"))
    assert shared.rows["seconds_to_target"].isna().all() and not shared.wall_clock
    assert {p.time for p in shared.profiles} == {"steps"}
    dedicated = score.leaderboard(df, LeaderboardSpec(ks=(1,), reference="a", wall_clock=True))
    assert dedicated.row("t", "b")["seconds_to_target"] == 1.0 and dedicated.wall_clock
    assert {p.time for p in dedicated.profiles} == {"steps", "seconds"}


# --- what a failure costs --------------------------------------------------------------------------


def test_a_declared_failure_value_is_what_failures_cost_and_clips_every_value():
    # L0 = 0.9 (chance error with 10 classes): the diverged trial costs 0.9, and 0.95 (worse than
    # chance) is clipped to 0.9; the best stays the raw best
    rows = [
        trial("t", "a", 0.2, failure_value=0.9),
        trial("t", "a", 0.95, failure_value=0.9),
        trial("t", "a", NAN, outcome="diverged", failure_value=0.9),
        trial("t", "b", 0.3, failure_value=0.9),
        trial("t", "b", 0.5, failure_value=0.9),
    ]
    board = score.leaderboard(table(rows), SPEC)
    assert board.tasks.loc["t", "worst"] == pytest.approx(0.9) and bool(board.tasks.loc["t", "declared"])
    a = board.row("t", "a")
    assert a["best"] == pytest.approx(0.2) and a["E_1"] == pytest.approx((0.2 + 0.9 + 0.9) / 3)
    # without the declaration, the fallback is the worst completed value of the task, 0.95
    undeclared = score.leaderboard(table([{**r, "failure_value": NAN} for r in rows]), SPEC)
    assert undeclared.tasks.loc["t", "worst"] == pytest.approx(0.95)
    assert not bool(undeclared.tasks.loc["t", "declared"])
    assert undeclared.row("t", "a")["E_1"] == pytest.approx((0.2 + 0.95 + 0.95) / 3)


def test_an_optimizer_that_diverges_everywhere_no_longer_beats_one_that_learns():
    # the bug this fixes: with lr up to 1e3, an optimizer failing 12 of 12 trials scored the task's
    # worst completed error (0.064) where chance is 0.9, and a better E_1 than SGD
    rows = [trial("t", "sgd", v, failure_value=0.9) for v in (0.03, 0.05, 0.064, 0.04)]
    rows += [trial("t", "bad", NAN, outcome="diverged", failure_value=0.9) for _ in range(4)]
    board = score.leaderboard(table(rows), SPEC)
    bad, sgd = board.row("t", "bad")["E_1"], board.row("t", "sgd")["E_1"]
    assert bad == pytest.approx(0.9) and bad > sgd


# --- protocols and robustness ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["sweep", "grid", "tpe", "defaults"])
def test_statistics_of_a_random_sample_are_na_with_the_reason_for_other_protocols(protocol: str):
    rows = [trial("t", "a", v, lr=lr, protocol=protocol) for v, lr in ((0.3, 1e-3), (0.4, 1e-2))]
    board = score.leaderboard(table(rows), SPEC)
    a = board.row("t", "a")
    assert math.isnan(a["E_1"]) and math.isnan(a["median"]) and math.isnan(a["cpe"])
    assert a["why_random"].startswith(f"protocol {protocol}:") and ("t", "a") not in board.curves


def sweep_rows(optimizer: str, lr_values: dict[float, float], **axes: dict[float, float]) -> list[dict]:
    """A sweep study: lr points (every other hyperparameter at its default, wd 0.1 and warmup 0.05), then
    1-D points of `axes` at the best lr 1e-3. NaN values diverged."""
    common = {"failure_value": 1.0, "protocol": "sweep"}
    rows = []
    for lr, v in lr_values.items():
        rows.append(
            trial("t", optimizer, v, lr=lr, params={"lr": lr, "wd": 0.1}, axis="lr", axis_value=lr,
                  axis_scale="log", warmup=0.05, outcome="diverged" if math.isnan(v) else "completed",
                  **common)
        )  # fmt: skip
    for axis, points in axes.items():
        for x, v in points.items():
            params = {"lr": 1e-3, "wd": x if axis == "wd" else 0.1}
            scale = "log" if axis == "wd" else "linear"
            warmup = x if axis == "warmup" else 0.05
            rows.append(
                trial("t", optimizer, v, lr=1e-3, params=params, axis=axis, axis_value=x, axis_scale=scale,
                      warmup=warmup, **common)
            )  # fmt: skip
    return rows


def sweep_board(**kw) -> score.Leaderboard:
    a = sweep_rows(
        "a",
        {1e-4: 0.9, 10**-3.5: 0.5, 1e-3: 0.3, 10**-2.5: 0.4, 1e-2: NAN},
        wd={0.01: 0.35, 1.0: 0.6},
        warmup={0.0: 0.32, 0.2: 0.34},
    )
    b = sweep_rows("b", {1e-4: 0.8, 10**-3.5: 0.45, 1e-3: 0.4, 10**-2.5: 0.5, 1e-2: 0.9})
    return score.leaderboard(table(a + b), SPEC, **kw)


def test_a_sweep_scores_its_lr_curve_by_hand():
    a = sweep_board().row("t", "a")
    # lr curve (log10): -4 0.9, -3.5 0.5, -3 0.3, -2.5 0.4, -2 diverged (L0 = 1.0)
    # basin, tau = 0.303: -3 - 0.5 (0.003 / 0.2) = -3.0075 to -3 + 0.5 (0.003 / 0.1) = -2.985
    assert a["basin_decades"] == pytest.approx(0.0225) and not a["basin_open"] and a["lr_edge"] == ""
    # window of one decade: mean(0.5, 0.3, 0.4) - 0.3
    assert a["lr_sensitivity"] == pytest.approx(0.1)
    assert a["headroom"] == pytest.approx(10**0.5) and not a["headroom_censored"]
    assert a["lr_points"] == 5 and a["best_lr"] == pytest.approx(1e-3)


def test_a_sweep_scores_each_other_axis_around_its_centre():
    board = sweep_board()
    axes = board.axes[board.axes["optimizer"] == "a"].set_index("axis")
    # wd: 0.01 0.35, 0.1 0.3 (the centre: the best lr point), 1.0 0.6; window of 1 decade around -1 at
    # -1.5, -1, -0.5 on the line: 0.325, 0.3, 0.45 -> mean 0.358333 - 0.3
    assert axes.loc["wd", "n_points"] == 3 and axes.loc["wd", "best_at"] == pytest.approx(0.1)
    assert axes.loc["wd", "sensitivity"] == pytest.approx(1.075 / 3 - 0.3) and axes.loc["wd", "edge"] == ""
    # warmup (linear): the whole sweep, 0.0 0.32, 0.05 0.3 (centre), 0.2 0.34: mean - 0.3 = 0.02
    assert (
        axes.loc["warmup", "sensitivity"] == pytest.approx(0.02) and axes.loc["warmup", "scale"] == "linear"
    )
    assert set(axes.index) == {"lr", "wd", "warmup"}


def test_robust_rank_is_by_lr_sensitivity_and_says_so():
    board = sweep_board()
    assert board.row("t", "a")["robust_by"] == "lr sensitivity"
    a, b = board.row("t", "a"), board.row("t", "b")
    # tuned: a (0.3) beats b (0.4); robust: b's sensitivity mean(0.45, 0.4, 0.5) - 0.4 = 0.05 beats a's 0.1
    assert (a["rank"], b["rank"]) == (1, 2)
    assert b["lr_sensitivity"] == pytest.approx(0.05)
    assert (a["robust_rank"], b["robust_rank"]) == (2, 1) and a["robust_by"] == "lr sensitivity"
    assert (
        board.optimizers.loc["b", "mean_robust_rank"] == 1
        and board.optimizers.loc["b", "robust_by"] == "lr sensitivity"
    )


def test_an_optimum_at_the_edge_of_the_sweep_is_flagged_and_its_window_is_na():
    rows = sweep_rows("c", {1e-3: 0.5, 10**-2.5: 0.45, 1e-2: 0.4})
    c = score.leaderboard(table(rows), SPEC).row("t", "c")
    assert c["lr_edge"] == "high" and bool(c["basin_open"])
    assert math.isnan(c["lr_sensitivity"]) and math.isnan(c["robust_rank"])
    # beside optimizers that have a sensitivity, it is left out of the robust ranking, not ranked last
    a, b = (
        sweep_rows("a", {1e-4: 0.9, 10**-3.5: 0.5, 1e-3: 0.3, 10**-2.5: 0.4, 1e-2: 0.9}),
        sweep_rows("b", {1e-4: 0.8, 10**-3.5: 0.45, 1e-3: 0.4, 10**-2.5: 0.5, 1e-2: 0.9}),
    )
    board = score.leaderboard(table(a + b + rows), SPEC)
    assert [board.row("t", o)["robust_rank"] for o in "ab"] == [2, 1] and math.isnan(
        board.row("t", "c")["robust_rank"]
    )
    assert c["headroom"] == pytest.approx(1.0) and bool(c["headroom_censored"])  # nothing larger failed


def random_rows(optimizer: str, values: list[float]) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        trial(
            "t", optimizer, v, lr=10 ** rng.uniform(-4, -2), params={"lr": 1e-3, "wd": w}, protocol="random"
        )
        for v, w in zip(values, np.geomspace(1e-3, 1, len(values)), strict=True)
    ]


def test_random_search_gets_bands_tunability_and_importance():
    values_a = [0.3, 0.5, 0.4, 0.6, 0.35, 0.45, 0.55, 0.65]
    values_b = [0.32, 0.33, 0.34, 0.36, 0.38, 0.4, 0.42, 0.44]
    calls = []

    def importance(configs, values, space):  # a stand-in for bench.search.importances
        calls.append((len(configs), sorted(space)))
        return {"lr": 0.25, "wd": 0.75}

    spaces = {"a": {"lr": None, "wd": None}, "b": {"lr": None, "wd": None}}
    board = score.leaderboard(
        table(random_rows("a", values_a) + random_rows("b", values_b)),
        SPEC,
        importance=importance,
        spaces=spaces,
    )
    a, b = board.row("t", "a"), board.row("t", "b")
    ks, lo, hi = board.bands[("t", "a")]
    assert list(ks) == list(range(1, 9)) and (lo <= board.curves[("t", "a")] + 1e-12).all()
    assert a["cpe"] == pytest.approx(
        sum((9 - k) * e for k, e in enumerate(board.curves[("t", "a")], 1)) / sum(range(1, 9))
    )
    # global alpha-tunability: against the better E_8 of the two
    best = min(board.curves[("t", "a")][-1], board.curves[("t", "b")][-1])
    first = np.flatnonzero(board.curves[("t", "b")] <= 1.05 * best)
    assert b["alpha_tunability"] == (pytest.approx((first[0] + 1) / 8) if first.size else INF)
    assert calls == [(8, ["lr", "wd"]), (8, ["lr", "wd"])] and a["top_param"] == "wd"
    assert set(board.importances["param"]) == {"lr", "wd"}
    # the lr is not the only thing searched: no lr curve, with the reason
    assert math.isnan(a["basin_decades"]) and "varies every hyperparameter" in a["why_lr"]
    assert a["robust_by"] == "CPE" and {a["robust_rank"], b["robust_rank"]} == {1, 2}


def test_a_study_whose_trials_were_all_pruned_has_no_robustness_and_says_why():
    rows = [
        trial("t", "a", 0.3, lr=1e-3),
        trial("t", "a", 0.4, lr=1e-2),
        trial("t", "b", 0.5, outcome="pruned"),
    ]
    board = score.leaderboard(table(rows), SPEC)
    b = board.row("t", "b")
    assert b["why_lr"] == b["why_tunability"] == "no tune trial that was not pruned"
    assert board.optimizers.loc["b", "robust_by"] == ""


def test_tasks_are_listed_with_their_numbers_read_as_numbers() -> None:
    from bench.score import natural_order

    names = ["digits_mlp@bs128", "digits_mlp@bs16", "digits_cnn", "digits_mlp@bs4"]
    assert sorted(names, key=natural_order) == [
        "digits_cnn", "digits_mlp@bs4", "digits_mlp@bs16", "digits_mlp@bs128",
    ]  # fmt: skip
