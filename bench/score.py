"""Scores for a table of trials: best results, expected best-of-k, learning-rate sensitivity, success and
divergence rates, time-to-target, performance profiles, and the per-task leaderboard built from them.

Pure: a pandas DataFrame in, numbers out. No I/O, no plotting (report.py draws), no MLflow (track.py
builds the table), so every formula can be checked on a hand-made table.

The trials table (one row per trial run; see the project brief):

    task, optimizer (the suite label)     str
    kind                                  "tune" (a searched configuration) | "seed" (a rerun of the best
                                          configuration of its study on another seed)
    outcome                               completed | pruned | diverged | oom | timeout | error
    value                                 final value of the task metric (NaN when none)
    mode                                  "min" | "max" (one per task)
    target                                value of the metric that counts as reached (NaN: no target)
    lr                                    learning rate of the trial (NaN: none)
    steps_to_target, tokens_to_target,    first validation at which the metric reached the target
    seconds_to_target                     (NaN: never reached)
    optional: trial_id, number, steps, time_s, tokens_per_step, metric (the metric's name), seed,
        failure_value (what a failed trial costs, in the metric's units; NaN: not declared),
        protocol (random | qmc | grid | sweep | tpe | cmaes | defaults; default random), params (the
        searched values), axis, axis_value, axis_scale, warmup (a sweep point's axis, see bench.sweep)

Conventions (every number in a leaderboard follows them):

- Orientation. Internally every value is oriented so that lower is better (`mode: max` is negated);
  everything returned is in the metric's own units again.
- What a failure costs (Wortsman et al. 2023's min(L, L0)). Failed trials (outcome diverged/oom/
  timeout/error, or completed without a finite value) count as L0, the task's *failure value*: the
  metric of a model that learned nothing, at chance or at initialization, which each task declares
  (`failure_value` column, from `TaskEntry.failure`); and every completed value is clipped at L0, so a
  trial worse than chance costs what a failure costs. A task without a declared value falls back to
  the worst finite value of its completed trials over all optimizers and kinds (+inf when none). Failed
  trials stay in every sample (E_k, median, sensitivities): an optimizer that fails pays for it.
- Pruned trials are censored: we do not know what they would have reached. They are counted (n_trials,
  n_pruned) but excluded from every sample and from the denominators of the rates.
- `best` is the best value among the completed trials (NaN when none completed), not clipped.
- Expected best-of-k (Dodge et al. 2019, "Show your work"), the median and the tunability scores assume
  the tune trials are i.i.d. draws from the search space (an unbiased sampler: random or QMC, two
  trials or more); for other protocols they are NaN with the reason (`why_random`). E_k with k > n is
  not reported (NaN).
- Robustness (see "Robustness" below and bench.robustness): learning-rate curves, sensitivities,
  headroom and edges need a 1-D sweep; importance needs searched trials. NaN with the reason otherwise.
- Seeds: `seed_mean`/`seed_std` are over the kind "seed" rows only (sample std, ddof=1). The tune trial
  that picked the configuration is left out: being chosen as the minimum biases it low.
- Time-to-target of a (task, optimizer) is that of its best configuration: the median over its seed
  reruns when there are any, else the best tune trial's. +inf: never reached; NaN: no target (or, for
  tokens, no token count). Seconds are wall-clock time, which measures the machine's load as much as
  the optimizer (on a shared 2-core machine one run gave adamw 28.3 s and lion 0.64 s to the same
  target): unless the leaderboard spec says `wall_clock: true` (every trial ran alone on a quiet,
  dedicated machine) seconds_to_target is NaN (not measured) and no seconds profile is computed.
- Ranks (per task) use the seed mean when there are seed reruns, else the tune best. Two optimizers tie
  when their values are equal or differ by no more than the combined std of their seeds,
  sqrt(std_a^2 + std_b^2) (0 without reruns). Ties are judged against the first optimizer of the tie
  group (no chaining) and share its rank (competition ranking: 1, 1, 3). No completed trial ranks last.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from bench import robustness
from bench.outcomes import FAILED, OUTCOMES
from bench.records import COST_METRICS, KINDS
from bench.robustness import Scored
from bench.schema import LeaderboardSpec

Mode = Literal["min", "max"]

TTT: tuple[str, ...] = ("steps", "tokens", "seconds")  # the units of time-to-target

REQUIRED = ("task", "optimizer", "kind", "outcome", "value", "mode")
_PREPARED = "_filled"  # marker column: the table went through `prepare`


# ---------------------------------------------------------------------------------------------------
# Formulas on plain arrays


def _orient(values: Iterable[float], mode: Mode) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return v if mode == "min" else -v


def expected_best_curve(
    values: Iterable[float], ks: Iterable[int] | None = None, mode: Mode = "min"
) -> np.ndarray:
    """Expected best of k configurations drawn at random (with replacement) from the n trials.

    With the oriented values sorted ascending m_(1) <= ... <= m_(n):

        E_k = sum_j m_(j) * [((n-j+1)/n)^k - ((n-j)/n)^k]

    (the bracket is the probability that the best of k draws is the j-th smallest). E_1 is the mean;
    E_k decreases to min(values) as k grows. `ks` defaults to 1..n; the result is in the metric's units.
    Failed trials must already be filled (NaN raises); +inf is allowed and stays +inf while it has
    non-zero weight.
    """
    m = np.sort(_orient(values, mode))
    if np.isnan(m).any():
        raise ValueError("expected_best_curve: values contain NaN; fill failed trials first")
    n = m.size
    ks_arr = np.arange(1, n + 1) if ks is None else np.asarray(list(ks), dtype=float)
    if n == 0:
        return np.full(ks_arr.shape, np.nan)
    if (ks_arr < 1).any():
        raise ValueError("expected_best_curve: k must be >= 1")
    out = np.empty(ks_arr.size)
    chunk = max(1, 2_000_000 // n)  # bounds the (k x n) weight matrix to ~16 MB
    with np.errstate(invalid="ignore"):
        for s in range(0, ks_arr.size, chunk):
            w = robustness.best_of_k_weights(n, ks_arr[s : s + chunk])
            out[s : s + chunk] = np.where(w > 0, w * m, 0.0).sum(axis=1)
    return out if mode == "min" else -out


def expected_best_of_k(values: Sequence[float] | np.ndarray, k: int, mode: Mode = "min") -> float:
    """E_k of `expected_best_curve` for one k (NaN when k exceeds the number of trials)."""
    v = np.asarray(values, dtype=float)
    if k > v.size or v.size == 0:
        return float("nan")
    return float(expected_best_curve(v, [k], mode)[0])


def rank_with_ties(
    values: Sequence[float], stds: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Competition ranks (lower value is better) with ties within the combined std.

    Sorted by value (NaN last), each value joins the tie group of the group's first member when equal to
    it or within sqrt(std_a^2 + std_b^2) of it (NaN std counts as 0), else it starts a new group whose
    rank is its 1-based position. NaNs tie with each other. Returns (ranks, tied) in input order.
    """
    v = np.asarray(values, dtype=float)
    s = np.zeros_like(v) if stds is None else np.nan_to_num(np.asarray(stds, dtype=float), nan=0.0)
    order = sorted(range(v.size), key=lambda i: (np.isnan(v[i]), v[i] if not np.isnan(v[i]) else 0.0))
    ranks = np.zeros(v.size, dtype=int)
    group = np.zeros(v.size, dtype=int)
    leader = -1
    for pos, i in enumerate(order):
        if leader >= 0 and _ties(v[i], s[i], v[leader], s[leader]):
            ranks[i], group[i] = ranks[leader], group[leader]
        else:
            leader, ranks[i], group[i] = i, pos + 1, pos
    sizes = np.bincount(group, minlength=v.size) if v.size else np.zeros(0, dtype=int)
    return ranks, sizes[group] > 1


def _ties(a: float, sa: float, b: float, sb: float) -> bool:
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    if a == b:
        return True
    slack = 1e-12 * max(abs(a), abs(b))  # float round-off: 1.05 - 1.0 > 0.05
    return bool(abs(a - b) <= np.hypot(sa, sb) + slack)


# ---------------------------------------------------------------------------------------------------
# Performance profiles


@dataclass(frozen=True)
class Profile:
    """A performance profile (Dolan & More 2002, as scored by AlgoPerf) over tasks with a target.

    `ratios` (task x optimizer) holds r = time / denominator, +inf when the target was never reached or
    r > r_max. `rho` (optimizer x tau) is the fraction of tasks with r <= tau on the grid `taus` in
    [1, r_max]. `scores` is the exact integral of rho over [1, r_max] divided by (r_max - 1), in [0, 1].
    """

    time: str  # the time-to-target unit: steps, tokens or seconds
    reference: str | None  # None: per-task fastest optimizer is the denominator
    r_max: float
    ratios: pd.DataFrame
    taus: np.ndarray
    rho: pd.DataFrame
    scores: pd.Series

    @property
    def name(self) -> str:
        return self.time if self.reference is None else f"{self.time} vs {self.reference}"

    def rho_at(self, tau: float) -> pd.Series:
        """rho_o(tau) for every optimizer, exactly (not read off the grid)."""
        return (self.ratios <= tau).mean(axis=0)


def performance_profile(
    times: pd.DataFrame,
    r_max: float = 4.0,
    reference: str | None = None,
    *,
    num_points: int = 201,
    time: str = "steps",
) -> Profile:
    """Performance profile of a task x optimizer table of time-to-target (+inf or NaN: never reached).

    r_{o,t} = time_{o,t} / min_o' time_{o',t}; with `reference`, the denominator is the reference's time
    instead, so adding an optimizer never moves another's score. Then r is +inf when the target was not
    reached or r > r_max, rho_o(tau) = fraction of tasks with r_{o,t} <= tau, and

        score_o = integral_1^r_max rho_o(tau) dtau / (r_max - 1)

    computed exactly (rho is a step function: each task adds r_max - max(r, 1) when r <= r_max).
    With a reference, r < 1 (faster than the reference) gets the full credit of r = 1; on a task the
    reference never solves, every optimizer that reaches the target gets r = 1 (it beat the reference)
    and the others +inf, so the task stays in every denominator. A time of 0 counts as r = 1 against a
    denominator of 0. Tasks where nobody reached the target count for nobody.
    """
    if r_max <= 1:
        raise ValueError(f"r_max must be > 1, got {r_max}")
    t_df = times.astype(float)
    if reference is not None and reference not in t_df.columns:
        raise KeyError(f"reference optimizer {reference!r} not in the table: {list(t_df.columns)}")
    t = t_df.to_numpy(dtype=float)
    t = np.where(np.isnan(t), np.inf, t)  # (nan_to_num would also turn inf into the largest float)
    if reference is None:
        d = t.min(axis=1, initial=np.inf)[:, None] if t.size else np.zeros((t.shape[0], 1))
    else:
        d = t[:, [list(t_df.columns).index(reference)]]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = t / d
    r = np.where(np.isfinite(d), r, np.where(np.isfinite(t), 1.0, np.inf))  # denominator never reached
    r = np.where(d == 0, np.where(t == 0, 1.0, np.inf), r)
    r = np.where(np.isnan(r) | (r > r_max), np.inf, r)
    ratios = pd.DataFrame(r, index=t_df.index, columns=t_df.columns)
    taus = np.linspace(1.0, r_max, num_points)
    n_tasks = r.shape[0]
    if n_tasks:
        rho = (r[:, :, None] <= taus[None, None, :]).mean(axis=0)
        credit = np.where(np.isfinite(r), r_max - np.maximum(r, 1.0), 0.0)
        scores = credit.mean(axis=0) / (r_max - 1.0)
    else:
        rho = np.full((r.shape[1], taus.size), np.nan)
        scores = np.full(r.shape[1], np.nan)
    return Profile(
        time=time,
        reference=reference,
        r_max=float(r_max),
        ratios=ratios,
        taus=taus,
        rho=pd.DataFrame(rho, index=t_df.columns, columns=taus),
        scores=pd.Series(scores, index=t_df.columns, name="score"),
    )


# ---------------------------------------------------------------------------------------------------
# Table-level scores


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Validate the trials table and return a copy with the scoring columns added:

    _oriented (lower is better), _failed, _scored (not pruned), _worst (L0: what a failure costs, oriented),
    _declared (the task declared L0), _filled (oriented, clipped at L0, failed -> L0, pruned -> NaN),
    _reached (target reached at some evaluation),
    _ttt_steps/_ttt_tokens/_ttt_seconds (+inf never reached, NaN no target).

    A completed trial whose final value meets the target but has no steps_to_target (no intermediate
    evaluation recorded) reached it at its last step: steps, time_s and steps * tokens_per_step.
    Idempotent.
    """
    if _PREPARED in df.columns:
        return df
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"trials table: missing columns {missing}; has {list(df.columns)}")
    t = df.copy()
    n = len(t)
    numeric = ("target", "lr", "steps_to_target", "tokens_to_target", "seconds_to_target", "steps", "time_s")
    for col in (*numeric, "tokens_per_step"):
        t[col] = pd.to_numeric(t[col], errors="coerce").astype(float) if col in t.columns else np.nan
    if "trial_id" not in t.columns:
        t["trial_id"] = [str(i) for i in range(n)]
    if "number" not in t.columns:
        t["number"] = np.arange(n)
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    for col in ("task", "optimizer", "kind", "outcome", "mode", "trial_id"):
        t[col] = t[col].astype(str)

    bad = sorted(set(t["outcome"]) - set(OUTCOMES))
    if bad:
        raise ValueError(f"trials table: unknown outcome(s) {bad}; expected one of {list(OUTCOMES)}")
    bad = sorted(set(t["kind"]) - set(KINDS))
    if bad:
        raise ValueError(f"trials table: unknown kind(s) {bad}; expected one of {list(KINDS)}")
    bad = sorted(set(t["mode"]) - {"min", "max"})
    if bad:
        raise ValueError(f"trials table: unknown mode(s) {bad}; expected 'min' or 'max'")
    modes = t.groupby("task")["mode"].nunique()
    if (modes > 1).any():
        raise ValueError(f"trials table: tasks with both modes: {sorted(modes.index[modes > 1])}")

    sign = np.where(t["mode"].to_numpy() == "max", -1.0, 1.0)
    oriented = t["value"].to_numpy(dtype=float) * sign
    t["target"] = t.groupby("task")["target"].transform("first")  # one target per task (the first given)
    target = t["target"].to_numpy(dtype=float) * sign
    scored = t["outcome"].to_numpy() != "pruned"
    ok = (t["outcome"].to_numpy() == "completed") & np.isfinite(oriented)
    failed = scored & ~ok
    worst, declared = _failure_cost(t, ok, oriented, sign)
    has_target = np.isfinite(target)

    stt = t["steps_to_target"].to_numpy(dtype=float)
    final_hit = ok & has_target & (oriented <= target) & np.isnan(stt)
    steps = t["steps"].to_numpy(dtype=float)
    ttt = {
        "steps": np.where(final_hit, steps, stt),
        "tokens": np.where(
            final_hit,
            steps * t["tokens_per_step"].to_numpy(dtype=float),
            t["tokens_to_target"].to_numpy(dtype=float),
        ),
        "seconds": np.where(
            final_hit, t["time_s"].to_numpy(dtype=float), t["seconds_to_target"].to_numpy(dtype=float)
        ),
    }
    reached = has_target & ~(np.isnan(ttt["steps"]) & np.isnan(ttt["tokens"]) & np.isnan(ttt["seconds"]))
    t["_oriented"] = oriented
    t["_failed"] = failed
    t["_scored"] = scored
    t["_worst"] = worst
    t["_declared"] = declared
    t["_reached"] = reached
    for unit in TTT:
        t[f"_ttt_{unit}"] = np.where(reached, ttt[unit], np.where(has_target, np.inf, np.nan))
    t[_PREPARED] = np.where(scored, np.where(ok, np.minimum(oriented, worst), worst), np.nan)
    return t


def _failure_cost(
    t: pd.DataFrame, ok: np.ndarray, oriented: np.ndarray, sign: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """L0, the oriented value a failed trial costs, per row (one per task), and whether the task declared
    it: its `failure_value` (the first given), else the worst completed value of the task (+inf: none)."""
    given = pd.to_numeric(t["failure_value"], errors="coerce") if "failure_value" in t.columns else None
    if given is None:
        given = pd.Series(np.nan, index=t.index)
    l0 = (given.astype(float) * sign).groupby(t["task"]).transform("first").to_numpy(dtype=float)
    worst = pd.Series(np.where(ok, oriented, np.nan), index=t.index).groupby(t["task"]).transform("max")
    worst = worst.fillna(np.inf).to_numpy(dtype=float)
    declared = np.isfinite(l0)
    return np.where(declared, l0, worst), declared


def _natural(x: float | np.ndarray, mode: str) -> float | np.ndarray:
    return x if mode == "min" else -x


def outcome_counts(df: pd.DataFrame, kind: str = "tune") -> pd.DataFrame:
    """Trials per (task, optimizer) and outcome: columns n_trials, n_completed, n_pruned, n_diverged,
    n_oom, n_timeout, n_error, n_failed (all failures), n_scored (not pruned)."""
    t = prepare(df)
    t = t[t["kind"] == kind]
    if t.empty:
        cols = ["n_trials", *[f"n_{o}" for o in OUTCOMES], "n_failed", "n_scored"]
        index = pd.MultiIndex.from_tuples([], names=["task", "optimizer"])
        return pd.DataFrame(columns=cols, index=index, dtype=int)
    counts = pd.crosstab([t["task"], t["optimizer"]], t["outcome"])
    counts = counts.reindex(columns=list(OUTCOMES), fill_value=0).add_prefix("n_")
    counts.insert(0, "n_trials", counts.sum(axis=1))
    counts["n_failed"] = counts[[f"n_{o}" for o in FAILED]].sum(axis=1)
    counts["n_scored"] = counts["n_trials"] - counts["n_pruned"]
    # "completed" counts finite completed values; a completed trial without a value is a failure
    n_bad = t[t["_failed"] & (t["outcome"] == "completed")].groupby(["task", "optimizer"]).size()
    if len(n_bad):
        n_bad = n_bad.reindex(counts.index, fill_value=0)
        counts["n_error"] += n_bad
        counts["n_failed"] += n_bad
        counts["n_completed"] -= n_bad
    return counts.astype(int)


def success_rate(df: pd.DataFrame, kind: str = "tune") -> pd.Series:
    """Fraction of scored (not pruned) trials that reached the task's target at some evaluation, per
    (task, optimizer); NaN for tasks without a target or with no scored trial."""
    t = prepare(df)
    t = t[(t["kind"] == kind) & t["_scored"]]
    rate = t.groupby(["task", "optimizer"])["_reached"].mean()
    has_target = t.groupby(["task", "optimizer"])["target"].apply(lambda s: bool(np.isfinite(s).any()))
    return rate.where(has_target).rename("success_rate")


def divergence_rate(df: pd.DataFrame, kind: str = "tune") -> pd.Series:
    """Fraction of scored (not pruned) trials whose outcome is `diverged`, per (task, optimizer)."""
    t = prepare(df)
    t = t[(t["kind"] == kind) & t["_scored"]]
    return (t["outcome"] == "diverged").groupby([t["task"], t["optimizer"]]).mean().rename("divergence_rate")


def lr_profile(df: pd.DataFrame, bin_decades: float = 0.25) -> pd.DataFrame:
    """Best value as a function of the learning rate: tune trials (failed filled, pruned left out) with a
    finite lr > 0 binned by log10(lr) into bins of `bin_decades` aligned at multiples of the width;
    per (task, optimizer, bin): log10_lr (bin centre), best (in the metric's units), n, n_failed."""
    t = prepare(df)
    t = t[(t["kind"] == "tune") & t["_scored"] & np.isfinite(t["lr"]) & (t["lr"] > 0)]
    cols = ["task", "optimizer", "log10_lr", "best", "n", "n_failed"]
    if t.empty:
        return pd.DataFrame(columns=cols)
    b = np.floor(np.log10(t["lr"].to_numpy(dtype=float)) / bin_decades).astype(int)
    g = t.assign(_bin=b).groupby(["task", "optimizer", "_bin"], sort=True)
    out = g.agg(
        best=(_PREPARED, "min"), n=(_PREPARED, "size"), n_failed=("_failed", "sum"), mode=("mode", "first")
    )
    out = out.reset_index()
    out["log10_lr"] = (out["_bin"] + 0.5) * bin_decades
    out["best"] = np.where(out["mode"] == "max", -out["best"], out["best"])
    out["n_failed"] = out["n_failed"].astype(int)
    return out[cols]


def time_to_target(df: pd.DataFrame) -> pd.DataFrame:
    """Time to target of each (task, optimizer)'s best configuration: steps_to_target, tokens_to_target,
    seconds_to_target and ttt_n (the runs behind it). The median over its seed reruns when there are any,
    else the best completed tune trial's. +inf: never reached (or nothing completed); NaN: no target."""
    t = prepare(df)
    has_target = _has_target(t)
    rows = []
    for key, best, seeds in _groups(t):
        rows.append({"task": key[0], "optimizer": key[1], **_ttt(best, seeds, has_target[key[0]])})
    return pd.DataFrame(rows).set_index(["task", "optimizer"])


def _has_target(t: pd.DataFrame) -> pd.Series:
    return t.groupby("task")["target"].first().apply(lambda x: bool(np.isfinite(x)))


def _groups(t: pd.DataFrame) -> list[tuple[tuple[str, str], pd.Series | None, pd.DataFrame]]:
    """(key, best completed tune row or None, scored seed rows) for every (task, optimizer)."""
    tune = t[(t["kind"] == "tune") & t["_scored"] & ~t["_failed"]]
    tune = tune.sort_values(["_oriented", "number", "trial_id"], kind="stable")
    best_rows = tune.groupby(["task", "optimizer"], sort=False).head(1).set_index(["task", "optimizer"])
    seeds = t[(t["kind"] == "seed") & t["_scored"]]
    seed_groups = dict(iter(seeds.groupby(["task", "optimizer"], sort=False)))
    keys = sorted(tuple(k) for k in t[["task", "optimizer"]].drop_duplicates().to_numpy().tolist())
    empty = seeds.iloc[:0]
    return [(k, best_rows.loc[k] if k in best_rows.index else None, seed_groups.get(k, empty)) for k in keys]


def _ttt(best: pd.Series | None, seeds: pd.DataFrame, has_target: bool) -> dict:
    out: dict[str, float] = {}
    for unit in TTT:
        if len(seeds):
            v = seeds[f"_ttt_{unit}"].to_numpy(dtype=float)
            out[f"{unit}_to_target"] = float(np.median(v)) if not np.isnan(v).any() else float("nan")
        elif best is not None:
            out[f"{unit}_to_target"] = float(best[f"_ttt_{unit}"])
        else:
            out[f"{unit}_to_target"] = float("inf") if has_target else float("nan")
    out["ttt_n"] = len(seeds) if len(seeds) else int(best is not None)
    return out


# ---------------------------------------------------------------------------------------------------
# The leaderboard


@dataclass(frozen=True)
class Leaderboard:
    """Everything a report needs, computed once.

    rows: one row per (task, optimizer), ordered by task then rank; columns (values in the metric's units)
        task, optimizer, metric, mode, target,
        n_trials, n_scored, n_completed, n_pruned, n_diverged, n_oom, n_timeout, n_error, n_failed,
        best, best_trial_id, best_lr, median, E_<k> for each k in `ks`, n_seeds, seed_mean, seed_std,
        success_rate, divergence_rate, steps_to_target, tokens_to_target, seconds_to_target, ttt_n,
        rank_value (seed mean if n_seeds else best), rank, tied,
        then the robustness columns (`ROBUST_COLUMNS`, see `robustness_scores`)
    optimizers: one row per optimizer: n_tasks, mean_rank, wins (rank 1, ties included), n_trials,
        n_seeds, mean_robust_rank, robust_by, then profile_<time> and profile_<time>_ref for each profile.
    tasks: one row per task: metric, mode, target, worst (L0, what a failed trial costs), declared
        (whether the task declared it), n_trials, n_seeds, n_optimizers.
    curves: (task, optimizer) -> expected best-of-k for k = 1..n_scored, in the metric's units (random
        and qmc studies of two trials or more only).
    lr_profiles: `lr_profile` of the table. profiles: the `Profile`s for each time unit with data.
    axes: one row per swept axis of each (task, optimizer) (`robustness_scores`); points: the curves
        behind them, one row per point (task, optimizer, axis, scale, at: the axis value, value: in the
        metric's units, filled and clipped, failed: every trial there failed, best: the curve's optimum).
    bands: (task, optimizer) -> (ks, low, high): the bootstrap band of the expected best-of-k curve.
    importances: task, optimizer, param, importance (shares summing to 1 per study).
    """

    rows: pd.DataFrame
    optimizers: pd.DataFrame
    tasks: pd.DataFrame
    curves: Mapping[tuple[str, str], np.ndarray]
    lr_profiles: pd.DataFrame
    profiles: tuple[Profile, ...]
    ks: tuple[int, ...]
    basin_eps: float
    reference: str
    r_max: float
    basin_abs: Mapping[str, float] = field(default_factory=dict)
    axes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=AXIS_COLUMNS))
    bands: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    importances: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=IMPORTANCE_COLUMNS))
    spec: LeaderboardSpec = field(default_factory=LeaderboardSpec)
    points: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=POINT_COLUMNS))
    failure_why: Mapping[str, str] = field(default_factory=dict)  # task -> how its failure cost was set
    seed_values: Mapping[tuple[str, str], Mapping[int, float]] = field(default_factory=dict)  # `seed_values`
    costs: pd.DataFrame | None = None  # `costs`: step time and state bytes, and their ratios to the reference
    wall_clock: bool = False  # seconds to target measured (the spec's `wall_clock`), else NaN

    def row(self, task: str, optimizer: str) -> pd.Series:
        sel = self.rows[(self.rows["task"] == task) & (self.rows["optimizer"] == optimizer)]
        if sel.empty:
            raise KeyError(f"no leaderboard row for task {task!r}, optimizer {optimizer!r}")
        return sel.iloc[0]


def leaderboard(
    df: pd.DataFrame,
    spec: LeaderboardSpec | None = None,
    *,
    basin_abs: Mapping[str, float] | None = None,
    metrics: Mapping[str, str] | None = None,
    lr_bin_decades: float = 0.25,
    importance: Importance | None = None,
    spaces: Mapping[str, Mapping[str, Any]] | None = None,
    failure_why: Mapping[str, str] | None = None,
) -> Leaderboard:
    """Score a trials table (see the module docstring for the columns and conventions).

    spec: ks, basin_eps, reference, r_max, ... (defaults: `bench.schema.LeaderboardSpec()`).
    basin_abs: task -> absolute basin tolerance, replacing `basin_eps` for that task.
    metrics: task -> metric name, when the table has no `metric` column.
    importance: (configurations, oriented values, search space) -> {hyperparameter: share}, e.g.
        `bench.search.importances`; spaces: optimizer label -> its search space (`bench.space` params).
        Without them no importance is computed.
    failure_why: task -> how its failure value was obtained (`TaskSpec.failure_why`), for the report.
    """
    if spec is None:
        spec = LeaderboardSpec()
    ks = tuple(int(k) for k in spec.ks)
    basin_abs = dict(basin_abs or {})
    if len(df) == 0:
        raise ValueError("trials table is empty: nothing to score (did the suite run?)")
    t = prepare(df)
    counts = outcome_counts(t)
    task_mode = t.groupby("task")["mode"].first()
    has_target = _has_target(t)
    task_target = t.groupby("task")["target"].first()
    if "metric" in t.columns:
        task_metric = t.groupby("task")["metric"].first().astype(str)
    else:
        task_metric = pd.Series({k: (metrics or {}).get(k, "value") for k in task_mode.index}, dtype=object)

    tune = t[(t["kind"] == "tune") & t["_scored"]]
    tune_groups = dict(iter(tune.groupby(["task", "optimizer"], sort=False)))
    empty = tune.iloc[:0]
    records: list[dict] = []
    curves: dict[tuple[str, str], np.ndarray] = {}
    for key, best_row, seeds in _groups(t):
        task, opt = key
        mode = task_mode[task]
        g = tune_groups.get(key, empty)
        vals = g[_PREPARED].to_numpy(dtype=float)
        why_random = _why_not_random(g)
        if not why_random:
            curves[key] = _natural(expected_best_curve(vals), mode)
        rec: dict = {"task": task, "optimizer": opt, "metric": task_metric.get(task, "value"), "mode": mode}
        rec["target"] = float(task_target[task])
        if best_row is not None:
            rec["best"] = float(_natural(best_row["_oriented"], mode))
            rec["best_trial_id"] = str(best_row["trial_id"])
            rec["best_lr"] = float(best_row["lr"])
        else:
            rec["best"], rec["best_trial_id"], rec["best_lr"] = np.nan, None, np.nan
        rec["median"] = float(_natural(np.median(vals), mode)) if not why_random else np.nan
        for k in ks:
            rec[f"E_{k}"] = float(curves[key][k - 1]) if not why_random and k <= vals.size else np.nan
        rec["why_random"] = why_random
        sv = seeds[_PREPARED].to_numpy(dtype=float)
        rec["n_seeds"] = int(sv.size)
        rec["seed_mean"] = float(_natural(sv.mean(), mode)) if sv.size else np.nan
        with np.errstate(invalid="ignore"):
            rec["seed_std"] = float(sv.std(ddof=1)) if sv.size > 1 else np.nan
        rec.update(_ttt(best_row, seeds, bool(has_target[task])))
        rec["_rank_value"] = (
            sv.mean() if sv.size else (best_row[_PREPARED] if best_row is not None else np.nan)
        )
        rec["_rank_std"] = rec["seed_std"] if sv.size > 1 else 0.0
        records.append(rec)

    rows = pd.DataFrame.from_records(records)
    rows = rows.merge(counts.reset_index(), on=["task", "optimizer"], how="left")
    rows = rows.merge(success_rate(t).reset_index(), on=["task", "optimizer"], how="left")
    rows = rows.merge(divergence_rate(t).reset_index(), on=["task", "optimizer"], how="left")
    count_cols = list(counts.columns)
    rows[count_cols] = rows[count_cols].fillna(0).astype(int)

    rows["rank"], rows["tied"] = 0, False
    for _, idx in rows.groupby("task").groups.items():
        r, tied = rank_with_ties(
            rows.loc[idx, "_rank_value"].to_numpy(), rows.loc[idx, "_rank_std"].to_numpy()
        )
        rows.loc[idx, "rank"], rows.loc[idx, "tied"] = r, tied
    rows["rank_value"] = np.where(rows["mode"] == "max", -rows["_rank_value"], rows["_rank_value"])
    rows = rows.drop(columns=["_rank_value", "_rank_std"])
    rows = rows.sort_values(["task", "rank", "optimizer"], kind="stable").reset_index(drop=True)
    e_cols = [f"E_{k}" for k in ks]
    order = (
        ["task", "optimizer", "metric", "mode", "target", "rank", "tied", "rank_value"]
        + count_cols
        + ["best", "best_trial_id", "best_lr", "median", *e_cols, "n_seeds", "seed_mean", "seed_std"]
        + ["why_random", "success_rate", "divergence_rate"]
        + [f"{u}_to_target" for u in TTT]
        + ["ttt_n"]
    )
    rows = rows[order]
    robust, axes, bands, importances, points = robustness_scores(
        t, spec, curves, basin_abs, importance, spaces
    )
    rows = rows.merge(robust, on=["task", "optimizer"], how="left")
    # a study whose tune trials were all pruned has no robustness row: nothing to score, and why
    unscored = rows["protocol"].isna()
    for col in ("why_lr", "why_tunability", "why_importance"):
        rows[col] = rows[col].where(~unscored, "no tune trial that was not pruned")
    text = ["protocol", "lr_edge", "why_lr", "why_tunability", "why_importance", "robust_by"]
    rows[text] = rows[text].astype(object).fillna("")

    if not spec.wall_clock:
        rows["seconds_to_target"] = np.nan  # wall-clock time is only trusted on a dedicated machine
    profiles = _profiles(rows, spec.r_max, spec.reference)
    optimizers = _optimizer_summary(rows, profiles)
    tasks = pd.DataFrame(
        {
            "metric": task_metric.reindex(task_mode.index),
            "mode": task_mode,
            "target": task_target,
            "worst": t.groupby("task")["_worst"].first() * np.where(task_mode == "max", -1.0, 1.0),
            "declared": t.groupby("task")["_declared"].first(),
            "n_trials": t[t["kind"] == "tune"].groupby("task").size().reindex(task_mode.index, fill_value=0),
            "n_seeds": t[t["kind"] == "seed"].groupby("task").size().reindex(task_mode.index, fill_value=0),
            "n_optimizers": rows.groupby("task")["optimizer"].nunique().reindex(task_mode.index),
        }
    )
    tasks.index.name = "task"
    tasks = tasks.loc[sorted(tasks.index, key=natural_order)]  # scan points in order: bs4, bs8, ..., bs512
    return Leaderboard(
        rows=rows,
        optimizers=optimizers,
        tasks=tasks,
        curves=curves,
        lr_profiles=lr_profile(t, lr_bin_decades),
        profiles=profiles,
        ks=ks,
        basin_eps=float(spec.basin_eps),
        reference=spec.reference,
        r_max=float(spec.r_max),
        basin_abs=basin_abs,
        axes=axes,
        bands=bands,
        importances=importances,
        spec=spec,
        points=points,
        failure_why=dict(failure_why or {}),
        seed_values=seed_values(t),
        costs=costs(t, spec.reference),
        wall_clock=spec.wall_clock,
    )


def _profiles(rows: pd.DataFrame, r_max: float, reference: str) -> tuple[Profile, ...]:
    """Profiles per time unit over tasks with a target; optimizers missing on a task never reached it."""
    with_target = rows[np.isfinite(rows["target"].astype(float))]
    out: list[Profile] = []
    for unit in TTT:
        # An optimizer that did not run on a task never reached its target (absent cell -> inf). A NaN
        # value means the unit was not measured (tokens on an image task): such tasks are left out of
        # this unit's profile, and a unit with no finite time anywhere gets no profile.
        values = with_target[f"{unit}_to_target"].astype(float).fillna(-1.0)
        times = with_target.assign(_t=values).pivot(index="task", columns="optimizer", values="_t")
        times = times.astype(float).fillna(np.inf).replace(-1.0, np.nan)
        times = times[~times.isna().any(axis=1)]
        if times.empty or not np.isfinite(times.to_numpy()).any():
            continue
        for ref in (None, reference):
            if ref is None or ref in times.columns:
                out.append(performance_profile(times, r_max, ref, time=unit))
    return tuple(out)


def _optimizer_summary(rows: pd.DataFrame, profiles: tuple[Profile, ...]) -> pd.DataFrame:
    g = rows.groupby("optimizer")
    out = pd.DataFrame(
        {
            "n_tasks": g["task"].nunique(),
            "mean_rank": g["rank"].mean(),
            "wins": g["rank"].apply(lambda r: int((r == 1).sum())),
            "n_trials": g["n_trials"].sum(),
            "n_seeds": g["n_seeds"].sum(),
            "mean_robust_rank": g["robust_rank"].mean(),
            "robust_by": g["robust_by"].apply(
                lambda b: ", ".join(sorted({x for x in b if isinstance(x, str) and x}))
            ),
        }
    )
    for p in profiles:
        col = f"profile_{p.time}" + ("_ref" if p.reference else "")
        out[col] = p.scores.reindex(out.index)
    out.index.name = "optimizer"
    return out.sort_values(["mean_rank"], kind="stable")


# ---------------------------------------------------------------------------------------------------
# Robustness: what each protocol can say about how much tuning an optimizer needs (docs/robustness.md)

# (configurations, oriented filled values, search space) -> {hyperparameter: share}; bench.search.importances
Importance = Callable[[list[dict[str, Any]], list[float], Mapping[str, Any]], dict[str, float]]

RANDOM = ("random", "qmc")  # unbiased samplers: E_k, median, tunability
SEARCHED = ("random", "qmc", "tpe", "cmaes")  # samplers over the whole space: importance
MIN_IMPORTANCE_TRIALS = 8
BAND_POINTS = 200  # beyond this many trials, bands are computed at ~100 budgets spread in log k

ROBUST_COLUMNS = (
    "protocol", "lr_points", "lr_edge", "basin_decades", "basin_open", "lr_sensitivity", "headroom",
    "headroom_censored", "why_lr", "cpe", "alpha_tunability", "why_tunability", "top_param",
    "top_importance", "why_importance", "robust_by", "robust_rank",
)  # fmt: skip
AXIS_COLUMNS = (
    "task", "optimizer", "axis", "scale", "n_points", "best_at", "best", "edge", "sensitivity", "why",
)  # fmt: skip
IMPORTANCE_COLUMNS = ("task", "optimizer", "param", "importance")
POINT_COLUMNS = ("task", "optimizer", "axis", "scale", "at", "value", "failed", "best")

_NOT_RANDOM = {
    "sweep": "a sweep's points are grids around the optimum, not random draws",
    "grid": "grid points are not random draws",
    "tpe": "an adaptive sampler's trials depend on earlier results: they describe the search, not the optimizer",
    "cmaes": "an adaptive sampler's trials depend on earlier results: they describe the search, not the optimizer",
    "defaults": "one trial, at the defaults",
}  # fmt: skip


def natural_order(name: Any) -> list[Any]:
    """A sort key that reads the numbers in a name as numbers: `digits_mlp@bs8` before `digits_mlp@bs16`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


def protocol_of(g: pd.DataFrame) -> str:
    """The protocol a study's trials were chosen by (`protocol` column; random when not recorded)."""
    if "protocol" in g.columns:
        for p in g["protocol"]:
            if isinstance(p, str) and p and p != "nan":
                return p
    return "random"


def _why_not_random(g: pd.DataFrame) -> str:
    """Why a study's tune trials (scored) are no random sample, "" when they are one."""
    p = protocol_of(g)
    if p not in RANDOM:
        return f"protocol {p}: {_NOT_RANDOM.get(p, 'not random draws')}"
    return "" if len(g) >= 2 else f"{len(g)} trial(s): a sample needs two or more"


def _lr_only(g: pd.DataFrame) -> bool:
    return "params" in g.columns and all(isinstance(p, Mapping) and set(p) <= {"lr"} for p in g["params"])


def lr_curve_rows(g: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The tune trials of a study that form its learning-rate curve, or why there is none: a sweep's lr
    points, or every trial of a study that searched the lr alone (grid, random, ...)."""
    p = protocol_of(g)
    if "axis" in g.columns and (g["axis"] == "lr").any():
        rows = g[g["axis"] == "lr"]
    elif p == "defaults":
        return g.iloc[:0], "one trial, at the defaults: no learning-rate curve"
    elif _lr_only(g):
        rows = g
    else:
        return g.iloc[:0], (
            f"protocol {p} varies every hyperparameter at once: no learning-rate curve "
            "(use protocol sweep, or search the lr alone)"
        )
    rows = rows[np.isfinite(rows["lr"]) & (rows["lr"] > 0)]
    n = rows["lr"].nunique()
    return (rows, "") if n >= 3 else (g.iloc[:0], f"{n} learning rate(s): a curve needs 3 or more")


class _Axes:
    """Collects the axis rows and curve points of `robustness_scores`."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.points: list[dict[str, Any]] = []

    def add(
        self, g: pd.DataFrame, axis: str, scale: str, x: np.ndarray, sel: pd.DataFrame, at: Any, sens: Scored
    ) -> tuple[np.ndarray, np.ndarray]:
        """One swept axis of study `g`: positions `x` of the trials `sel`; `at(xs)` gives the axis values
        of the curve's positions. Returns the curve (xs, ys)."""
        xs, ys = robustness.curve(x, sel[_PREPARED])
        _, failed = robustness.curve(x, sel["_failed"].astype(float))
        values = at(xs)
        b = robustness.best_index(ys)
        sign = -1.0 if g["mode"].iloc[0] == "max" else 1.0
        task, opt = g["task"].iloc[0], g["optimizer"].iloc[0]
        self.points += [
            {"task": task, "optimizer": opt, "axis": axis, "scale": scale, "at": values[i],
             "value": float(sign * ys[i]), "failed": bool(failed[i] == 1.0), "best": i == b}
            for i in range(xs.size)
        ]  # fmt: skip
        self.rows.append({
            "task": task, "optimizer": opt, "axis": axis, "scale": scale, "n_points": int(xs.size),
            "best_at": values[b], "best": float(sign * ys[b]),
            "edge": robustness.edge(xs, ys) if scale != "choice" else "", "sensitivity": sens[0], "why": sens[1],
        })  # fmt: skip
        return xs, ys


def _lr_scores(
    g: pd.DataFrame, l0: float, spec: LeaderboardSpec, eps_abs: float | None, axes: _Axes
) -> tuple[dict[str, Any], pd.DataFrame, float]:
    """The lr curve's columns (its axis added to `axes`); also its rows and the best lr."""
    rows, why = lr_curve_rows(g)
    out: dict[str, Any] = {"lr_points": int(rows["lr"].nunique()), "why_lr": why}
    if why:
        return out, rows, np.nan
    x = np.log10(rows["lr"].to_numpy(dtype=float))
    xs, ys = robustness.curve(x, rows[_PREPARED])
    sens = robustness.window_sensitivity(xs, ys, l0, spec.sensitivity_decades)
    axes.add(g, "lr", "log", x, rows, lambda xs: 10.0**xs, sens)
    eps = eps_abs if eps_abs is not None else spec.basin_eps
    b = robustness.basin(xs, ys, eps, absolute=eps_abs is not None or spec.basin_absolute)
    best_lr = float(10 ** xs[robustness.best_index(ys)])
    completed = (rows["outcome"] == "completed").to_numpy() & ~rows["_failed"].to_numpy(dtype=bool)
    ratio, censored = robustness.headroom(rows["lr"].to_numpy(dtype=float), completed, best_lr)
    out.update(
        lr_edge=robustness.edge(xs, ys), basin_decades=b.width, basin_open=b.censored,
        lr_sensitivity=sens[0], headroom=ratio, headroom_censored=censored,
    )  # fmt: skip
    return out, rows, best_lr


def _other_axes(
    g: pd.DataFrame, lr_rows: pd.DataFrame, best_lr: float, l0: float, spec: LeaderboardSpec, axes: _Axes
) -> None:
    """A sweep's 1-D sweeps at the best lr: each curve is its points plus the best lr point itself (the
    centre, every other hyperparameter at its default). Sensitivity: windowed on log axes, over the
    whole sweep on linear and categorical ones."""
    if "axis" not in g.columns or not np.isfinite(best_lr):
        return
    centre = lr_rows[np.isclose(lr_rows["lr"], best_lr)].iloc[[0]]
    for axis in sorted(set(g["axis"].dropna().astype(str)) - {"", "lr"}):
        pts = g[g["axis"] == axis]
        scale = str(pts["axis_scale"].iloc[0]) if "axis_scale" in pts.columns else "linear"
        if axis == "warmup":
            middle = centre["warmup"].iloc[0] if "warmup" in centre.columns else np.nan
        else:
            params = centre["params"].iloc[0] if "params" in centre.columns else None
            middle = params.get(axis, np.nan) if isinstance(params, Mapping) else np.nan
        sel = pd.concat([pts, centre])
        values = pd.Series([*pts["axis_value"].tolist(), middle])
        if scale == "choice":
            codes, names = pd.factorize(values.astype(str))
            xs, ys = robustness.curve(codes.astype(float), sel[_PREPARED])
            axes.add(g, axis, scale, codes.astype(float), sel, lambda xs, n=names: np.asarray(n, dtype=object)[xs.astype(int)],
                     robustness.mean_sensitivity(ys, l0))  # fmt: skip
            continue
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        if scale == "log":
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(x > 0, np.log10(x), np.nan)
        xs, ys = robustness.curve(x, sel[_PREPARED])
        if scale == "log":
            sens = robustness.window_sensitivity(xs, ys, l0, spec.sensitivity_decades)
            axes.add(g, axis, scale, x, sel, lambda xs: 10.0**xs, sens)
        else:
            axes.add(g, axis, scale, x, sel, lambda xs: xs, robustness.mean_sensitivity(ys, l0))


def _importance(
    g: pd.DataFrame, importance: Importance | None, space: Mapping[str, Any] | None
) -> tuple[dict[str, float], str]:
    p = protocol_of(g)
    if p not in SEARCHED:
        return {}, (
            "1-D sweeps measure each hyperparameter's sensitivity instead"
            if p == "sweep"
            else f"protocol {p}: {_NOT_RANDOM.get(p, 'no search')}"
        )
    if importance is None or space is None:
        return {}, "not computed (no importance evaluator or search space given)"
    names = list(space)
    if len(names) < 2:
        return {}, f"{len(names)} hyperparameter searched: nothing to compare"
    usable = [
        (dict(c), float(v))
        for c, v in zip(g["params"] if "params" in g.columns else [], g[_PREPARED], strict=False)
        if isinstance(c, Mapping) and all(n in c for n in names) and np.isfinite(v)
    ]
    if len(usable) < MIN_IMPORTANCE_TRIALS:
        return {}, f"{len(usable)} trial(s): importance needs {MIN_IMPORTANCE_TRIALS} or more"
    if len({v for _, v in usable}) < 2:
        return {}, "every trial has the same value"
    found = importance([c for c, _ in usable], [v for _, v in usable], space)
    return found, ""


def robustness_scores(
    t: pd.DataFrame,
    spec: LeaderboardSpec,
    curves: Mapping[tuple[str, str], np.ndarray],
    basin_abs: Mapping[str, float],
    importance: Importance | None = None,
    spaces: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame, pd.DataFrame]:
    """The robustness columns of each (task, optimizer) of a prepared table, from its tune trials (pruned
    left out), in the metric's units unless said; each NaN comes with its reason (`why_*`):

    - lr curve (`lr_curve_rows`; `why_lr`): lr_points; lr_edge ("low"/"high": the best lr is the
      smallest/largest swept, the optimum may lie beyond); basin_decades, the width of the interpolated
      basin within `basin_eps` of the best (`bench.robustness.basin`; basin_open: it reaches an end of
      the sweep, so the width is a lower bound); lr_sensitivity, Wortsman et al. 2023's sensitivity over
      a window of `sensitivity_decades` centred on the optimizer's own best lr; headroom, the largest lr
      that completed over the best lr (headroom_censored: nothing larger failed).
    - random search (`why_tunability`): cpe, Sivaprasad et al. 2020's cumulative performance early
      (a weighted average of the expected best-of-k curve, early budgets weighted most);
      alpha_tunability, the budget fraction at which E_k gets within 1 - alpha of the task's best E_K.
    - importance (`why_importance`): top_param and its share (`importances`: every share).
    - robust_rank: per task, the rank by lr_sensitivity when every optimizer of the task has one, else
      by cpe when every one has it (robust_by says which), NaN otherwise.

    Also returns the axes table (`AXIS_COLUMNS`: one row per swept axis, the lr's included; best_at is
    the axis value at the optimum, sensitivity windowed on log axes and over the whole sweep on linear
    and categorical ones), the expected best-of-k bands ((task, optimizer) -> (ks, low, high), the
    bootstrap 90% band, `spec.bootstrap` resamples), the importance table and the curves' points."""
    tune = t[(t["kind"] == "tune") & t["_scored"]]
    recs: list[dict[str, Any]] = []
    axes = _Axes()
    bands: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    imps: list[dict[str, Any]] = []
    for (task, opt), g in tune.groupby(["task", "optimizer"], sort=True):
        mode, l0 = str(g["mode"].iloc[0]), float(g["_worst"].iloc[0])
        rec: dict[str, Any] = {"task": task, "optimizer": opt, "protocol": protocol_of(g)}
        lr_cols, lr_rows, best_lr = _lr_scores(g, l0, spec, basin_abs.get(task), axes)
        rec.update(lr_cols)
        _other_axes(g, lr_rows, best_lr, l0, spec, axes)
        rec["why_tunability"] = _why_not_random(g)
        if not rec["why_tunability"]:
            c = np.asarray(curves[(task, opt)], dtype=float)
            rec["cpe"] = robustness.cumulative_performance(c, "early")
            vals = g[_PREPARED].to_numpy(dtype=float)
            ks = np.arange(1, vals.size + 1)
            if vals.size > BAND_POINTS:
                ks = np.unique(np.geomspace(1, vals.size, 100).round().astype(int))
            lo, hi = robustness.expected_best_band(vals, ks, spec.bootstrap)
            if lo.size:
                bands[(task, opt)] = (ks, *((lo, hi) if mode == "min" else (-hi, -lo)))
        found, rec["why_importance"] = _importance(g, importance, (spaces or {}).get(opt))
        if found:
            rec["top_param"], rec["top_importance"] = max(found.items(), key=lambda kv: kv[1])
            imps += [{"task": task, "optimizer": opt, "param": k, "importance": v} for k, v in found.items()]
        recs.append(rec)
    out = pd.DataFrame.from_records(recs).reindex(columns=["task", "optimizer", *ROBUST_COLUMNS])
    modes = tune.groupby("task")["mode"].first().astype(str).to_dict()
    _alpha_tunability(out, curves, modes, spec.alpha)
    _robust_ranks(out, modes)
    return (
        out,
        pd.DataFrame.from_records(axes.rows).reindex(columns=list(AXIS_COLUMNS)),
        bands,
        pd.DataFrame.from_records(imps).reindex(columns=list(IMPORTANCE_COLUMNS)),
        pd.DataFrame.from_records(axes.points).reindex(columns=list(POINT_COLUMNS)),
    )


def _alpha_tunability(
    out: pd.DataFrame, curves: Mapping[tuple[str, str], np.ndarray], modes: Mapping[str, str], alpha: float
) -> None:
    """Global alpha-tunability: against the best E_K of every optimizer of the task."""
    for task, idx in out.groupby("task").groups.items():
        keys = [(task, o) for o in out.loc[idx, "optimizer"] if (task, o) in curves]
        if not keys:
            continue
        finals = [float(np.asarray(curves[k], dtype=float)[-1]) for k in keys]
        best = min(finals) if modes[task] == "min" else max(finals)
        for i in idx:
            key = (task, out.at[i, "optimizer"])
            if key in curves:
                out.at[i, "alpha_tunability"] = robustness.alpha_tunability(
                    curves[key], best, alpha, modes[task]
                )[0]


def _robust_ranks(out: pd.DataFrame, modes: Mapping[str, str]) -> None:
    """Per task: rank by lr sensitivity (lower is more robust), else by CPE, whichever more optimizers of
    the task have (lr sensitivity on a tie); only those that have it are ranked, the others are NaN."""
    out["robust_rank"], out["robust_by"] = np.nan, ""
    for task, idx in out.groupby("task").groups.items():
        measures = [("lr_sensitivity", "lr sensitivity"), ("cpe", "CPE")]
        col, name = max(measures, key=lambda m: np.isfinite(out.loc[idx, m[0]].astype(float)).sum())
        v = out.loc[idx, col].astype(float)
        have = v.index[np.isfinite(v.to_numpy())]
        if len(have) < 2:
            continue  # one score ranks nothing
        sign = -1.0 if col == "cpe" and modes[task] == "max" else 1.0
        out.loc[have, "robust_rank"] = rank_with_ties(sign * v.loc[have].to_numpy())[0]
        out.loc[idx, "robust_by"] = name


# What `bench check` compares besides the leaderboard's numbers: per-seed values, the cost of a step


def seed_values(df: pd.DataFrame) -> dict[tuple[str, str], dict[int, float]]:
    """Every run of a (task, optimizer)'s best configuration that was not picked for being best, by seed:
    its seed reruns, and its tuning run too when that was the study's only scored configuration
    (protocol `defaults`, or one trial: nothing was selected, so it is an unbiased draw). Values are in
    the metric's units, filled as in the leaderboard (failed: the task's worst, +inf when it has none;
    pruned: absent). With one tuning run their mean is not `seed_mean`, which leaves it out.

    `bench check` pairs these values by seed: a seed fixes a task's initialisation and data order, so the
    same seed on two sides differs only by what changed. Empty when the table has no `seed` column."""
    t = prepare(df)
    if "seed" not in t.columns:
        return {}
    scored = t[t["_scored"]]
    tune = scored[scored["kind"] == "tune"]
    alone = tune.groupby(["task", "optimizer"])["trial_id"].transform("size") == 1
    runs = pd.concat([tune[alone], scored[scored["kind"] == "seed"]])
    out: dict[tuple[str, str], dict[int, float]] = {}
    for (task, opt), g in runs.groupby(["task", "optimizer"], sort=True):
        mode = str(g["mode"].iloc[0])
        out[(str(task), str(opt))] = {
            int(seed): float(_natural(v, mode))
            for seed, v in sorted(zip(g["seed"].astype(int), g[_PREPARED].astype(float), strict=True))
        }
    return out


def costs(df: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """What a step costs each (task, optimizer): columns step_time_s, update_time_s, state_bytes (the
    median over its completed trials, tune and seed, that measured them; see `bench.run.StepClock`),
    n_timed (the trials behind step_time_s), and `<column>_ratio`: divided by the `reference` optimizer's
    value on the same task (NaN without one). Times measured in one run are compared as ratios because a
    machine's speed and load move both sides alike; the median keeps a few disturbed trials out."""
    t = prepare(df)
    cols = [c for c in COST_METRICS if c in t.columns]
    done = t[t["outcome"] == "completed"]
    index = pd.MultiIndex.from_frame(
        t[["task", "optimizer"]].drop_duplicates().sort_values(["task", "optimizer"])
    )
    out = pd.DataFrame(index=index)
    for col in COST_METRICS:
        values = (
            pd.to_numeric(done[col], errors="coerce") if col in cols else pd.Series(np.nan, index=done.index)
        )
        measured = done.assign(_v=values)[np.isfinite(values)]
        out[col] = measured.groupby(["task", "optimizer"])["_v"].median().reindex(index)
        if col == "step_time_s":
            out["n_timed"] = measured.groupby(["task", "optimizer"]).size().reindex(index, fill_value=0)
    for col in COST_METRICS:
        ref = pd.Series(np.nan, index=index)
        if reference is not None:
            per_task = (
                out[col].xs(reference, level="optimizer") if reference in index.get_level_values(1) else None
            )
            if per_task is not None:
                ref = pd.Series(index.get_level_values(0).map(per_task).to_numpy(dtype=float), index=index)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{col}_ratio"] = (out[col] / ref).where(ref > 0)
    out["n_timed"] = out["n_timed"].astype(int)
    return out
