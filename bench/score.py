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
    optional: trial_id, number, steps, time_s, tokens_per_step, metric (the metric's name), seed, ...

Conventions (every number in a leaderboard follows them):

- Orientation. Internally every value is oriented so that lower is better (`mode: max` is negated);
  everything returned is in the metric's own units again.
- Failed trials (outcome diverged/oom/timeout/error, or completed without a finite value) count as the
  *worst* value: the worst finite value of a completed trial of that task over all optimizers and
  kinds, or +inf when the task has none. They stay in every sample (E_k, median, rates): an optimizer
  that fails half its trials pays for it. The fill is per task, not per optimizer, so an optimizer is
  not rewarded for having a bad worst trial of its own.
- Pruned trials are censored: we do not know what they would have reached. They are counted (n_trials,
  n_pruned) but excluded from every sample and from the denominators of the rates.
- `best` is the best value among the completed trials (NaN when none completed); it equals the minimum of
  the filled sample whenever one trial completed.
- Expected best-of-k (Dodge et al. 2019, "Show your work") assumes the tune trials are i.i.d. draws from
  the search space (an unbiased sampler: random or QMC). E_k with k > n is not reported (NaN).
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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from bench.outcomes import FAILED, OUTCOMES
from bench.records import KINDS
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
    j = np.arange(1, n + 1)
    upper, lower = (n - j + 1) / n, (n - j) / n
    out = np.empty(ks_arr.size)
    chunk = max(1, 2_000_000 // n)  # bounds the (k x n) weight matrix to ~16 MB
    with np.errstate(invalid="ignore"):
        for s in range(0, ks_arr.size, chunk):
            kk = ks_arr[s : s + chunk, None]
            w = upper**kk - lower**kk
            out[s : s + chunk] = np.where(w > 0, w * m, 0.0).sum(axis=1)
    return out if mode == "min" else -out


def expected_best_of_k(values: Sequence[float] | np.ndarray, k: int, mode: Mode = "min") -> float:
    """E_k of `expected_best_curve` for one k (NaN when k exceeds the number of trials)."""
    v = np.asarray(values, dtype=float)
    if k > v.size or v.size == 0:
        return float("nan")
    return float(expected_best_curve(v, [k], mode)[0])


def basin_width(
    lr: Iterable[float],
    values: Iterable[float],
    eps: float = 0.01,
    *,
    absolute: bool = False,
    mode: Mode = "min",
) -> tuple[float, int]:
    """Learning-rate basin: how many decades of lr reach (nearly) the best value.

    A trial is *good* when its oriented value v satisfies v <= best + tol, with best the best value
    among trials with a finite lr > 0 and tol = eps * |best| (relative, the default) or eps (absolute).
    The width is log10(largest lr of a good trial) - log10(smallest lr of a good trial), in decades: 0
    when a single trial (or a single lr) is good. It is the span of the good lrs, so a bad trial between
    two good ones does not split it (other hyperparameters vary between random-search trials).
    The leaderboard passes completed trials only: a failed trial is never good.
    Returns (width, number of good trials); (NaN, 0) when no trial has an lr or no finite best.
    """
    x = np.asarray(lr, dtype=float)
    v = _orient(values, mode)
    keep = np.isfinite(x) & (x > 0) & ~np.isnan(v)
    if not keep.any():
        return float("nan"), 0
    x, v = x[keep], v[keep]
    best = v.min()
    if not np.isfinite(best):
        return float("nan"), 0
    tol = eps if absolute else eps * abs(best)
    good = v <= best + tol
    logs = np.log10(x[good])
    return float(logs.max() - logs.min()), int(good.sum())


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

    _oriented (lower is better), _failed, _scored (not pruned), _worst (the task's fill value, oriented),
    _filled (oriented, failed -> worst, pruned -> NaN), _reached (target reached at some evaluation),
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
    worst = pd.Series(np.where(ok, oriented, np.nan), index=t.index).groupby(t["task"]).transform("max")
    worst = worst.fillna(np.inf).to_numpy(dtype=float)
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
    t["_reached"] = reached
    for unit in TTT:
        t[f"_ttt_{unit}"] = np.where(reached, ttt[unit], np.where(has_target, np.inf, np.nan))
    t[_PREPARED] = np.where(scored, np.where(ok, oriented, worst), np.nan)
    return t


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
    tune = tune.sort_values([_PREPARED, "number", "trial_id"], kind="stable")
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
        basin_decades, n_basin, success_rate, divergence_rate,
        steps_to_target, tokens_to_target, seconds_to_target, ttt_n,
        rank_value (seed mean if n_seeds else best), rank, tied
    optimizers: one row per optimizer: n_tasks, mean_rank, wins (rank 1, ties included), n_trials,
        n_seeds, then profile_<time> and profile_<time>_ref for each computed profile.
    tasks: one row per task: metric, mode, target, worst (the fill value of failed trials), n_trials,
        n_seeds, n_optimizers.
    curves: (task, optimizer) -> expected best-of-k for k = 1..n_scored, in the metric's units.
    lr_profiles: `lr_profile` of the table. profiles: the `Profile`s for each time unit with data.
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
) -> Leaderboard:
    """Score a trials table (see the module docstring for the columns and conventions).

    spec: ks, basin_eps, reference, r_max (defaults: `bench.schema.LeaderboardSpec()`).
    basin_abs: task -> absolute basin tolerance, replacing the relative `basin_eps` for that task.
    metrics: task -> metric name, when the table has no `metric` column.
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
        curve = expected_best_curve(vals)  # oriented
        curves[key] = _natural(curve, mode)
        rec: dict = {"task": task, "optimizer": opt, "metric": task_metric.get(task, "value"), "mode": mode}
        rec["target"] = float(task_target[task])
        if best_row is not None:
            rec["best"] = float(_natural(best_row[_PREPARED], mode))
            rec["best_trial_id"] = str(best_row["trial_id"])
            rec["best_lr"] = float(best_row["lr"])
        else:
            rec["best"], rec["best_trial_id"], rec["best_lr"] = np.nan, None, np.nan
        rec["median"] = float(_natural(np.median(vals), mode)) if vals.size else np.nan
        for k in ks:
            rec[f"E_{k}"] = float(curves[key][k - 1]) if k <= vals.size else np.nan
        sv = seeds[_PREPARED].to_numpy(dtype=float)
        rec["n_seeds"] = int(sv.size)
        rec["seed_mean"] = float(_natural(sv.mean(), mode)) if sv.size else np.nan
        with np.errstate(invalid="ignore"):
            rec["seed_std"] = float(sv.std(ddof=1)) if sv.size > 1 else np.nan
        done = ~g["_failed"].to_numpy(dtype=bool)  # a failed trial is never in the basin
        rec["basin_decades"], rec["n_basin"] = basin_width(
            g["lr"].to_numpy(dtype=float)[done],
            vals[done],
            basin_abs.get(task, spec.basin_eps),
            absolute=task in basin_abs,
        )
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
        + ["basin_decades", "n_basin", "success_rate", "divergence_rate"]
        + [f"{u}_to_target" for u in TTT]
        + ["ttt_n"]
    )
    rows = rows[order]

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
            "n_trials": t[t["kind"] == "tune"].groupby("task").size().reindex(task_mode.index, fill_value=0),
            "n_seeds": t[t["kind"] == "seed"].groupby("task").size().reindex(task_mode.index, fill_value=0),
            "n_optimizers": rows.groupby("task")["optimizer"].nunique().reindex(task_mode.index),
        }
    )
    tasks.index.name = "task"
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
        }
    )
    for p in profiles:
        col = f"profile_{p.time}" + ("_ref" if p.reference else "")
        out[col] = p.scores.reindex(out.index)
    out.index.name = "optimizer"
    return out.sort_values(["mean_rank"], kind="stable")
