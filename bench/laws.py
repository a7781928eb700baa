"""How rankings move with batch size, training length and scale: critical batch size, the exponent of the
best learning rate against the batch size, loss-vs-data power laws and compute-equivalent speedups.

Pure, like `bench.score`: arrays or a results table in, numbers out; no I/O, no plotting
(`bench.report_scaling` draws). Each formula with its source:

- **Critical batch size** (Zhang et al. 2024, "How Does Critical Batch Size Scale in Pre-training?",
  ICLR 2025): with S(B) the fewest optimizer steps any learning rate of the sweep needs to reach the
  target at batch size B, perfect linear scaling from the smallest batch B0 is S_lin(B) = S(B0) B0 / B.
  The critical batch size B* is where S exceeds S_lin by 20%: r(B) = S(B) B / (S(B0) B0) = 1.2, read off
  by linear interpolation of r in log B between the two measured batches that bracket 1.2. When no
  measured batch exceeds it, B* is beyond the largest one (reported as a lower bound).
  `noise_scale` fits McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training"),
  S(B) = S_min (1 + B_noise / B), as a smooth cross-check: under it r(B) = (B + B_noise)/(B0 + B_noise),
  so B* = 1.2 B0 + 0.2 B_noise.
- **Learning rate against batch size**: lr*(B) ~ B^alpha, alpha fitted by least squares on log lr* vs
  log B with a t-interval (n - 2 degrees of freedom). Declared rules (`lr_scaling`): linear, alpha = 1
  (Goyal et al. 2017); sqrt, alpha = 1/2 (Malladi et al. 2022, "On the SDEs and Scaling Rules for
  Adaptive Gradient Algorithms"); none, alpha = 0. lr*(B) is the vertex of a parabola in log lr through
  the best trial of the sweep and its neighbours (`best_lr`), not just the best trial's lr.
- **Loss against data** (Kaplan et al. 2020; Hoffmann et al. 2022): L(D) = a D^-b + c, fitted by
  nonlinear least squares (`scipy.optimize.curve_fit`), D in tokens (or examples for tasks that count
  no tokens) across the horizons (or the `steps`/`tokens` points) of one optimizer at one model size.
- **Compute-equivalent speedup** (Wen et al. 2025, "Fantastic Pretraining Optimizers and Where to Find
  Them"): the data the reference optimizer would need to reach loss L, D_ref(L) = (a / (L - c))^(1/b)
  from its fitted law, divided by the data the optimizer used: speedup = D_ref(L_opt) / D_opt. Above 1
  the optimizer is worth that many times more data; +inf when L is below the reference's asymptote c.

`scaling(results, rules, reference)` applies them to the results table (`bench.track.results_table`:
trials and horizons) and returns the tables the leaderboard's scaling section shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

THRESHOLD = 0.2  # Zhang et al.'s 20% overhead over linear scaling
RULE_EXPONENT: dict[str, float] = {"linear": 1.0, "sqrt": 0.5, "none": 0.0}


# ---------------------------------------------------------------------------------------------------
# Formulas on plain arrays


@dataclass(frozen=True)
class CriticalBatch:
    """B* of `critical_batch_size`. `value` is NaN with fewer than two batches that reached the target;
    `beyond` is True when no measured batch exceeds the threshold (B* > `value`, the largest batch)."""

    value: float
    beyond: bool
    n: int  # batch sizes that reached the target
    ratios: tuple[float, ...] = ()  # r(B) = S(B) B / (S(B0) B0) at each of them, by batch size
    batches: tuple[float, ...] = ()


def critical_batch_size(
    batch: Iterable[float], steps: Iterable[float], threshold: float = THRESHOLD
) -> CriticalBatch:
    """The batch size where steps to target exceed perfect linear scaling from the smallest batch by
    `threshold` (see the module docstring). Batches that never reached the target (NaN or inf steps) are
    left out."""
    b = np.asarray(list(batch), dtype=float)
    s = np.asarray(list(steps), dtype=float)
    ok = np.isfinite(b) & np.isfinite(s) & (b > 0) & (s > 0)
    order = np.argsort(b[ok])
    b, s = b[ok][order], s[ok][order]
    if b.size < 2:
        return CriticalBatch(math.nan, False, int(b.size))
    r = s * b / (s[0] * b[0])
    over = np.nonzero(r > 1 + threshold)[0]
    ratios, batches = tuple(float(x) for x in r), tuple(float(x) for x in b)
    if over.size == 0:
        return CriticalBatch(float(b[-1]), True, int(b.size), ratios, batches)
    i = int(over[0])  # >= 1: r[0] == 1
    lo, hi = math.log(b[i - 1]), math.log(b[i])
    t = (1 + threshold - r[i - 1]) / (r[i] - r[i - 1])
    return CriticalBatch(math.exp(lo + t * (hi - lo)), False, int(b.size), ratios, batches)


@dataclass(frozen=True)
class NoiseScale:
    """McCandlish et al.'s S(B) = S_min (1 + B_noise / B), fitted; NaN when it could not be."""

    s_min: float
    b_noise: float
    n: int


def noise_scale(batch: Iterable[float], steps: Iterable[float]) -> NoiseScale:
    """Fit S(B) = S_min (1 + B_noise / B): linear in 1/B (S = S_min + S_min B_noise / B), so ordinary
    least squares on (1/B, S); NaN with fewer than 2 batches or a fit without positive parameters."""
    b = np.asarray(list(batch), dtype=float)
    s = np.asarray(list(steps), dtype=float)
    ok = np.isfinite(b) & np.isfinite(s) & (b > 0)
    if ok.sum() < 2:
        return NoiseScale(math.nan, math.nan, int(ok.sum()))
    fit = stats.linregress(1.0 / b[ok], s[ok])
    s_min, slope = float(fit.intercept), float(fit.slope)
    if s_min <= 0 or slope <= 0:
        return NoiseScale(math.nan, math.nan, int(ok.sum()))
    return NoiseScale(s_min, slope / s_min, int(ok.sum()))


def best_lr(lrs: Iterable[float], values: Iterable[float], mode: str = "min") -> float:
    """The best learning rate of a sweep: the vertex, in log lr, of the parabola through the best trial
    and its nearest neighbours on either side (clipped to them), or the best trial's lr when it is at an
    edge of the sweep or the three points are not convex. NaN without a finite value."""
    lr = np.asarray(list(lrs), dtype=float)
    v = np.asarray(list(values), dtype=float)
    v = v if mode == "min" else -v
    ok = np.isfinite(lr) & (lr > 0) & np.isfinite(v)
    if not ok.any():
        return math.nan
    x, v = np.log(lr[ok]), v[ok]
    # one value per distinct lr: the best of its trials
    xs = np.unique(x)
    ys = np.array([v[x == u].min() for u in xs])
    i = int(np.argmin(ys))
    if i == 0 or i == xs.size - 1:
        return float(math.exp(xs[i]))
    (x0, x1, x2), (y0, y1, y2) = xs[i - 1 : i + 2], ys[i - 1 : i + 2]
    a = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)  # second divided difference
    if a <= 0:
        return float(math.exp(x1))
    b = (y1 - y0) / (x1 - x0) - a * (x0 + x1)
    vertex = min(max(-b / (2 * a), x0), x2)
    return float(math.exp(vertex))


@dataclass(frozen=True)
class Exponent:
    """lr*(B) ~ B^slope: the fitted slope, its 95% interval (NaN below 3 batches), and the points."""

    slope: float
    low: float
    high: float
    n: int
    intercept: float = math.nan  # log lr* at B = 1

    def contains(self, value: float) -> bool | None:
        """Whether `value` lies in the interval (None when there is none)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return None
        tol = 1e-9 * max(1.0, abs(value))  # an exact fit's interval has no width
        return self.low - tol <= value <= self.high + tol


def lr_exponent(batch: Iterable[float], lr: Iterable[float], level: float = 0.95) -> Exponent:
    """Least-squares slope of log lr on log batch with a t-interval at `level` (n - 2 dof)."""
    b = np.asarray(list(batch), dtype=float)
    y = np.asarray(list(lr), dtype=float)
    ok = np.isfinite(b) & np.isfinite(y) & (b > 0) & (y > 0)
    n = int(ok.sum())
    if n < 2 or np.unique(b[ok]).size < 2:
        return Exponent(math.nan, math.nan, math.nan, n)
    fit = stats.linregress(np.log(b[ok]), np.log(y[ok]))
    slope = float(fit.slope)
    if n < 3:
        return Exponent(slope, math.nan, math.nan, n, float(fit.intercept))
    half = float(stats.t.ppf(0.5 + level / 2, n - 2)) * float(fit.stderr)
    return Exponent(slope, slope - half, slope + half, n, float(fit.intercept))


@dataclass(frozen=True)
class PowerLaw:
    """L(D) = a D^-b + c, fitted over `n` points (`exact` when n == 3: no degree of freedom left)."""

    a: float
    b: float
    c: float
    n: int
    d_min: float = math.nan
    d_max: float = math.nan
    why: str = ""  # why there is no law (n/a)

    @property
    def ok(self) -> bool:
        return all(math.isfinite(x) for x in (self.a, self.b, self.c))

    @property
    def exact(self) -> bool:
        return self.n == 3

    def __call__(self, d: float | np.ndarray) -> float | np.ndarray:
        return self.a * np.power(d, -self.b) + self.c

    def data_for(self, loss: float) -> float:
        """D with L(D) = loss: (a / (loss - c))^(1/b); +inf at or below the asymptote c."""
        if not self.ok or not math.isfinite(loss):
            return math.nan
        if loss <= self.c:
            return math.inf
        return float((self.a / (loss - self.c)) ** (1.0 / self.b))


def power_law(data: Iterable[float], loss: Iterable[float]) -> PowerLaw:
    """Fit L(D) = a D^-b + c (a, b > 0, 0 <= c below the smallest loss; c of any sign when some value is
    not positive) by nonlinear least squares, D scaled by its largest value for conditioning. Fewer than
    3 lengths, no convergence, or b at a bound (the values do not fall like a power): not fitted."""
    d = np.asarray(list(data), dtype=float)
    y = np.asarray(list(loss), dtype=float)
    ok = np.isfinite(d) & np.isfinite(y) & (d > 0)
    d, y = d[ok], y[ok]
    if np.unique(d).size < 3:
        return PowerLaw(
            math.nan, math.nan, math.nan, int(d.size), why=f"{np.unique(d).size} lengths, needs 3"
        )
    scale = float(d.max())
    x = d / scale
    # start: c a bit under the smallest loss, then a and b from the log-log line of L - c
    # a loss or an error is never negative: so is its asymptote (any sign when the values allow it)
    c_low = 0.0 if y.min() > 0 else -np.inf
    c0 = max(
        float(y.min()) - 0.1 * float(np.ptp(y) or abs(y.min()) or 1.0),
        0.5 * float(y.min()) if c_low == 0 else -np.inf,
    )
    line = stats.linregress(np.log(x), np.log(np.maximum(y - c0, 1e-12)))
    p0 = (max(math.exp(line.intercept), 1e-12), min(max(-line.slope, 1e-3), 9.0), c0)
    lower, upper = (0.0, 0.0, c_low), (np.inf, 10.0, float(y.min()))
    try:
        (a, b, c), _ = optimize.curve_fit(
            lambda t, a, b, c: a * np.power(t, -b) + c, x, y, p0=p0, bounds=(lower, upper), maxfev=20000
        )
    except (RuntimeError, ValueError):
        return PowerLaw(math.nan, math.nan, math.nan, int(d.size), why="the fit did not converge")
    if not 1e-3 < b < upper[1] - 1e-6:  # at a bound: the losses do not fall like a power of the data
        return PowerLaw(
            math.nan, math.nan, math.nan, int(d.size), why=f"no falling power law fits (b = {b:.2g})"
        )
    return PowerLaw(float(a) * scale ** float(b), float(b), float(c), int(d.size), float(d.min()), scale)


def speedup(reference: PowerLaw, data: float, loss: float) -> float:
    """Compute-equivalent speedup of a run that reached `loss` with `data` over the reference's law:
    D_ref(loss) / data (Wen et al. 2025). NaN without a law; +inf below the reference's asymptote."""
    need = reference.data_for(loss)
    if not math.isfinite(data) or data <= 0 or math.isnan(need):
        return math.nan
    return need / data


# ---------------------------------------------------------------------------------------------------
# The results table -> the scaling section's tables

POINT_AXES = ("batch_size", "steps", "tokens")  # axes that are not model size


@dataclass
class Scaling:
    """The scaling section of a leaderboard, as tables (empty when the suite has no scan or horizons).

    batch:    task, group, optimizer, batch_size, steps_to_target (fewest over the sweep), lr_star,
              n_trials, tuned (False: lr transferred)
    critical: task, group, optimizer, critical_batch, beyond, n_batches, max_ratio, b_noise
    lr_fit:   task, group, optimizer, slope, low, high, n_batches, declared (rule), declared_slope, agrees
    loss:     task, group, optimizer, data, unit, steps, value, ema, n_trials (best lr per point)
    laws:     task, group, optimizer, a, b, c, n_points, exact
    speedups: task, group, optimizer, data, value, speedup, reference

    `group` names what else the points share (`width=8`, or `` when nothing): each (task, group) is one
    curve per optimizer."""

    metric: dict[str, str] = field(default_factory=dict)  # task -> metric name
    batch: pd.DataFrame = field(default_factory=pd.DataFrame)
    critical: pd.DataFrame = field(default_factory=pd.DataFrame)
    lr_fit: pd.DataFrame = field(default_factory=pd.DataFrame)
    loss: pd.DataFrame = field(default_factory=pd.DataFrame)
    laws: pd.DataFrame = field(default_factory=pd.DataFrame)
    speedups: pd.DataFrame = field(default_factory=pd.DataFrame)
    reference: str | None = None
    fits: dict[tuple[str, str, str], PowerLaw] = field(default_factory=dict)  # (task, group, optimizer)

    @property
    def empty(self) -> bool:
        return self.batch.empty and self.loss.empty


def _axes(row: Mapping) -> dict:
    scan = row.get("scan") if isinstance(row.get("scan"), Mapping) else {}
    return dict(scan.get("axes", {})) if scan else {}


def _group(axes: Mapping, leave_out: Sequence[str]) -> str:
    """What a point shares with the others of its curve: its axes but `leave_out`, as `k=v` words."""
    parts = [f"{k.removeprefix('options.')}={v}" for k, v in sorted(axes.items()) if k not in leave_out]
    return " ".join(parts)


def _prepared(results: pd.DataFrame) -> pd.DataFrame:
    t = results.copy()
    t["base"] = [
        (s.get("task") if isinstance(s, Mapping) and s.get("task") else task)
        for s, task in zip(t["scan"], t["task"], strict=True)
    ]
    t["axes"] = [_axes(r) for r in t.to_dict("records")]
    t["tuned"] = [
        bool((s.get("lr") or {}).get("tuned", True)) if isinstance(s, Mapping) and s else True
        for s in t["scan"]
    ]
    t["ok"] = (t["outcome"] == "completed") & np.isfinite(t["value"].astype(float))
    return t


def _batch_tables(
    t: pd.DataFrame, rules: Mapping[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    tune = t[(t["kind"] == "tune") & t["axes"].map(lambda a: "batch_size" in a)]
    tune = tune.assign(
        group=[_group(a, ("batch_size",)) for a in tune["axes"]],
        batch_size=[a["batch_size"] for a in tune["axes"]],
    )
    rows = []
    for (base, opt), g in tune.groupby(["base", "optimizer"], sort=False):
        for (group, batch), p in g.groupby(["group", "batch_size"], sort=True):
            ok = p[p["ok"]]
            stt = ok["steps_to_target"].astype(float)
            rows.append(
                {
                    "task": base,
                    "group": group,
                    "optimizer": opt,
                    "batch_size": int(batch),
                    "global_batch_size": int(p["global_batch_size"].iloc[0]),
                    "steps_to_target": float(stt[np.isfinite(stt)].min())
                    if np.isfinite(stt).any()
                    else math.nan,
                    "lr_star": best_lr(ok["lr"], ok["value"], str(p["mode"].iloc[0]))
                    if len(ok)
                    else math.nan,
                    "n_trials": int(len(p)),
                    "tuned": bool(p["tuned"].all()),
                }
            )
    batch = pd.DataFrame(rows)
    crit, fit = [], []
    if not batch.empty:
        for (task, group, opt), g in batch.groupby(["task", "group", "optimizer"], sort=False):
            cb = critical_batch_size(g["global_batch_size"], g["steps_to_target"])
            ns = noise_scale(g["global_batch_size"], g["steps_to_target"])
            crit.append(
                {
                    "task": task, "group": group, "optimizer": opt, "critical_batch": cb.value,
                    "beyond": cb.beyond, "n_batches": cb.n, "max_ratio": max(cb.ratios, default=math.nan),
                    "b_noise": ns.b_noise,
                }
            )  # fmt: skip
            tuned = g[g["tuned"]]
            ex = lr_exponent(tuned["global_batch_size"], tuned["lr_star"])
            rule = rules.get(str(opt), "")
            declared = RULE_EXPONENT.get(rule, math.nan)
            fit.append(
                {
                    "task": task, "group": group, "optimizer": opt, "slope": ex.slope, "low": ex.low,
                    "high": ex.high, "n_batches": ex.n, "intercept": ex.intercept, "declared": rule,
                    "declared_slope": declared,
                    "agrees": ex.contains(declared) if math.isfinite(declared) else None,
                }
            )  # fmt: skip
    return batch, pd.DataFrame(crit), pd.DataFrame(fit)


def _loss_tables(
    t: pd.DataFrame, reference: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[tuple[str, str, str], PowerLaw]]:
    """Loss against data: horizons of tuned trials (and trials of `steps`/`tokens` points)."""
    with_horizons = set(t.loc[t["kind"] == "horizon", "study"])
    length_axis = t["axes"].map(lambda a: "steps" in a or "tokens" in a)
    horizons = (t["kind"] == "horizon") & (t["seed"] == 0)  # the sweep's, not the seed reruns'
    lengths = (t["kind"] == "tune") & length_axis & ~t["study"].isin(with_horizons)
    pts = t[horizons | lengths]
    rows = []
    for r in pts.to_dict("records"):
        per_step = float(r["tokens_per_step"]) if np.isfinite(float(r["tokens_per_step"])) else math.nan
        unit = "tokens" if math.isfinite(per_step) else "examples"
        per_step = per_step if math.isfinite(per_step) else float(r["global_batch_size"])
        final = r.get("final") if isinstance(r.get("final"), Mapping) else {}
        metric = str(r.get("metric") or "")
        ema = (
            final.get(metric.replace("val/", "val_ema/", 1), math.nan)
            if metric.startswith("val/")
            else math.nan
        )
        rows.append(
            {
                "task": r["base"], "group": _group(r["axes"], ("steps", "tokens")), "optimizer": r["optimizer"],
                "steps": int(r["horizon"]), "data": float(r["horizon"]) * per_step, "unit": unit,
                "value": float(r["value"]) if r["ok"] else math.nan, "ema": float(ema), "mode": r["mode"],
            }
        )  # fmt: skip
    if not rows:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}
    raw = pd.DataFrame(rows)
    best = []
    for _, g in raw.groupby(["task", "group", "optimizer", "steps"], sort=True):
        sign = 1.0 if g["mode"].iloc[0] == "min" else -1.0
        vals = (g["value"] * sign).to_numpy(dtype=float)
        i = int(np.nanargmin(vals)) if np.isfinite(vals).any() else 0
        row = g.iloc[i]
        best.append({**row.to_dict(), "n_trials": int(len(g))})
    loss = pd.DataFrame(best).drop(columns=["mode"])
    laws, fits = [], {}
    modes = raw.groupby("task")["mode"].first()
    for (task, group, opt), g in loss.groupby(["task", "group", "optimizer"], sort=False):
        law = power_law(g["data"], g["value"])
        if modes[task] == "max":
            law = PowerLaw(
                math.nan, math.nan, math.nan, law.n, why="the metric rises (mode max): no falling law"
            )
        fits[(str(task), str(group), str(opt))] = law
        laws.append({"task": task, "group": group, "optimizer": opt, "a": law.a, "b": law.b, "c": law.c,
                     "n_points": law.n, "exact": law.exact, "why": law.why})  # fmt: skip
    speed = []
    if reference is not None:
        for r in loss.to_dict("records"):
            ref = fits.get((r["task"], r["group"], reference))
            if ref is None or r["optimizer"] == reference:
                continue
            speed.append({"task": r["task"], "group": r["group"], "optimizer": r["optimizer"], "data": r["data"],
                          "value": r["value"], "speedup": speedup(ref, r["data"], r["value"]),
                          "reference": reference})  # fmt: skip
    return loss, pd.DataFrame(laws), pd.DataFrame(speed), fits


def scaling(results: pd.DataFrame, rules: Mapping[str, str], reference: str | None) -> Scaling:
    """The scaling section's tables from the results table (trials and horizon runs, see
    `bench.records.COLUMNS`). `rules`: optimizer label -> its declared `lr_scaling`; `reference`: the
    optimizer label the speedups are relative to. Only completed trials count; the lr fit uses the points
    whose lr was tuned there (a transferred point's lr is the rule's, not a measurement)."""
    if results.empty:
        return Scaling()
    t = _prepared(results)
    if not t["axes"].map(bool).any() and not (t["kind"] == "horizon").any():
        return Scaling()
    order = {label: i for i, label in enumerate(rules)}  # the suite's order of optimizers
    t = t.sort_values("optimizer", key=lambda o: o.map(lambda x: order.get(x, len(order))), kind="stable")
    batch, critical, lr_fit = _batch_tables(t, rules)
    loss, laws, speedups, fits = _loss_tables(t, reference)
    metric = {str(b): str(m) for b, m in zip(t["base"], t["metric"], strict=True)}
    return Scaling(metric, batch, critical, lr_fit, loss, laws, speedups, reference, fits)
