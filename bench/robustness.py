"""Robustness to hyperparameters, as formulas on plain arrays: how wide the good learning rates are, how
much a wrong value costs, how far the learning rate can grow before training diverges, and how much
random-search budget an optimizer needs. Pure: numpy in, numbers out; `bench.score` applies them to
the trials table and docs/robustness.md explains when each one is meaningful.

Conventions:

- Values are *oriented* (lower is better: a `mode: max` metric is negated by the caller) and *filled*:
  a failed trial counts as L0, the value a failed trial costs (the task's metric at chance or at
  initialization, `bench.tasks.base.TaskEntry.failure`), and every value is clipped at L0, as Wortsman
  et al. 2023 clip the loss at its value at initialization: min(L, L0).
- A *curve* is a 1-D sweep: positions x on the swept axis, in log10 of the value on log axes (so that
  widths are in decades), with one value per position (the mean when a position was run more than
  once). Points are joined by straight lines in (x, value): the *interpolated* curve.
- A score that the data cannot support is NaN with the reason (`Scored`), never a number that is
  degenerate by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Scored = tuple[float, str]  # (value, why it is NaN; "" when it is a number)


# ---------------------------------------------------------------------------------------------------
# 1-D sweep curves


def curve(x: Iterable[float], values: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """A sweep's points as a curve: positions sorted ascending, repeated positions averaged, non-finite
    positions dropped. Values must be filled (no NaN)."""
    xa, va = np.asarray(list(x), dtype=float), np.asarray(list(values), dtype=float)
    keep = np.isfinite(xa)
    xa, va = xa[keep], va[keep]
    if np.isnan(va).any():
        raise ValueError("curve: values contain NaN; fill failed trials first")
    xs, inverse = np.unique(xa, return_inverse=True)
    ys = np.bincount(inverse, weights=va, minlength=xs.size) / np.bincount(inverse, minlength=xs.size)
    return xs, ys


def best_index(ys: np.ndarray) -> int:
    """The best point of a curve (the first, i.e. the smallest x, among equals)."""
    return int(np.argmin(ys))


def edge(xs: np.ndarray, ys: np.ndarray) -> str:
    """ "low" or "high" when the curve's best point is its first or last point (the optimum may lie
    beyond what was swept), "" when it is inside. A curve of one point is at both: "low"."""
    b = best_index(ys)
    return "low" if b == 0 else "high" if b == xs.size - 1 else ""


@dataclass(frozen=True)
class Basin:
    """The interval of x around the optimum where the interpolated curve stays within the tolerance.

    `low`/`high` are its ends; `open_low`/`open_high` say that the curve was still within the tolerance
    at the first/last point swept, so the basin may extend further (the width is then a lower bound).
    """

    width: float
    low: float
    high: float
    open_low: bool
    open_high: bool

    @property
    def censored(self) -> bool:
        return self.open_low or self.open_high


def basin(xs: np.ndarray, ys: np.ndarray, eps: float, *, absolute: bool = False) -> Basin:
    """The basin of a curve: from its best point y* = min y, walk outwards along the interpolated curve
    while it stays at or below the threshold tau = y* + eps |y*| (relative, the default) or y* + eps
    (absolute). At the first point above tau, the end is where the line between it and its neighbour
    crosses tau: for neighbours (x_i, y_i <= tau) and (x_o, y_o > tau),

        x_end = x_i + (x_o - x_i) (tau - y_i) / (y_o - y_i)

    The width is x_high - x_low (decades on a log axis), a continuous number: 0 only when eps is 0 and
    the best point is alone. The basin is contiguous: a bad point between two good ones ends it. A
    curve with a gap (a point missing from the grid) is interpolated across the gap.
    """
    if xs.size == 0:
        raise ValueError("basin: empty curve")
    b = best_index(ys)
    tau = ys[b] + (eps if absolute else eps * abs(ys[b]))
    ends = []
    for step in (-1, 1):
        i = b
        while 0 <= i + step < xs.size and ys[i + step] <= tau:
            i += step
        o = i + step
        if not 0 <= o < xs.size:
            ends.append((xs[i], True))
        else:
            ends.append((xs[i] + (xs[o] - xs[i]) * (tau - ys[i]) / (ys[o] - ys[i]), False))
    (lo, open_lo), (hi, open_hi) = ends
    return Basin(float(hi - lo), float(lo), float(hi), open_lo, open_hi)


def window_sensitivity(xs: np.ndarray, ys: np.ndarray, l0: float, width: float) -> Scored:
    """Wortsman et al. 2023's sensitivity, over a window of `width` (decades, on a log axis) centred on
    the curve's own optimum x*, so that optimizers with different optima and ranges compare alike:

        S = (1 / (K + 1)) sum_{k=0..K} [ min(L~(x_k), L0) - L* ],   x_k = x* + width (k / K - 1/2)

    with L* = min L the best value of the curve, L~ the interpolated curve, and K = round(width / d)
    (at least 2) for d the median spacing of the swept positions, so that on a uniform grid the x_k are
    the grid's own points and S is Wortsman's mean over the learning rates swept, restricted to the
    window. 0: every value in the window is as good as the best; L0 - L*: everything around the optimum
    failed. NaN when the window reaches past the swept positions (an optimum near an edge of the sweep)
    or the curve has fewer than 3 points.
    """
    if xs.size < 3:
        return float("nan"), f"{xs.size} point(s) swept: a window needs 3 or more"
    b = best_index(ys)
    lo, hi = xs[b] - width / 2, xs[b] + width / 2
    tol = 1e-6  # positions are log10 of values rounded to 6 significant digits (bench.sweep.lr_at)
    if lo < xs[0] - tol or hi > xs[-1] + tol:
        return float("nan"), (
            f"the optimum is within {width / 2:g} of an end of the sweep: the window of {width:g} around "
            "it reaches past the values swept"
        )
    spacing = float(np.median(np.diff(xs)))
    k = max(2, round(width / spacing))
    at = xs[b] + width * (np.arange(k + 1) / k - 0.5)
    return float(np.mean(np.minimum(np.interp(at, xs, ys), l0)) - ys[b]), ""


def mean_sensitivity(ys: np.ndarray, l0: float) -> Scored:
    """Wortsman et al. 2023's sensitivity over every point of a sweep: mean_i min(L_i, L0) - L*. For an
    axis without a scale to centre a window on (a linear or categorical hyperparameter, the warmup): the
    swept values are then the suite's, the same for every optimizer that sweeps the axis."""
    if ys.size < 2:
        return float("nan"), f"{ys.size} point(s) swept"
    return float(np.mean(np.minimum(ys, l0)) - ys.min()), ""


def headroom(lrs: Sequence[float], completed: Sequence[bool], best_lr: float) -> tuple[float, bool]:
    """Stability headroom: the largest learning rate whose trial completed (did not diverge or fail)
    divided by the best learning rate. Returns (ratio, censored): censored when that lr is also the
    largest swept, so no failure bounds it and the true headroom may be larger. NaN when nothing
    completed."""
    lr = np.asarray(lrs, dtype=float)
    ok = np.asarray(completed, dtype=bool) & np.isfinite(lr)
    if not ok.any() or not np.isfinite(best_lr) or best_lr <= 0:
        return float("nan"), False
    largest = lr[ok].max()
    return float(largest / best_lr), bool(largest >= np.nanmax(lr))


# ---------------------------------------------------------------------------------------------------
# Random search: expected best of k, its bootstrap band, tunability


def best_of_k_weights(n: int, ks: np.ndarray) -> np.ndarray:
    """w[k, j]: the probability that the best of k draws with replacement from n sorted values is the
    j-th smallest, ((n - j + 1) / n)^k - ((n - j) / n)^k (Dodge et al. 2019, "Show your work")."""
    j = np.arange(1, n + 1)
    kk = np.asarray(ks, dtype=float)[:, None]
    return ((n - j + 1) / n) ** kk - ((n - j) / n) ** kk


def expected_best_band(
    values: Sequence[float] | np.ndarray,
    ks: Sequence[int] | np.ndarray | None = None,
    resamples: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A bootstrap band of the expected best-of-k curve (oriented, filled values) at `ks` (default
    1..n): the n trials are resampled with replacement `resamples` times, E_k is computed for each
    resample, and the band is the (1 - level) / 2 and (1 + level) / 2 quantiles at each k: what a rerun
    of the random search with other draws might have given (Sivaprasad et al. 2020 bootstrap their
    curves alike). Seeded and sorted first, so the band depends on the values alone, not on the order
    the trials were read in: a leaderboard is reproducible. Empty arrays for no values or resamples."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0 or resamples <= 0:
        return np.zeros(0), np.zeros(0)
    kk = np.arange(1, v.size + 1) if ks is None else np.asarray(ks)
    rng = np.random.default_rng(seed)
    draws = np.sort(v[rng.integers(0, v.size, size=(resamples, v.size))], axis=1)
    w = best_of_k_weights(v.size, kk)  # (k, j)
    if np.isfinite(draws).all():
        curves = draws @ w.T  # (resample, k)
    else:  # +inf (a task where nothing completed and no failure cost is declared): 0 * inf is not 0
        curves = np.stack([np.where(w > 0, d * w, 0.0).sum(axis=1) for d in draws])
    q = np.quantile(curves, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return q[0], q[1]


def cumulative_performance(curve_k: Sequence[float] | np.ndarray, scheme: str = "early") -> float:
    """Sivaprasad et al. 2020's omega-tunability: a weighted average of the expected best-of-k curve over
    the budgets k = 1..K, sum_k w_k E_k with sum_k w_k = 1. "early" (CPE, their headline):
    w_k proportional to K - k + 1, so a method that is good after few trials scores well; "uniform"
    (CPU); "late" (CPL): w_k proportional to k. In the metric's units; NaN for an empty curve."""
    c = np.asarray(curve_k, dtype=float)
    if c.size == 0:
        return float("nan")
    k = np.arange(1, c.size + 1)
    w = {"early": c.size - k + 1.0, "uniform": np.ones(c.size), "late": k.astype(float)}[scheme]
    return float(np.sum(w * c) / w.sum())


def alpha_tunability(curve_k: Sequence[float] | np.ndarray, best: float, alpha: float, mode: str) -> Scored:
    """Sivaprasad et al. 2020's alpha-tunability: the smallest budget fraction k / K at which the
    expected best-of-k curve (natural units) gets within a relative 1 - alpha of `best`:
    E_k >= alpha best for a metric to maximize, E_k <= (2 - alpha) best for one to minimize. With `best`
    the best E_K of every optimizer on the task (their "global" variant) it compares optimizers; 1 when
    only the whole budget gets there, +inf when it never does. Assumes a positive metric (a loss, an
    error, an accuracy); NaN otherwise."""
    c = np.asarray(curve_k, dtype=float)
    if c.size == 0:
        return float("nan"), "no trials"
    if not np.isfinite(best) or best <= 0:
        return float("nan"), "needs a positive metric"
    reached = c >= alpha * best if mode == "max" else c <= (2.0 - alpha) * best
    hit = np.flatnonzero(reached)
    return (float((hit[0] + 1) / c.size) if hit.size else float("inf")), ""
