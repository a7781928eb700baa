"""Leaderboard files from scores: <suite>.md/.html/.csv/.json and PNG plots in <suite>/.

    paths = build_leaderboard(suite)    # the suite's trials read back from MLflow, scored, written, logged

or, from a trials table in hand:

    board = score.leaderboard(trials, suite.leaderboard)
    paths = write_leaderboard(board, trials, curves, Path("leaderboards"), suite.name)

- `<suite>.md`: a summary per optimizer, then per task a table with the trials and seeds behind every
  number, outcome counts, the plots, and a legend of the columns.
- `<suite>.html`: the same page with its plots embedded, one self-contained file: what MLflow's artifact
  viewer shows with its figures (its Markdown view draws only images from http(s) addresses).
- `<suite>.csv`: `board.rows` as is (one row per task and optimizer; inf means never reached).
- `<suite>.json`: `leaderboard_dict(board, suite)`, machine-readable; `bench check` compares two of
  them (see bench/check.py). NaN and inf are written as null (JSON has neither); `reached_target`
  says whether a null time-to-target means "never reached" or "no target".
- plots: lr_sensitivity_<task>.png (value vs learning rate, every trial plus the binned best),
  expected_best_<task>.png (E_k vs k), curves_<task>.png (train loss and validation metric of each
  optimizer's best trial), performance_profile_<unit>.png (rho(tau), vs the fastest and vs the
  reference optimizer).

Plotting uses matplotlib's object API (`Figure`, Agg canvas): no pyplot global state, no display needed.

On the suite's MLflow run the files keep their layout (`leaderboard/<suite>.md` next to
`leaderboard/<suite>/*.png`), so the Markdown's image links resolve inside the artifact tree too.
`bench run` rebuilds the files only when the recorded trials (or the leaderboard settings) changed since
they were written (`built_from`); `bench leaderboard` always rebuilds them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markdown_it import MarkdownIt
from matplotlib.figure import Figure

from bench import records, score
from bench.schema import Settings, thaw
from bench.score import FAILED, OUTCOMES, TTT, Leaderboard, prepare
from bench.spec import Suite
from bench.track import UI_HOST, UI_PORT, Tracker

JSON_FORMAT = "bench-leaderboard/1"

WALL_CLOCK_NOTE = (
    "Wall-clock columns (seconds to target, the seconds performance profile) are left out: on a shared "
    "machine they measure its load as much as the optimizers. Set `leaderboard: {wall_clock: true}` for a "
    "suite whose trials each ran alone on a quiet, dedicated machine."
)

# trial_id -> {"val": [(step, value)], "train": [(step, loss)]}; a bare list is taken as "val"
Curves = Mapping[str, Mapping[str, Sequence[tuple[float, float]]] | Sequence[tuple[float, float]]]

LEGEND = """\
Columns (values in the task metric's units; lower/higher is better as the metric's mode says):

- **rank**: by the seed mean when the best configuration was rerun on seeds, else by the tune best. `=2`
  marks a tie: within the combined seed std sqrt(std_a^2 + std_b^2) of the first of its group.
- **best**: best final value over the completed tune trials.
- **seeds mean ± std (n)**: the best configuration rerun on n seeds (the tuning trial itself excluded).
- **median**: median over the tune trials, failed ones counted as the task's worst value.
- **E[best of k]**: expected best value of k configurations drawn at random from the tune trials
  (Dodge et al. 2019); E[best of 1] is the expected result of a single random configuration. Failed
  trials count as the task's worst value, pruned trials are left out; `n/a` when k > trials.
- **lr basin**: decades of learning rate between the smallest and largest lr of the trials within
  eps of the best (eps relative unless stated); 0: a single good lr. Wider is more forgiving.
- **success**: share of (not pruned) tune trials that reached the target at some evaluation.
- **diverged**: share of (not pruned) tune trials that diverged.
- **steps / tokens / seconds to target**: first evaluation reaching the target, for the best
  configuration (median over its seeds if any); `never` if not reached. Seconds only with
  `leaderboard.wall_clock: true` (trials that each ran alone on a dedicated machine).
- **trials**: tune trials (pruned trials are counted here but excluded from every statistic);
  **outcomes**: completed / pruned / diverged / oom / timeout / error.
- **profile score** (summary): integral of the performance profile rho(tau) over [1, r_max] / (r_max - 1)
  on time-to-target (AlgoPerf): 1 = fastest to the target on every task, 0 = never within r_max of the
  fastest. `vs <ref>` divides by the reference optimizer's time instead of the fastest, so the score
  does not move when another optimizer is added.
"""


# ---------------------------------------------------------------------------------------------------
# JSON


def _clean(x: Any) -> Any:
    """JSON-safe scalar: NaN/inf -> None, numpy scalars -> Python."""
    if x is None or x is pd.NA:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x if isinstance(x, str) else str(x)


def leaderboard_dict(board: Leaderboard, suite_name: str) -> dict[str, Any]:
    """The JSON form of a leaderboard (also the `bench check` baseline format)."""
    tasks: dict[str, Any] = {}
    for task, info in board.tasks.iterrows():
        tasks[str(task)] = {
            "metric": str(info["metric"]),
            "mode": str(info["mode"]),
            "target": _clean(info["target"]),
            "worst": _clean(info["worst"]),
            "n_trials": int(info["n_trials"]),
            "n_seeds": int(info["n_seeds"]),
            "basin_tolerance": {
                "eps": board.basin_abs.get(str(task), board.basin_eps),
                "absolute": str(task) in board.basin_abs,
            },
            "optimizers": {},
        }
    for r in board.rows.to_dict("records"):
        ttt = {f"{u}_to_target": _clean(r[f"{u}_to_target"]) for u in TTT}
        # never reached: every unit is +inf (written as null); reached: finite or NaN (not measured)
        reached = None if not np.isfinite(r["target"]) else not math.isinf(r["steps_to_target"])
        tasks[r["task"]]["optimizers"][r["optimizer"]] = {
            "rank": int(r["rank"]),
            "tied": bool(r["tied"]),
            "best": _clean(r["best"]),
            "best_trial_id": _clean(r["best_trial_id"]),
            "best_lr": _clean(r["best_lr"]),
            "seed_mean": _clean(r["seed_mean"]),
            "seed_std": _clean(r["seed_std"]),
            "n_seeds": int(r["n_seeds"]),
            "n_trials": int(r["n_trials"]),
            "n_scored": int(r["n_scored"]),
            "outcomes": {o: int(r[f"n_{o}"]) for o in OUTCOMES},
            "median": _clean(r["median"]),
            "expected_best": {str(k): _clean(r[f"E_{k}"]) for k in board.ks},
            "basin_decades": _clean(r["basin_decades"]),
            "n_basin": int(r["n_basin"]),
            "success_rate": _clean(r["success_rate"]),
            "divergence_rate": _clean(r["divergence_rate"]),
            **ttt,
            "ttt_n": int(r["ttt_n"]),
            "reached_target": reached,
        }
    optimizers: dict[str, Any] = {}
    for opt, s in board.optimizers.iterrows():
        optimizers[str(opt)] = {
            "n_tasks": int(s["n_tasks"]),
            "mean_rank": _clean(s["mean_rank"]),
            "wins": int(s["wins"]),
            "n_trials": int(s["n_trials"]),
            "n_seeds": int(s["n_seeds"]),
            "profile_scores": {p.name: _clean(p.scores.get(opt, np.nan)) for p in board.profiles},
        }
    return {
        "format": JSON_FORMAT,
        "suite": suite_name,
        "spec": {
            "ks": list(board.ks),
            "basin_eps": board.basin_eps,
            "reference": board.reference,
            "r_max": board.r_max,
            "wall_clock": board.wall_clock,  # false: seconds_to_target is null (not measured)
        },
        "tasks": tasks,
        "optimizers": optimizers,
    }


# ---------------------------------------------------------------------------------------------------
# Markdown


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, (float, np.floating)):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.{digits}g}"
    return str(x)


def _pct(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:.0f}%"


def _ttt(x: float, digits: int = 4) -> str:
    if isinstance(x, float) and math.isinf(x):
        return "never"
    return _fmt(x, digits)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _outcomes(r: Mapping[str, Any]) -> str:
    parts = [f"{int(r[f'n_{o}'])} {o}" for o in OUTCOMES if int(r[f"n_{o}"])]
    return ", ".join(parts) or "none"


def render_markdown(board: Leaderboard, suite_name: str, plots: Mapping[str, Path] | None = None) -> str:
    """The leaderboard as Markdown. `plots` maps a plot key (`lr_sensitivity_<task>`, ...) to a path
    relative to the Markdown file."""
    plots = plots or {}
    rows = board.rows
    n_tune = int(board.tasks["n_trials"].sum())
    n_seed = int(board.tasks["n_seeds"].sum())
    totals = {o: int(rows[f"n_{o}"].sum()) for o in OUTCOMES}
    lines = [
        f"# Leaderboard: {suite_name}",
        "",
        f"Behind these numbers: **{n_tune} tune trials** and **{n_seed} seed reruns** over "
        f"{len(board.tasks)} task(s) and {board.optimizers.shape[0]} optimizer(s).  ",
        "Tune-trial outcomes: " + ", ".join(f"{v} {o}" for o, v in totals.items()) + ".  ",
        "Failed trials ("
        + "/".join(FAILED)
        + ") count as the task's worst completed value; pruned trials are "
        "counted but left out of every statistic. Expected best-of-k assumes an unbiased (random or QMC) "
        "sampler.",
        "",
        WALL_CLOCK_NOTE
        if not board.wall_clock
        else "Wall-clock columns: the suite declares that every trial "
        "ran alone on a quiet, dedicated machine (`leaderboard.wall_clock: true`).",
        "",
        "## Summary",
        "",
    ]
    prof_cols = [c for c in board.optimizers.columns if c.startswith("profile_")]
    names = {f"profile_{p.time}" + ("_ref" if p.reference else ""): p.name for p in board.profiles}
    header = ["optimizer", "tasks", "mean rank", "wins"] + [f"profile ({names[c]})" for c in prof_cols]
    header += ["tune trials", "seed reruns"]
    body = []
    for opt, s in board.optimizers.iterrows():
        body.append(
            [str(opt), str(int(s["n_tasks"])), _fmt(s["mean_rank"], 3), str(int(s["wins"]))]
            + [_fmt(s[c], 3) for c in prof_cols]
            + [str(int(s["n_trials"])), str(int(s["n_seeds"]))]
        )
    lines += _table(header, body)
    if board.profiles:
        lines.append("")
        lines.append(
            f"Performance profiles use r_max = {board.r_max:g}; reference optimizer: `{board.reference}`."
        )
        for unit in dict.fromkeys(p.time for p in board.profiles):
            key = f"performance_profile_{unit}"
            if key in plots:
                lines += ["", f"![performance profile ({unit})]({plots[key].as_posix()})"]

    ks = board.ks
    for task, info in board.tasks.iterrows():
        task = str(task)
        sub = rows[rows["task"] == task]
        better = "lower" if info["mode"] == "min" else "higher"
        target = "no target" if not np.isfinite(info["target"]) else f"target {_fmt(info['target'])}"
        eps = board.basin_abs.get(task)
        basin = f"absolute eps {eps:g}" if eps is not None else f"relative eps {board.basin_eps:g}"
        lines += [
            "",
            f"## {task}",
            "",
            f"Metric `{info['metric']}` ({better} is better), {target}. "
            f"{int(info['n_trials'])} tune trials and {int(info['n_seeds'])} seed reruns; "
            f"failed trials count as {_fmt(info['worst'])}; lr basin with {basin}.",
            "",
        ]
        has_tokens = np.isfinite(sub["tokens_to_target"].astype(float)).any()
        has_target = bool(np.isfinite(info["target"]))
        header = ["rank", "optimizer", "best", "seeds mean ± std (n)", "median"]
        header += [f"E[best of {k}]" for k in ks] + ["lr basin (decades)", "diverged"]
        if has_target:
            header += ["success", "steps to target"] + (["tokens to target"] if has_tokens else [])
            header += ["seconds to target"] if board.wall_clock else []
        header += ["trials", "outcomes"]
        body = []
        for r in sub.to_dict("records"):
            seeds = (
                f"{_fmt(r['seed_mean'])} ± {_fmt(r['seed_std'], 2)} ({r['n_seeds']})"
                if r["n_seeds"]
                else "— (0)"
            )
            row = [
                ("=" if r["tied"] else "") + str(r["rank"]),
                r["optimizer"],
                _fmt(r["best"]),
                seeds,
                _fmt(r["median"]),
            ]
            row += ["n/a" if k > r["n_scored"] else _fmt(r[f"E_{k}"]) for k in ks]
            row += [_fmt(r["basin_decades"], 2) + f" ({r['n_basin']})", _pct(r["divergence_rate"])]
            if has_target:
                ttt_n = f" ({r['ttt_n']})" if r["n_seeds"] else ""
                row += [_pct(r["success_rate"]), _ttt(r["steps_to_target"]) + ttt_n]
                row += [_ttt(r["tokens_to_target"]) + ttt_n] if has_tokens else []
                row += [_ttt(r["seconds_to_target"], 3) + ttt_n] if board.wall_clock else []
            row += [str(r["n_trials"]), _outcomes(r)]
            body.append(row)
        lines += _table(header, body)
        for key, title in (
            (f"lr_sensitivity_{_safe(task)}", "learning-rate sensitivity"),
            (f"expected_best_{_safe(task)}", "expected best of k"),
            (f"curves_{_safe(task)}", "curves of the best trials"),
        ):
            if key in plots:
                lines += ["", f"![{title}]({plots[key].as_posix()})"]
    lines += ["", "## Legend", "", LEGEND]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Plots


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _colors(optimizers: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(optimizers) <= 10 else "tab20"]
    return {o: cmap(i % cmap.N) for i, o in enumerate(sorted(optimizers))}


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)  # no tight_layout: it draws the figure twice; _figure sets the margins
    return path


def _figure(ncols: int = 1, width: float = 5.0, legend: float = 1.8) -> tuple[Figure, list[Any]]:
    """ncols axes of `width` inches, each followed by `legend` inches for a legend outside the data."""
    panel = width + legend
    fig = Figure(figsize=(panel * ncols, 4.5))
    left, right = 0.8 / (panel * ncols), 1 - (legend + 0.1) / (panel * ncols)
    fig.subplots_adjust(left=left, right=right, bottom=0.12, top=0.9, wspace=(legend + 0.9) / width)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _legend(ax: Any, **kw: Any) -> None:
    # a fixed place outside the axes: loc="best" searches positions and costs more than the plot itself
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0.0, **kw)


def _log_x(ax: Any) -> None:
    """Log x axis labelled 1e-03 / 10 style: the default $10^{-3}$ labels go through mathtext, which
    otherwise dominates the time to write a report."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}" if v < 1e-2 or v >= 1e4 else f"{v:g}"))
    ax.minorticks_off()  # building minor ticks costs more than drawing the data


def plot_lr_sensitivity(board: Leaderboard, trials: pd.DataFrame, task: str, path: Path) -> Path | None:
    """Final value vs learning rate: every tune trial (x: failed, drawn at the bad edge of the axes) and
    the binned best (`board.lr_profiles`). The y range holds every completed trial and the target; a range
    wider than 30x of positive values is drawn on a log axis, so the good end is not squashed."""
    t = prepare(trials)
    t = t[(t["task"] == task) & (t["kind"] == "tune") & t["_scored"] & np.isfinite(t["lr"]) & (t["lr"] > 0)]
    if t.empty:
        return None
    info = board.tasks.loc[task]
    sign = -1.0 if info["mode"] == "max" else 1.0
    colors = _colors(board.rows["optimizer"].unique().tolist())
    fig, (ax,) = _figure()
    values = (t.loc[~t["_failed"], "_filled"] * sign).to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    target = float(info["target"])
    shown = np.append(values, target) if np.isfinite(target) else values
    lo, hi, log = _y_range(shown)
    bad_edge = (hi if sign > 0 else lo) if shown.size else 0.0
    profiles = board.lr_profiles[board.lr_profiles["task"] == task]
    failed_label = "failed (drawn at the edge)"
    for opt, g in t.groupby("optimizer"):
        good = g[~g["_failed"]]
        ax.scatter(good["lr"], good["_filled"] * sign, s=10, alpha=0.35, color=colors[opt])
        bad = g[g["_failed"]]
        if len(bad):
            ax.scatter(bad["lr"], np.full(len(bad), bad_edge), marker="x", s=18, alpha=0.7, color=colors[opt],
                       clip_on=False, label=failed_label)  # fmt: skip
            failed_label = None
        prof = profiles[profiles["optimizer"] == opt]
        ax.plot(10 ** prof["log10_lr"], prof["best"], "-o", ms=3, color=colors[opt], label=str(opt))
    if log:
        ax.set_yscale("log")
    if shown.size:
        ax.set_ylim(lo, hi)
    if np.isfinite(target):
        ax.axhline(target, ls="--", lw=1, color="gray", label="target")
    _log_x(ax)
    ax.set(xlabel="learning rate", ylabel=f"{info['metric']} ({info['mode']})")
    ax.set_title(f"{task}: lr sensitivity (line: best per lr bin)", fontsize=10)
    _legend(ax)
    return _save(fig, path)


def _y_range(values: np.ndarray) -> tuple[float, float, bool]:
    """Axis limits holding every value with a margin, and whether to use a log axis (positive values
    spanning more than 30x)."""
    if values.size == 0:
        return 0.0, 1.0, False
    lo, hi = float(values.min()), float(values.max())
    if lo > 0 and hi / lo > 30:
        return lo / 1.3, hi * 1.3, True
    pad = 0.06 * (hi - lo) if hi > lo else 0.06 * max(abs(hi), 1e-12)
    return lo - pad, hi + pad, False


def _k_axis(ax: Any, n: int) -> None:
    """The k axis of expected best-of-k: integer ticks 1..n when few, else a log axis ticked 1, 2, 5, 10..."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    if n <= 20:
        ax.set_xlim(0.8, n + 0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(n, 10)))
        return
    ax.set_xscale("log")
    ticks = [m * 10**e for e in range(0, int(math.log10(n)) + 1) for m in (1, 2, 5) if m * 10**e <= n]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(_plain_format())


def _plain_format() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:g}")


def plot_expected_best(board: Leaderboard, task: str, path: Path) -> Path | None:
    """E_k vs k for each optimizer on the task."""
    keys = sorted(k for k in board.curves if k[0] == task and len(board.curves[k]))
    if not keys:
        return None
    info = board.tasks.loc[task]
    colors = _colors(board.rows["optimizer"].unique().tolist())
    fig, (ax,) = _figure()
    n = 1
    for key in keys:
        curve = np.asarray(board.curves[key], dtype=float)
        n = max(n, curve.size)
        ax.plot(
            np.arange(1, curve.size + 1),
            curve,
            "-o",
            ms=3,
            color=colors[key[1]],
            label=f"{key[1]} (n={curve.size})",
        )
    for k in board.ks:
        ax.axvline(k, lw=0.5, color="lightgray")
    if np.isfinite(info["target"]):
        ax.axhline(info["target"], ls="--", lw=1, color="gray", label="target")
    _k_axis(ax, n)
    ax.set(xlabel="k (configurations tried)", ylabel=f"expected best {info['metric']}")
    ax.set_title(f"{task}: expected best of k random configurations", fontsize=10)
    _legend(ax)
    return _save(fig, path)


def plot_best_curves(board: Leaderboard, curves: Curves, task: str, path: Path) -> Path | None:
    """Train loss and validation metric over steps of each optimizer's best tune trial."""
    info = board.tasks.loc[task]
    sub = board.rows[board.rows["task"] == task]
    colors = _colors(board.rows["optimizer"].unique().tolist())
    fig, (ax_train, ax_val) = _figure(2, legend=0.0)
    drawn = False
    for r in sub.to_dict("records"):
        c = curves.get(r["best_trial_id"]) if isinstance(r["best_trial_id"], str) else None
        if not c:
            continue
        parts = c if isinstance(c, Mapping) else {"val": c}
        for name, ax in (("train", ax_train), ("val", ax_val)):
            pts = np.asarray(parts.get(name) or [], dtype=float).reshape(-1, 2)
            if len(pts):
                ax.plot(pts[:, 0], pts[:, 1], "-", lw=1.2, color=colors[r["optimizer"]], label=r["optimizer"])
                drawn = True
    if not drawn:
        return None
    if np.isfinite(info["target"]):
        ax_val.axhline(info["target"], ls="--", lw=1, color="gray", label="target")
    ax_train.set(xlabel="step", ylabel="train loss")
    ax_train.set_title(f"{task}: train loss (best trials)", fontsize=10)
    ax_val.set(xlabel="step", ylabel=str(info["metric"]))
    ax_val.set_title(f"{task}: {info['metric']} (best trials)", fontsize=10)
    # one legend, where a falling train loss leaves room (a fixed place: loc="best" is slow)
    (ax_train if ax_train.lines else ax_val).legend(fontsize=8, loc="upper right")
    return _save(fig, path)


PROFILE_SHIFT = 0.012  # vertical distance between the profile lines of two optimizers
LINE_STYLES = ("-", "--", "-.", ":")


def _shifted(lines: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Profile lines shifted apart by PROFILE_SHIFT each, centred on the true values: two optimizers
    with the same profile would otherwise draw one line over the other."""
    n = len(lines)
    return [np.asarray(line, dtype=float) + PROFILE_SHIFT * (i - (n - 1) / 2) for i, line in enumerate(lines)]


def plot_performance_profiles(board: Leaderboard, unit: str, path: Path) -> Path | None:
    """rho(tau) per optimizer: vs the fastest optimizer (left) and vs the reference (right)."""
    profiles = [p for p in board.profiles if p.time == unit]
    if not profiles:
        return None
    colors = _colors(board.rows["optimizer"].unique().tolist())
    fig, axes = _figure(len(profiles))
    for ax, p in zip(axes, profiles, strict=True):
        n = len(p.rho.index)
        lines = _shifted([p.rho.loc[opt].to_numpy() for opt in p.rho.index])
        for i, (opt, rho) in enumerate(zip(p.rho.index, lines, strict=True)):
            ax.step(p.taus, rho, where="post", color=colors.get(opt), lw=1.6, ls=LINE_STYLES[i % len(LINE_STYLES)],
                    label=f"{opt} ({p.scores[opt]:.3f})")  # fmt: skip
        ax.set_ylim(-0.04, 1.04)
        ax.set_xlim(1, p.r_max)
        denom = "fastest" if p.reference is None else p.reference
        ax.set(xlabel=f"tau: {unit} to target / {denom}'s", ylabel="fraction of tasks within tau")
        ax.set_title(f"performance profile: {p.name}", fontsize=10)
        if n > 1:
            ax.text(0.99, 0.01, f"lines shifted by up to +-{PROFILE_SHIFT * (n - 1) / 2:.3f} to stay visible",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="gray")  # fmt: skip
        _legend(ax, title="optimizer (score)", title_fontsize=8)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# Files


def render_html(markdown: str, base: Path, title: str) -> str:
    """The Markdown leaderboard as one self-contained HTML page: tables as tables, and its plots (paths
    relative to `base`) embedded as data: URIs, so the page shows them wherever it is opened, MLflow's
    artifact viewer included."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for token in tokens:
        for child in token.children or ():
            src = child.attrGet("src") if child.type == "image" else None
            if src and (base / str(src)).is_file():
                data = base64.b64encode((base / str(src)).read_bytes()).decode()
                child.attrSet("src", f"data:image/png;base64,{data}")
    body = md.renderer.render(tokens, md.options, {})
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title><style>{PAGE_STYLE}</style>"
        f"</head><body>\n{body}</body></html>\n"
    )


PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;font-size:14px;margin:1em;max-width:1400px}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}img{max-width:100%}code{background:#f3f3f3}"
)


def write_leaderboard(
    board: Leaderboard, df: pd.DataFrame, curves: Curves, out_dir: Path, suite_name: str
) -> list[Path]:
    """Write `<suite>.md`, `.html`, `.csv`, `.json` and the plots under `<suite>/`; return every path."""
    out_dir = Path(out_dir)
    df = prepare(df)  # once, not per plot
    plot_dir = out_dir / _safe(suite_name)
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    for task in board.tasks.index.astype(str):
        s = _safe(task)
        for key, draw in (
            (f"lr_sensitivity_{s}", lambda p, task=task: plot_lr_sensitivity(board, df, task, p)),
            (f"expected_best_{s}", lambda p, task=task: plot_expected_best(board, task, p)),
            (f"curves_{s}", lambda p, task=task: plot_best_curves(board, curves or {}, task, p)),
        ):
            if (path := draw(plot_dir / f"{key}.png")) is not None:
                plots[key] = path
    for unit in dict.fromkeys(p.time for p in board.profiles):
        key = f"performance_profile_{unit}"
        if (path := plot_performance_profiles(board, unit, plot_dir / f"{key}.png")) is not None:
            plots[key] = path

    md, html, csv, js = (out_dir / f"{suite_name}{ext}" for ext in FILES)
    rel = {k: p.relative_to(out_dir) for k, p in plots.items()}
    text = render_markdown(board, suite_name, rel) + "\n"
    md.write_text(text)
    html.write_text(render_html(text, out_dir, f"Leaderboard: {suite_name}"))
    board.rows.to_csv(csv, index=False)
    js.write_text(json.dumps(leaderboard_dict(board, suite_name), indent=2, allow_nan=False) + "\n")
    return [md, html, csv, js, *plots.values()]


FILES = (".md", ".html", ".csv", ".json")  # a leaderboard's files, beside the folder of its plots


def built_from(table: pd.DataFrame, suite: Suite) -> str:
    """A short hash of what a leaderboard is computed from: every recorded trial's row and the suite's
    leaderboard settings (and this file format). Equal hashes, equal leaderboards."""
    rows = table.sort_values("run_id").to_json(orient="records", double_precision=15)
    spec = json.dumps(thaw(suite.leaderboard), sort_keys=True, default=str)
    return hashlib.sha256(f"{JSON_FORMAT}\n{spec}\n{rows}".encode()).hexdigest()[:16]


def where_to_look(suite: Suite, tracker: Tracker, board: Path) -> list[str]:
    """The lines that end a run: the leaderboard file, and where the MLflow UI shows it and the runs."""
    uri = suite.settings.tracking_uri
    served = uri.startswith(("http://", "https://"))  # a tracking server is the UI itself
    base = uri if served else f"http://{UI_HOST}:{UI_PORT}"
    links = tracker.links(base, tracker.find_run(records.suite_key(suite.name)))
    default = Settings.model_fields["tracking_uri"].default
    ui = "bench ui" if uri == default else f"bench ui --tracking-uri '{uri}'"
    lines = [f"bench: leaderboard {board} (tables and plots in one page: {board.with_suffix('.html')})"]
    lines.append(f"bench: MLflow UI{'' if served else f' (start it with `{ui}`)'}: the leaderboard at")
    lines += [f"    {links['leaderboard']}"] if "leaderboard" in links else []
    lines += ["  studies and trials, with their curves, at", f"    {links['runs']}"]
    return lines


def build_leaderboard(
    suite: Suite,
    *,
    tracker: Tracker | None = None,
    out: Callable[[str], None] = print,
    rebuild: bool = True,
) -> list[Path]:
    """Read the suite's trials back from MLflow, score them, write the leaderboard files and log them
    (with the resolved suite) on the suite's run, then say where to look. Returns the files (none
    without trials). `rebuild=False` (what `bench run` does) keeps files built from the same trials."""
    tracker = tracker or Tracker.for_suite(suite)
    table = tracker.trials_table()
    if table.empty:
        out("bench: no finished trials recorded yet; no leaderboard written")
        return []
    out_dir = Path(suite.settings.leaderboard_dir)
    files = [out_dir / f"{suite.name}{ext}" for ext in FILES]
    source = built_from(table, suite)
    run_id = tracker.find_run(records.suite_key(suite.name))
    current = run_id is not None and tracker.run_tag(run_id, records.LEADERBOARD_OF) == source
    if not rebuild and current and all(f.is_file() for f in files):
        out(f"bench: leaderboard up to date (no new trials): {files[0]}; `bench leaderboard` rebuilds it")
        for line in where_to_look(suite, tracker, files[0]):
            out(line)
        return files
    board = score.leaderboard(table, suite.leaderboard)
    run_of = dict(zip(table["trial_id"], table["run_id"], strict=True))
    curves = {}
    for task, rows in board.rows.groupby("task"):
        best = {t: run_of[t] for t in rows["best_trial_id"].dropna() if t in run_of}
        metric = table.loc[table["task"] == task, "metric"].iloc[0]
        curves.update(tracker.curves(best, metric=metric))
    paths = write_leaderboard(board, table, curves, out_dir, suite.name)
    run_id = run_id or tracker.suite_run(suite.name)
    tracker.log_dict(run_id, suite.resolved, records.RESOLVED_ARTIFACT)
    tracker.log_artifacts(run_id, [p for p in paths if p.suffix in FILES], records.LEADERBOARD_DIR)
    plots = f"{records.LEADERBOARD_DIR}/{_safe(suite.name)}"  # as on disk: the .md's links resolve
    tracker.log_artifacts(run_id, [p for p in paths if p.suffix == ".png"], plots)
    tracker.log(run_id, metrics={"trials": len(table)}, tags={records.LEADERBOARD_OF: source})
    tracker.finish(run_id)
    out(f"bench: leaderboard written from {len(table)} trial runs")
    for line in where_to_look(suite, tracker, paths[0]):
        out(line)
    return paths
