"""Significance for `bench check`: one-sided tests with a margin and a noise floor, the smallest effect a
test could have detected, and corrections for testing many (task, optimizer) pairs at once.

Pure: numbers in, numbers out (numpy and scipy.stats; no pandas, no I/O). `bench.check` decides what is
compared; this module only says how surely a difference exceeds a margin.

**The question.** Every test asks whether a difference D, oriented so that a positive D is what is being
looked for ("the current run is worse than the baseline", "this optimizer beats the reference"),
exceeds a margin delta >= 0:

    H0: D <= delta        H1: D > delta

This is a one-sided test against a shifted null (a non-inferiority/superiority margin; Wellek 2010,
*Testing Statistical Hypotheses of Equivalence and Noninferiority*, ch. 2). The margin is the change
the suite calls too small to matter (`rel_tol * |baseline|`, `abs_tol`), so a consistent but tiny change,
which deterministic hardware measures with zero spread, is not a regression. With delta = 0 it is the
ordinary one-sided test.

**The statistic.** T = (d - delta) / se against Student's t with `df` degrees of freedom (the normal when
df is infinite); p = P(T_df >= t) = `scipy.stats.t.sf(t, df)`.

- `paired_test` (the same seeds on both sides: the same initialisation and data order, so the seed-to-seed
  variance cancels; Student 1908, the paired t-test of `scipy.stats.ttest_rel`): d_i = x_i - y_i over the
  n common seeds, d = mean(d_i), s = max(sd(d_i, ddof=1), floor), se = s / sqrt(n), df = n - 1. A single
  pair has no sample std: with a floor it is a z-test with sigma = floor (df = inf), else no test.
- `unpaired_test` (Welch 1947, `scipy.stats.ttest_ind_from_stats(equal_var=False)`): d = mean_x - mean_y;
  each side contributes v = max(s, floor)^2 / n, se = sqrt(v_x + v_y), and the Welch-Satterthwaite
  degrees of freedom (Satterthwaite 1946) df = (v_x + v_y)^2 / (v_x^2 / (n_x - 1) + v_y^2 / (n_y - 1)).
  A side with a single value has no sample std: its sigma is the floor, taken as known, so it adds
  floor^2 to se^2 and nothing to the df denominator. Two such sides give the z-test with a known sigma
  that modded-nanogpt uses to compare two records.

scipy's test functions take neither a floor nor known-sigma sides, so the statistic is computed here and
only the distributions come from scipy; tests/test_stats.py checks that both agree with
`ttest_rel`/`ttest_ind_from_stats` wherever those apply.

**The noise floor.** A check has few seeds (2-5) and a std estimated from them is unreliable; on a CPU
reruns are bit-identical and the spread of paired differences is exactly 0. Like modded-nanogpt, which
pins its run-to-run sigma (0.0013 in validation loss) measured over many runs and accepts a record when
(target - mean) * sqrt(n) >= 0.004, i.e. z >= 3.1, a suite pins `check.noise_floor` per task and the std
used is never below it. Replacing s by max(s, floor) keeps the level: for t > 0 the statistic is never
larger than Student's, so H0 is rejected no more often than by the exact test (the test is conservative).
With no floor and se = 0 the differences are exact: p = 0 when d > delta, else 1.

**The smallest detectable effect** (Bloom 1995, "Minimum detectable effects", Evaluation Review 19(5);
Cohen 1988, ch. 2): the true D that a one-sided test at level a rejects with probability `power`,

    mde = delta + (t_{1-a, df} + t_{power, df}) * se

(the noncentral t approximated by a shifted central t, as Bloom does; exact for the z-test). A regression
at least this large would have been caught with that probability; a smaller one may pass unnoticed.

**Many comparisons** (`adjust`). A check tests every (task, optimizer) of a suite at once, so unchanged
code would fail somewhere far more often than alpha if each test ran at alpha. bench corrects by Holm
(1979, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6): with the
p-values sorted p_(1) <= ... <= p_(m), the adjusted p~_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)), and a
row fails when p~ <= alpha. Holm controls the family-wise error rate, the probability that *any*
unchanged entry is flagged, at alpha under any dependence between the tests. That is why it is the
default: bench's tests share code, tasks, machines and a reference optimizer, so they are not
independent, and a gate reader needs every flagged row to be individually trustworthy. The alternative
`bh` (Benjamini & Hochberg 1995, JRSS B 57; `scipy.stats.false_discovery_control`) controls the expected
share of false flags among the flags. On unchanged code (every null true) that equals the family-wise
rate, so the gate's false-alarm rate is alpha either way, and BH finds more of several real regressions;
but it is proven only for independent or positively dependent tests, and a row it flags may be a false
one. `none` tests each row at alpha.

Requiring an improvement on *every* row (`bench check` with `check.beat`) needs no correction: the claim
"better on all rows" is the intersection of the rows' alternatives, and rejecting every row's H0 at level
alpha rejects the union of the nulls at level alpha (the intersection-union test; Berger 1982,
"Multiparameter hypothesis testing and acceptance sampling", Technometrics 24(4)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Correction = Literal["holm", "bh", "none"]
CORRECTIONS: tuple[str, ...] = ("holm", "bh", "none")


@dataclass(frozen=True)
class Test:
    """One one-sided test of H1: D > margin. `effect` is the estimate of D; `n` the pairs (paired) or the
    values on each side (unpaired); `df` is inf for a z-test."""

    method: str  # "paired t", "Welch t" or "z (noise floor)"
    effect: float
    margin: float
    se: float
    df: float
    n: tuple[int, ...]
    floored: bool  # the noise floor replaced a smaller (or missing) sample std

    @property
    def statistic(self) -> float:
        """T = (effect - margin) / se (+-inf when se is 0)."""
        excess = self.effect - self.margin
        if self.se > 0:
            return excess / self.se
        return math.inf if excess > 0 else -math.inf

    @property
    def p(self) -> float:
        """One-sided p-value P(T_df >= t) under H0: D = margin."""
        t = self.statistic
        if math.isinf(t):
            return 0.0 if t > 0 else 1.0
        return float(stats.norm.sf(t) if math.isinf(self.df) else stats.t.sf(t, self.df))

    def detectable(self, alpha: float, power: float = 0.8) -> float:
        """The smallest true D this test rejects at level `alpha` with probability `power` (Bloom 1995)."""
        return detectable_effect(self.se, self.df, alpha, power, self.margin)


def _quantile(q: float, df: float) -> float:
    return float(stats.norm.ppf(q) if math.isinf(df) else stats.t.ppf(q, df))


def detectable_effect(se: float, df: float, alpha: float, power: float = 0.8, margin: float = 0.0) -> float:
    """mde = margin + (t_{1-alpha, df} + t_{power, df}) * se; `margin` itself when se is 0."""
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    if se == 0:
        return margin
    return margin + (_quantile(1 - alpha, df) + _quantile(power, df)) * se


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if not np.isfinite(v).all():
        raise ValueError(f"values must be finite, got {list(values)}")
    return v


def paired_test(
    x: Sequence[float], y: Sequence[float], *, margin: float = 0.0, floor: float = 0.0
) -> Test | None:
    """Paired test of H1: mean(x - y) > margin over matched values (x_i and y_i from the same seed).
    None when it cannot be done: no pair, or a single pair and no floor."""
    xv, yv = _finite(x), _finite(y)
    if xv.shape != yv.shape:
        raise ValueError(f"paired values need equal lengths, got {xv.size} and {yv.size}")
    n = xv.size
    if n == 0 or (n == 1 and floor <= 0):
        return None
    d = xv - yv
    if n == 1:
        return Test("z (noise floor)", float(d[0]), margin, float(floor), math.inf, (1,), True)
    s = float(d.std(ddof=1))
    used = max(s, floor)
    return Test("paired t", float(d.mean()), margin, used / math.sqrt(n), float(n - 1), (n,), used > s)


@dataclass(frozen=True)
class Sample:
    """One side of an unpaired comparison: its mean, sample std (ddof=1; None for a single value) and
    count. `Sample.of(values)` builds it from values."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        v = _finite(values)
        if v.size == 0:
            raise ValueError("a sample needs at least one value")
        return cls(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else None, int(v.size))


def unpaired_test(x: Sample, y: Sample, *, margin: float = 0.0, floor: float = 0.0) -> Test | None:
    """Welch's test of H1: mean_x - mean_y > margin, each std floored at `floor`; a side with one value
    (or no std) counts with sigma = floor as known. None when a side has neither a std nor a floor."""
    parts: list[tuple[float, float]] = []  # (variance of the side's mean, its degrees of freedom)
    floored = False
    for side in (x, y):
        if side.n < 1:
            return None
        if side.n == 1 or side.std is None or not math.isfinite(side.std):
            if floor <= 0:
                return None
            parts.append((floor**2 / side.n, math.inf))
            floored = True
        else:
            used = max(side.std, floor)
            floored = floored or used > side.std
            parts.append((used**2 / side.n, float(side.n - 1)))
    var = sum(v for v, _ in parts)
    denominator = sum(v * v / df for v, df in parts if math.isfinite(df))
    if denominator > 0:
        df = var * var / denominator
    elif all(math.isinf(df) for _, df in parts):
        df = math.inf  # both sigmas known: the z-test
    else:
        df = float(min(d for _, d in parts))  # zero spread on the estimated side(s): their own df
    method = "z (noise floor)" if math.isinf(df) else "Welch t"
    return Test(method, x.mean - y.mean, margin, math.sqrt(var), df, (x.n, y.n), floored)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values: p~_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))."""
    pv = np.asarray(p, dtype=float)
    m = pv.size
    if m == 0:
        return pv
    order = np.argsort(pv, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * pv[order])
    out = np.empty(m)
    out[order] = np.maximum.accumulate(stepped)
    return out


def adjust(p: Sequence[float], method: Correction = "holm") -> np.ndarray:
    """Adjusted p-values for a family of tests: `holm`, `bh` (Benjamini-Hochberg, via scipy) or `none`."""
    pv = np.asarray(p, dtype=float)
    if method == "holm":
        return holm(pv)
    if method == "bh":
        return stats.false_discovery_control(pv, method="bh") if pv.size else pv
    if method == "none":
        return pv
    raise ValueError(f"unknown correction {method!r}; expected one of {', '.join(CORRECTIONS)}")


def per_test_level(alpha: float, m: int, method: Correction = "holm") -> float:
    """The level a lone significant test must meet in a family of m: alpha / m for Holm and BH (their
    strictest step, Bonferroni's), alpha without a correction. Detectable effects are stated at it."""
    return alpha if method == "none" or m <= 1 else alpha / m
