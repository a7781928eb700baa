"""bench.stats on hand-made tables: the tests agree with scipy's where scipy has them, the floor and the
margin do what the docstring says, detectable effects have the stated power, and the corrections match
hand computations (Holm 1979, Benjamini & Hochberg 1995)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.stats import Sample, adjust, detectable_effect, holm, paired_test, per_test_level, unpaired_test

CURRENT = [3.20, 3.31, 3.12, 3.26]  # per seed, lower is better
BASELINE = [3.10, 3.18, 3.05, 3.19]  # the same seeds


def test_paired_test_is_scipys_paired_t_test():
    t = paired_test(CURRENT, BASELINE)
    ref = sps.ttest_rel(CURRENT, BASELINE, alternative="greater")
    assert t.method == "paired t" and t.n == (4,) and t.df == 3
    assert t.effect == pytest.approx(np.mean(np.subtract(CURRENT, BASELINE)))
    assert t.statistic == pytest.approx(ref.statistic) and t.p == pytest.approx(ref.pvalue)
    assert not t.floored


def test_paired_margin_shifts_the_null():
    d = np.subtract(CURRENT, BASELINE)  # mean 0.0925
    t = paired_test(CURRENT, BASELINE, margin=0.05)
    ref = sps.ttest_1samp(d - 0.05, 0.0, alternative="greater")
    assert t.p == pytest.approx(ref.pvalue)
    assert paired_test(CURRENT, BASELINE, margin=0.2).p > 0.5  # worse, but by less than the margin


def test_pairing_sees_through_seed_to_seed_noise_that_hides_the_change_unpaired():
    # seeds differ a lot (0.1-0.3) but every seed got worse by about 0.02
    base = [2.9, 3.1, 3.3, 3.0, 3.2]
    cur = [b + e for b, e in zip(base, [0.021, 0.019, 0.022, 0.018, 0.020], strict=True)]
    assert paired_test(cur, base).p < 1e-4
    assert unpaired_test(Sample.of(cur), Sample.of(base)).p > 0.3


def test_welch_is_scipys_welch_test():
    x, y = Sample.of(CURRENT), Sample.of([3.0, 3.3, 3.1])
    t = unpaired_test(x, y, margin=0.01)
    ref = sps.ttest_ind_from_stats(
        x.mean - 0.01, x.std, x.n, y.mean, y.std, y.n, equal_var=False, alternative="greater"
    )
    assert t.method == "Welch t" and t.n == (4, 3)
    assert t.statistic == pytest.approx(ref.statistic) and t.p == pytest.approx(ref.pvalue)
    # Welch-Satterthwaite degrees of freedom, by hand
    vx, vy = x.std**2 / 4, y.std**2 / 3
    assert t.df == pytest.approx((vx + vy) ** 2 / (vx**2 / 3 + vy**2 / 2))


def test_the_floor_replaces_a_smaller_std_and_only_then():
    # zero spread of the differences (deterministic reruns): exact without a floor
    same = paired_test([1.02, 1.02, 1.02], [1.0, 1.0, 1.0])
    assert same.se == 0 and same.p == 0.0
    assert paired_test([1.0, 1.0], [1.0, 1.0]).p == 1.0
    floored = paired_test([1.02, 1.02, 1.02], [1.0, 1.0, 1.0], floor=0.01)
    assert floored.floored and floored.se == pytest.approx(0.01 / math.sqrt(3))
    assert floored.p == pytest.approx(sps.t.sf(0.02 / (0.01 / math.sqrt(3)), 2))
    noisy = paired_test(CURRENT, BASELINE, floor=1e-6)  # a floor below the measured std changes nothing
    assert not noisy.floored and noisy.p == pytest.approx(paired_test(CURRENT, BASELINE).p)


def test_single_values_need_a_floor_and_then_are_a_z_test():
    assert paired_test([3.1], [3.0]) is None
    assert unpaired_test(Sample.of([3.1]), Sample.of([3.0])) is None
    z = unpaired_test(Sample.of([3.1]), Sample.of([3.0]), floor=0.05)
    assert z.method == "z (noise floor)" and math.isinf(z.df)
    assert z.p == pytest.approx(sps.norm.sf(0.1 / (0.05 * math.sqrt(2))))
    one = paired_test([3.1], [3.0], floor=0.05)
    assert one.p == pytest.approx(sps.norm.sf(0.1 / 0.05))
    # one side measured, the other a single value with a known sigma: the df come from the measured side
    mixed = unpaired_test(Sample.of(CURRENT), Sample.of([3.0]), floor=0.01)
    assert mixed.method == "Welch t" and mixed.df > 3  # Satterthwaite: more than the measured side's 3


def test_detectable_effect_has_the_stated_power():
    assert detectable_effect(1.0, math.inf, 0.05, 0.8) == pytest.approx(1.6449 + 0.8416, abs=1e-3)
    assert detectable_effect(0.0, 3, 0.05) == 0.0
    assert detectable_effect(0.5, 4, 0.05, margin=0.1) == pytest.approx(
        0.1 + (sps.t.ppf(0.95, 4) + sps.t.ppf(0.8, 4)) * 0.5
    )
    # exact for the z-test: at D = mde, P(reject at alpha) = power
    se, alpha = 0.02, 0.01
    mde = detectable_effect(se, math.inf, alpha, 0.9)
    assert sps.norm.sf(sps.norm.ppf(1 - alpha) - mde / se) == pytest.approx(0.9)
    t = paired_test(CURRENT, BASELINE, margin=0.05)
    assert t.detectable(0.05) == pytest.approx(detectable_effect(t.se, 3, 0.05, 0.8, 0.05))
    with pytest.raises(ValueError):
        detectable_effect(1.0, 3, 1.5)


def test_floored_test_keeps_its_level_and_holm_its_family_wise_rate():
    rng = np.random.default_rng(0)
    sims, m, alpha = 4000, 10, 0.05
    # unchanged code, 3 paired seeds, true D exactly at the margin: rejections at most alpha
    d = rng.normal(0.01, 0.02, size=(sims, 3))
    p = np.array([paired_test(row, np.zeros(3), margin=0.01, floor=0.015).p for row in d])
    assert (p < alpha).mean() <= alpha + 0.01
    # 10 independent unchanged rows: any flag without a correction is common, with Holm at most alpha
    p = rng.uniform(size=(sims, m))
    assert (p < alpha).any(axis=1).mean() > 0.35
    assert (np.array([holm(row) for row in p]) <= alpha).any(axis=1).mean() <= alpha + 0.01


def test_holm_and_bh_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005 0.01 0.03 0.04 -> x4 x3 x2 x1 = 0.02 0.03 0.06 0.04 -> running max
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust(p, "holm") == pytest.approx(holm(p))
    # BH: m/i * p = 0.02 0.02 0.04 0.04 -> running min from the top
    assert adjust(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust(p, "none") == pytest.approx(p)
    assert holm([]).size == 0 and adjust([], "bh").size == 0
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="unknown correction"):
        adjust(p, "bonferroni")  # type: ignore[arg-type]


def test_per_test_level():
    assert per_test_level(0.05, 5, "holm") == pytest.approx(0.01)
    assert per_test_level(0.05, 5, "bh") == pytest.approx(0.01)
    assert per_test_level(0.05, 5, "none") == 0.05
    assert per_test_level(0.05, 1) == 0.05


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_test([1.0, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        Sample.of([])
