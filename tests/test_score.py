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


# --- basin width -----------------------------------------------------------------------------------


def test_basin_width_relative_absolute_and_single():
    lr = [1e-4, 1e-3, 1e-2, 1e-1]
    values = [0.5, 0.100, 0.1005, 0.3]
    # best 0.1, tolerance 1% of it = 0.001: lrs 1e-3 and 1e-2 are good -> one decade
    assert score.basin_width(lr, values, 0.01) == (pytest.approx(1.0), 2)
    # absolute 0.45: every trial is within 0.55 -> 1e-4 .. 1e-1 = 3 decades
    assert score.basin_width(lr, values, 0.45, absolute=True) == (pytest.approx(3.0), 4)
    # a single good trial: width 0
    assert score.basin_width(lr, [0.5, 0.1, 0.2, 0.3], 0.01) == (0.0, 1)


def test_basin_width_mode_max_and_missing_lr():
    # accuracies: best 0.9, tolerance 0.009 keeps 0.895 (lr 1e-2), not 0.88
    assert score.basin_width([1e-4, 1e-3, 1e-2, 1e-1], [0.5, 0.9, 0.895, 0.88], 0.01, mode="max") == (
        pytest.approx(1.0),
        2,
    )
    width, n = score.basin_width([NAN, NAN], [0.1, 0.2])
    assert math.isnan(width) and n == 0
    # a trial without lr is ignored, not counted as good
    assert score.basin_width([NAN, 1e-3, 1e-2], [0.0, 0.1, 0.1]) == (pytest.approx(1.0), 2)


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
    assert math.isnan(c["basin_decades"])


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
    # basin: best 0.3, tolerance 0.003: only lr 1e-3
    assert board.row("t", "a")["basin_decades"] == 0.0 and board.row("t", "a")["n_basin"] == 1
    assert board.row("t", "a")["metric"] == "val/loss" and board.row("u", "a")["mode"] == "max"
    assert board.optimizers.loc["a", "mean_rank"] == 1.0 and board.optimizers.loc["a", "wins"] == 2
    assert board.optimizers.loc["b", "mean_rank"] == 1.5 and board.optimizers.loc["c", "n_tasks"] == 1


def test_basin_absolute_per_task():
    board = score.leaderboard(hand_table(), SPEC, basin_abs={"t": 0.15})
    # 0.4 (lr 1e-2) is within 0.15 of 0.3; the diverged trial (0.7 at lr 1) is not
    assert board.row("t", "a")["basin_decades"] == pytest.approx(1.0)
    assert board.row("t", "a")["n_basin"] == 2
    assert board.row("u", "a")["basin_decades"] == 0.0  # relative 1% there


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
    assert a["best"] == 0.5 and a["E_1"] == 0.5 and math.isnan(a["E_2"])
    assert a["basin_decades"] == 0.0 and a["n_basin"] == 1
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
