"""The robustness formulas (bench/robustness.py) on hand-made curves whose answers were worked out by hand
in the comments: interpolated basins (a gap, an optimum at the edge, a bad point inside), windowed and
whole-sweep sensitivities, headroom, edges, bootstrap bands and tunability."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bench import robustness as rb

# --- curves ----------------------------------------------------------------------------------------


def test_curve_sorts_and_averages_repeated_positions():
    xs, ys = rb.curve([-2.0, -3.0, -2.0, np.nan], [0.4, 0.3, 0.6, 0.1])
    np.testing.assert_allclose(xs, [-3.0, -2.0])
    np.testing.assert_allclose(ys, [0.3, 0.5])  # (0.4 + 0.6) / 2; the NaN position is dropped
    with pytest.raises(ValueError, match="fill failed"):
        rb.curve([0.0], [np.nan])


def test_edge_says_where_the_best_point_lies():
    xs = np.array([0.0, 1.0, 2.0])
    assert rb.edge(xs, np.array([0.1, 0.2, 0.3])) == "low"
    assert rb.edge(xs, np.array([0.3, 0.2, 0.1])) == "high"
    assert rb.edge(xs, np.array([0.3, 0.1, 0.2])) == ""


# --- basin -----------------------------------------------------------------------------------------


def test_basin_interpolates_where_the_curve_crosses_the_tolerance():
    # best 0.3 at x = -3; relative eps 0.1 -> tau = 0.33
    # left: between (-3.5, 0.5) and (-3, 0.3): x = -3 + (-0.5)(0.03 / 0.2) = -3.075
    # right: between (-2.5, 0.4) and (-3, 0.3): x = -3 + 0.5 (0.03 / 0.1) = -2.85
    xs, ys = np.array([-4.0, -3.5, -3.0, -2.5, -2.0]), np.array([0.9, 0.5, 0.3, 0.4, 0.8])
    b = rb.basin(xs, ys, 0.1)
    assert (b.low, b.high) == (pytest.approx(-3.075), pytest.approx(-2.85))
    assert b.width == pytest.approx(0.225) and not b.censored
    # absolute eps 0.15 -> tau 0.45: left, 0.5 at -3.5 is out: -3 - 0.5 (0.15 / 0.2) = -3.375; right, 0.4
    # at -2.5 is in, then between (-2.5, 0.4) and (-2, 0.8): -2.5 + 0.5 (0.05 / 0.4) = -2.4375
    b = rb.basin(xs, ys, 0.15, absolute=True)
    assert (b.low, b.high, b.width) == (pytest.approx(-3.375), pytest.approx(-2.4375), pytest.approx(0.9375))


def test_basin_on_a_sweep_with_a_gap():
    # the grid point at -3 is missing: the line from (-3.5, 0.5) to (-2.5, 1.5) spans the gap
    # absolute eps 0.1 -> tau 0.6; left: -3.5 - 0.5 (0.1 / 0.5) = -3.6; right: -3.5 + 1.0 (0.1 / 1.0) = -3.4
    xs, ys = np.array([-4.0, -3.5, -2.5]), np.array([1.0, 0.5, 1.5])
    b = rb.basin(xs, ys, 0.1, absolute=True)
    assert (b.low, b.high, b.width) == (pytest.approx(-3.6), pytest.approx(-3.4), pytest.approx(0.2))


def test_basin_with_the_optimum_at_the_edge_of_the_grid_is_open_there():
    # best 0.2 at the first point; tau = 0.25: the basin starts at the sweep's end (a lower bound)
    # right: -3 + 0.5 (0.05 / 0.1) = -2.75
    b = rb.basin(np.array([-3.0, -2.5, -2.0]), np.array([0.2, 0.3, 0.6]), 0.05, absolute=True)
    assert (b.low, b.high, b.width) == (-3.0, pytest.approx(-2.75), pytest.approx(0.25))
    assert b.open_low and not b.open_high and b.censored


def test_basin_is_contiguous_a_bad_point_ends_it():
    # 0.1005 at x = 2 is within 1% of the best 0.1 at x = 0, but 0.5 at x = 1 lies between them:
    # the basin ends at 0 + 1 (0.001 / 0.4) = 0.0025 (the old span-of-good-trials rule said 2 decades)
    b = rb.basin(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.1, 0.5, 0.1005, 0.9]), 0.01)
    assert (b.low, b.high) == (0.0, pytest.approx(0.0025)) and b.open_low


def test_basin_width_is_continuous_and_zero_only_with_zero_eps():
    xs, ys = np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.5, 1.0])
    widths = [rb.basin(xs, ys, eps, absolute=True).width for eps in (0.0, 0.05, 0.1, 0.25, 0.5)]
    assert widths == pytest.approx([0.0, 0.2, 0.4, 1.0, 2.0])  # 2 eps / 0.5 per side


# --- sensitivity -----------------------------------------------------------------------------------


GRID = np.array([-4.0, -3.5, -3.0, -2.5, -2.0])
VALUES = np.array([0.9, 0.5, 0.3, 0.4, 0.8])


def test_window_sensitivity_is_wortsmans_mean_over_the_grid_points_in_the_window():
    # window 1 decade around the best (-3): K = 1 / 0.5 = 2, points -3.5, -3, -2.5
    # mean(0.5, 0.3, 0.4) - 0.3 = 0.1
    assert rb.window_sensitivity(GRID, VALUES, l0=0.7, width=1.0) == (pytest.approx(0.1), "")
    # window 2 decades: the whole grid, clipped at L0 = 0.7: mean(0.7, 0.5, 0.3, 0.4, 0.7) - 0.3 = 0.22
    assert rb.window_sensitivity(GRID, VALUES, l0=0.7, width=2.0) == (pytest.approx(0.22), "")


def test_window_sensitivity_interpolates_a_gap():
    # -2.5 missing: median spacing 0.5 (diffs 0.5, 0.5, 1.0), so K = 2 and -2.5 is read off the line
    # from (-3, 0.3) to (-2, 0.8): 0.55; mean(0.5, 0.3, 0.55) - 0.3 = 0.15
    xs, ys = np.array([-4.0, -3.5, -3.0, -2.0]), np.array([0.9, 0.5, 0.3, 0.8])
    assert rb.window_sensitivity(xs, ys, l0=1.0, width=1.0) == (pytest.approx(0.15), "")


def test_window_sensitivity_is_nan_with_the_reason_when_the_window_leaves_the_sweep():
    value, why = rb.window_sensitivity(GRID, np.array([0.9, 0.5, 0.4, 0.35, 0.3]), l0=1.0, width=1.0)
    assert math.isnan(value) and "reaches past the values swept" in why  # the optimum sits at the edge, -2
    value, why = rb.window_sensitivity(GRID[:2], VALUES[:2], l0=1.0, width=0.5)
    assert math.isnan(value) and "3 or more" in why


def test_mean_sensitivity_over_a_whole_sweep_clips_at_l0():
    # mean(min(0.3, 0.7), min(0.5, 0.7), min(0.9, 0.7)) - 0.3 = 0.5 - 0.3
    assert rb.mean_sensitivity(np.array([0.3, 0.5, 0.9]), l0=0.7) == (pytest.approx(0.2), "")
    assert math.isnan(rb.mean_sensitivity(np.array([0.3]), l0=0.7)[0])


def test_headroom_and_when_it_is_a_lower_bound():
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    # the largest lr that completed is 0.1, ten times the best 0.01; 1.0 diverged: bounded
    assert rb.headroom(lrs, [True, True, True, False], 1e-2) == (pytest.approx(10.0), False)
    # nothing failed: the largest swept completed, so the headroom is at least 100
    assert rb.headroom(lrs, [True] * 4, 1e-2) == (pytest.approx(100.0), True)
    assert math.isnan(rb.headroom(lrs, [False] * 4, 1e-2)[0])


# --- random search ---------------------------------------------------------------------------------


def test_best_of_k_weights_are_the_probabilities_of_each_order_statistic():
    # n = 3, k = 2: P(min is the j-th smallest) = (3/3)^2 - (2/3)^2, (2/3)^2 - (1/3)^2, (1/3)^2 = 5/9, 3/9, 1/9
    np.testing.assert_allclose(rb.best_of_k_weights(3, np.array([2])), [[5 / 9, 3 / 9, 1 / 9]])
    assert rb.best_of_k_weights(7, np.arange(1, 8)).sum(axis=1) == pytest.approx(np.ones(7))


def test_bootstrap_band_of_expected_best_of_k():
    # two values 0 and 1: a resample is {0,0}, {0,1} or {1,1} (1/4, 1/2, 1/4); E_1 is 0, 0.5 or 1 and
    # E_2 is 0, 0.25 or 1, so the 90% band is [0, 1] at both budgets
    lo, hi = rb.expected_best_band([0.0, 1.0], resamples=2000)
    np.testing.assert_allclose(lo, [0.0, 0.0])
    np.testing.assert_allclose(hi, [1.0, 1.0])
    # equal values leave no spread; the band is seeded (the same twice) and empty without resamples
    lo, hi = rb.expected_best_band([0.3, 0.3, 0.3], resamples=50)
    np.testing.assert_allclose(lo, [0.3] * 3) and np.testing.assert_allclose(hi, [0.3] * 3)
    values = np.random.default_rng(1).uniform(size=12)
    first, again = rb.expected_best_band(values, [1, 4]), rb.expected_best_band(values, [1, 4])
    np.testing.assert_array_equal(first[0], again[0])
    assert rb.expected_best_band(values, resamples=0)[0].size == 0


def test_bootstrap_band_contains_the_expected_best_curve():
    values = np.random.default_rng(0).normal(size=20)
    ks = np.arange(1, 21)
    w = rb.best_of_k_weights(20, ks)
    curve = w @ np.sort(values)
    lo, hi = rb.expected_best_band(values, ks, resamples=500)
    assert (lo <= curve + 1e-12).all() and (curve <= hi + 1e-12).all()


def test_cumulative_performance_weights_early_uniform_late():
    curve = [3.0, 2.0, 1.0]
    assert rb.cumulative_performance(curve, "early") == pytest.approx((3 * 3 + 2 * 2 + 1 * 1) / 6)
    assert rb.cumulative_performance(curve, "uniform") == pytest.approx(2.0)
    assert rb.cumulative_performance(curve, "late") == pytest.approx((3 * 1 + 2 * 2 + 1 * 3) / 6)


def test_alpha_tunability_is_the_budget_fraction_that_gets_within_alpha():
    # loss: within 5% of 0.3 means <= 0.315: reached at k = 3 of 4
    assert rb.alpha_tunability([0.5, 0.4, 0.31, 0.3], 0.3, 0.95, "min") == (pytest.approx(0.75), "")
    # accuracy: >= 0.95 * 0.95 = 0.9025 never; >= 0.9 * 0.95 = 0.855 at k = 3 of 3
    assert rb.alpha_tunability([0.8, 0.85, 0.9], 0.95, 0.95, "max") == (math.inf, "")
    assert rb.alpha_tunability([0.8, 0.85, 0.9], 0.95, 0.9, "max") == (pytest.approx(1.0), "")
    assert math.isnan(rb.alpha_tunability([-1.0, -2.0], -2.0, 0.95, "min")[0])


@pytest.mark.parametrize("values", [[0.3, 0.1, 0.2], [1.0, 1.0, 2.0, 5.0]])
def test_best_of_k_weights_match_brute_force(values: list[float]):
    for k in (1, 2, 3):
        brute = np.mean([min(c) for c in itertools.product(values, repeat=k)])
        assert rb.best_of_k_weights(len(values), np.array([k]))[0] @ np.sort(values) == pytest.approx(brute)


def test_window_sensitivity_on_rounded_grid_values_covers_a_window_that_ends_on_a_grid_point():
    # the sweep's learning rates are 10^(j/2) to 6 significant digits: log10(0.00316228) is -2.49999996,
    # so the window [-3, -2] around it ends 4e-8 past the last point, which still covers it
    xs = np.log10([0.000316228, 0.001, 0.00316228, 0.01])
    value, why = rb.window_sensitivity(xs, np.array([0.11, 0.04, 0.025, 0.028]), l0=0.9, width=1.0)
    assert why == "" and value == pytest.approx((0.04 + 0.025 + 0.028) / 3 - 0.025)


def test_the_bootstrap_band_does_not_depend_on_the_order_of_the_trials() -> None:
    values = [0.3, 0.1, 0.5, 0.2, 0.9, 0.4]
    lo, hi = rb.expected_best_band(values, [1, 2, 3], 100)
    lo_r, hi_r = rb.expected_best_band(values[::-1], [1, 2, 3], 100)
    assert np.array_equal(lo, lo_r) and np.array_equal(hi, hi_r)
