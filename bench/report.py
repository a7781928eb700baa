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
- plots: sensitivity_<task>.png (Zhao et al.'s panels: the metric against each swept hyperparameter,
  for sweeps and lr-only studies), lr_sensitivity_<task>.png (value vs learning rate, every trial plus
  the binned best, when there is no lr curve), expected_best_<task>.png (E_k vs k with bootstrap bands),
  importance_<task>.png (hyperparameter importance), curves_<task>.png (train loss and validation metric
  of each optimizer's best trial), performance_profile_<unit>.png (rho(tau), vs the fastest and vs the
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

from bench import laws, records, score
from bench.laws import Scaling
from bench.plan import si
from bench.schema import Settings, thaw
from bench.score import FAILED, OUTCOMES, TTT, Leaderboard, prepare
from bench.spec import Suite
from bench.track import UI_HOST, UI_PORT, Tracker

JSON_FORMAT = "bench-leaderboard/2"  # /2: robustness fields, failure cost L0 (bench check reads both)

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
- **median**: median over the tune trials, failed ones counted as what a failure costs.
- **E[best of k]**: expected best value of k configurations drawn at random from the tune trials
  (Dodge et al. 2019); E[best of 1] is the expected result of a single random configuration. Failed
  trials count as what a failure costs, pruned trials are left out; `n/a` when k > trials. Median and
  E[best of k] need a random sample (protocol random or qmc, two trials or more): not shown otherwise.
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
- **mean rank (tuned)** (summary): mean over tasks of the rank by the best tuned result;
  **mean rank (robust)**: of the rank by the robustness score of the task's robustness table (lr
  sensitivity where every optimizer has one, else CPE), lower is more robust.
"""

ROBUST_LEGEND = """\
Robustness columns (docs/robustness.md has the formulas; a column the protocol cannot support is left
out, and a cell it cannot support for one optimizer says `n/a`, with the reason under the table):

- **best lr**: the learning rate of the best point of the lr curve (a sweep's lr points, or the trials
  of a study that searched the lr alone). `low edge`/`high edge`: the best lr is the smallest/largest
  swept, so the optimum may lie beyond (the sweep extends its grid while this holds, up to its limit).
- **lr basin (decades)**: width of the interval of learning rates where the interpolated curve stays
  within eps of the best (eps relative unless stated); a continuous number. `>=`: the basin reaches an
  end of the sweep, so it may be wider. Wider is more forgiving.
- **lr sensitivity**: Wortsman et al. 2023: the mean of min(L, L0) - L* over a window of the same
  width (in decades) centred on each optimizer's own best lr, with L* the best value and L0 what a
  failure costs. 0: nothing lost within the window; lower is more robust.
- **headroom**: the largest learning rate whose trial completed, over the best lr. `>=`: nothing
  larger failed, so it may be larger. Larger leaves more room before training breaks.
- **<hyperparameter> sensitivity**: the same as lr sensitivity, on the 1-D sweep of that
  hyperparameter at the best lr (windowed on log axes; over the whole sweep on linear axes such as the
  warmup, and on categorical ones).
- **CPE**: Sivaprasad et al. 2020's cumulative performance early: the expected best-of-k curve averaged
  over budgets k = 1..n with weights n - k + 1 (a good result after few trials counts most).
- **alpha-tunability**: Sivaprasad et al. 2020: the fraction of the budget after which expected
  best-of-k gets within a relative 1 - alpha of the best E[best of n] of the task; `never` if it does
  not. Smaller needs less tuning.
- **most important**: the hyperparameter with the largest share of importance (Optuna's fANOVA or
  PED-ANOVA over the study's trials; the importance chart has every share).
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
            "failure": {
                "value": _clean(info["worst"]),
                "declared": bool(info["declared"]),
                "why": board.failure_why.get(str(task)),
            },  # fmt: skip
            "n_trials": int(info["n_trials"]),
            "n_seeds": int(info["n_seeds"]),
            "basin_tolerance": {
                "eps": board.basin_abs.get(str(task), board.basin_eps),
                "absolute": str(task) in board.basin_abs or board.spec.basin_absolute,
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
            "success_rate": _clean(r["success_rate"]),
            "divergence_rate": _clean(r["divergence_rate"]),
            **ttt,
            "ttt_n": int(r["ttt_n"]),
            "reached_target": reached,
            "robustness": robustness_dict(board, r["task"], r),
            **_gate_fields(board, r["task"], r["optimizer"]),
        }
    optimizers: dict[str, Any] = {}
    for opt, s in board.optimizers.iterrows():
        optimizers[str(opt)] = {
            "n_tasks": int(s["n_tasks"]),
            "mean_rank": _clean(s["mean_rank"]),
            "wins": int(s["wins"]),
            "n_trials": int(s["n_trials"]),
            "n_seeds": int(s["n_seeds"]),
            "mean_robust_rank": _clean(s["mean_robust_rank"]),
            "robust_by": s["robust_by"] or None,
            "profile_scores": {p.name: _clean(p.scores.get(opt, np.nan)) for p in board.profiles},
        }
    return {
        "format": JSON_FORMAT,
        "suite": suite_name,
        "spec": {
            "ks": list(board.ks),
            "basin_eps": board.basin_eps,
            "basin_absolute": board.spec.basin_absolute,
            "sensitivity_decades": board.spec.sensitivity_decades,
            "alpha": board.spec.alpha,
            "bootstrap": board.spec.bootstrap,
            "importance": board.spec.importance,
            "reference": board.reference,
            "r_max": board.r_max,
            "wall_clock": board.wall_clock,  # false: seconds_to_target is null (not measured)
        },
        "tasks": tasks,
        "optimizers": optimizers,
    }


def _gate_fields(board: Leaderboard, task: str, optimizer: str) -> dict[str, Any]:
    """What `bench check` compares besides the scores: the value of each seed rerun (seed -> value, to
    pair seeds) and the cost of a step (per trial a mean after its first steps, the median over trials,
    and ratios to the reference measured in the same run)."""
    values = board.seed_values.get((task, optimizer), {})
    out: dict[str, Any] = {"seed_values": {str(seed): _clean(v) for seed, v in values.items()}}
    costs = board.costs
    if costs is not None and (task, optimizer) in costs.index:
        row = costs.loc[(task, optimizer)]
        out["cost"] = {
            "reference": board.reference,
            "n_timed": int(row["n_timed"]),
            **{name: _clean(row[name]) for name in records.COST_METRICS},
            **{f"{name}_ratio": _clean(row[f"{name}_ratio"]) for name in records.COST_METRICS},
        }
    return out


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
        + ") count as what a failure costs (each task's metric at chance or at initialization, "
        "L0), and every value is clipped at L0 (Wortsman et al.'s min(L, L0)); pruned trials are "
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
    robust = bool(np.isfinite(board.optimizers["mean_robust_rank"].astype(float)).any())
    header = ["optimizer", "tasks", "mean rank (tuned)", "wins"] + (["mean rank (robust)"] if robust else [])
    header += [f"profile ({names[c]})" for c in prof_cols] + ["tune trials", "seed reruns"]
    body = []
    for opt, s in board.optimizers.iterrows():
        body.append(
            [str(opt), str(int(s["n_tasks"])), _fmt(s["mean_rank"], 3), str(int(s["wins"]))]
            + ([_fmt(s["mean_robust_rank"], 3)] if robust else [])
            + [_fmt(s[c], 3) for c in prof_cols]
            + [str(int(s["n_trials"])), str(int(s["n_seeds"]))]
        )
    lines += _table(header, body)
    lines += ["", summary_sentence(board)]
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
        lines += [
            "",
            f"## {task}",
            "",
            f"Metric `{info['metric']}` ({better} is better), {target}. "
            f"{int(info['n_trials'])} tune trials and {int(info['n_seeds'])} seed reruns; "
            f"{failure_sentence(board, task, info)}",
            "",
        ]
        has_tokens = np.isfinite(sub["tokens_to_target"].astype(float)).any()
        # a target nobody reached: one sentence instead of columns of `never` and 0%
        reached = (sub["success_rate"].fillna(0) > 0) | np.isfinite(sub["steps_to_target"].astype(float))
        has_target = bool(np.isfinite(info["target"])) and bool(reached.any())
        has_seeds = bool(sub["n_seeds"].astype(int).any())
        sampled = bool(np.isfinite(sub["median"].astype(float)).any())
        header = ["rank", "optimizer", "best"] + (["seeds mean ± std (n)"] if has_seeds else [])
        header += (["median"] + [f"E[best of {k}]" for k in ks] if sampled else []) + ["diverged"]
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
            row = [("=" if r["tied"] else "") + str(r["rank"]), r["optimizer"], _fmt(r["best"])]
            row += [seeds] if has_seeds else []
            if sampled:
                row += [_fmt(r["median"]) if not r["why_random"] else "n/a"]
                row += ["n/a" if r["why_random"] or k > r["n_scored"] else _fmt(r[f"E_{k}"]) for k in ks]
            row += [_pct(r["divergence_rate"])]
            if has_target:
                ttt_n = f" ({r['ttt_n']})" if r["n_seeds"] else ""
                row += [_pct(r["success_rate"]), _ttt(r["steps_to_target"]) + ttt_n]
                row += [_ttt(r["tokens_to_target"]) + ttt_n] if has_tokens else []
                row += [_ttt(r["seconds_to_target"], 3) + ttt_n] if board.wall_clock else []
            row += [str(r["n_trials"]), _outcomes(r)]
            body.append(row)
        lines += _table(header, body)
        lines += not_shown(sub, sampled, ks)
        if np.isfinite(info["target"]) and not has_target:
            lines += [
                "",
                f"No optimizer reached the target {_fmt(info['target'])} (success 0%, time to target never).",
            ]
        lines += _cost_lines(board, task)
        for key, title in (
            (f"lr_sensitivity_{_safe(task)}", "learning-rate sensitivity"),
            (f"expected_best_{_safe(task)}", "expected best of k"),
            (f"curves_{_safe(task)}", "curves of the best trials"),
        ):
            if key in plots:
                lines += ["", f"![{title}]({plots[key].as_posix()})"]
        lines += robustness_section(board, task, plots)
    lines += ["", "## Legend", "", LEGEND, ROBUST_LEGEND]
    return "\n".join(lines)


def _bytes(x: float) -> str:
    if not np.isfinite(x):
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.0f} B"


def _cost_lines(board: Leaderboard, task: str) -> list[str]:
    """A small table of what a step costs each optimizer on `task` (empty when nothing was measured)."""
    costs = board.costs
    if costs is None or task not in costs.index.get_level_values(0):
        return []
    sub = costs.xs(task, level="task")
    if not np.isfinite(sub[["step_time_s", "state_bytes"]].to_numpy(dtype=float)).any():
        return []

    def ratio(x: float) -> str:
        return "—" if not np.isfinite(x) else f"{x:.2f}x"

    ref = f"vs {board.reference}"
    columns: list[tuple[str, Callable[[pd.Series], str]]] = []  # (header, row -> cell)
    timed = board.wall_clock  # seconds are shown only where the suite says its machine is quiet
    if timed:
        columns += [
            ("step ms (trials)", lambda r: _fmt(1000 * r["step_time_s"], 3) + f" ({int(r['n_timed'])})"),
            (ref, lambda r: ratio(r["step_time_s_ratio"])),
            ("update ms", lambda r: _fmt(1000 * r["update_time_s"], 3)),
            (ref, lambda r: ratio(r["update_time_s_ratio"])),
        ]
    columns += [
        ("optimizer state", lambda r: _bytes(r["state_bytes"])),
        (ref, lambda r: ratio(r["state_bytes_ratio"])),
    ]
    header = ["optimizer", *(h for h, _ in columns)]
    body = [[str(opt), *(cell(r) for _, cell in columns)] for opt, r in sub.iterrows()]
    what = (
        "per trial the mean step time after its first steps, the median over completed trials; ratios to "
        f"`{board.reference}` measured in the same run"
        if timed
        else f"the optimizer state's bytes, ratio to `{board.reference}`; step times are recorded but not "
        "shown: they are wall-clock on a possibly shared machine (`leaderboard: {wall_clock: true}` shows them)"
    )
    return ["", f"Cost of a step ({what}):", "", *_table(header, body)]


# ---------------------------------------------------------------------------------------------------
# Robustness: the leaderboard's robustness section (bench.score.robustness_scores)


def summary_sentence(board: Leaderboard) -> str:
    """What the summary's two rankings rank by."""
    by = sorted({b for b in board.rows["robust_by"].fillna("") if b})
    if not by:
        return (
            "**mean rank (tuned)** ranks by the best tuned result (the seed mean where the best "
            "configuration was rerun). No robustness ranking: no task has a robustness score for every "
            "optimizer (see each task's robustness table)."
        )
    meaning = {
        "lr sensitivity": "lr sensitivity (lower: less lost within a decade of learning rates around the optimum)",
        "CPE": "CPE (the expected best of k random configurations averaged over budgets k, the small ones "
        "weighted most: better with a small tuning budget)",
    }
    return (
        "Two rankings: **mean rank (tuned)** ranks by the best tuned result (the seed mean where the best "
        f"configuration was rerun); **mean rank (robust)** ranks by {' or '.join(meaning.get(b, b) for b in by)}, "
        "over the tasks that have it (each task's robustness table)."
    )


def failure_sentence(board: Leaderboard, task: str, info: Mapping[str, Any]) -> str:
    why = board.failure_why.get(task)
    if bool(info.get("declared", False)):
        how = f" ({why})" if why else " (declared by the task)"
        return f"a failed trial costs {_fmt(info['worst'])}{how}, and every value is clipped there."
    return (
        f"a failed trial costs {_fmt(info['worst'])}, the worst completed value of the task "
        f"({why or 'the task declares no failure value'})."
    )


def not_shown(sub: pd.DataFrame, sampled: bool, ks: Sequence[int]) -> list[str]:
    """A line saying which of the main table's statistics are left out, and why."""
    reasons = sorted({str(w) for w in sub["why_random"].fillna("") if w})
    if not reasons:
        return []
    what = "median and E[best of k]" if not sampled else "`n/a` median and E[best of k]"
    return ["", f"Not shown ({what}): " + "; ".join(reasons) + "."]


def _flag(value: str, censored: bool) -> str:
    return (">=" if censored else "") + value


def _na_reasons(cells: dict[str, dict[str, str]]) -> list[str]:
    """`n/a` footnotes: column -> {optimizer: reason}, one line per (column, reason)."""
    lines = []
    for col, by_opt in cells.items():
        grouped: dict[str, list[str]] = {}
        for opt, why in by_opt.items():
            grouped.setdefault(why, []).append(opt)
        lines += [f"- {col} `n/a` for {', '.join(opts)}: {why}" for why, opts in grouped.items()]
    return lines


def _num(x: Any, digits: int = 3, prefix: str = "", censored: bool = False) -> str | None:
    """A finite number as text (`>=` when it is a lower bound); None when it is not a number."""
    if x is None or not isinstance(x, (int, float, np.integer, np.floating)) or not np.isfinite(x):
        return None if not (isinstance(x, float) and math.isinf(x)) else "never"
    return (">=" if censored else "") + prefix + _fmt(x, digits)


Cell = tuple[str | None, str]  # (text, or None for n/a; why it is n/a)


def robustness_section(board: Leaderboard, task: str, plots: Mapping[str, Path]) -> list[str]:
    """The task's robustness table (only the columns some optimizer has, each `n/a` explained), then
    what is not shown and why, and the robustness plots."""
    sub = board.rows[board.rows["task"] == task].sort_values(["robust_rank", "rank"], kind="stable")
    axes = board.axes[board.axes["task"] == task]
    edge = {"low": " (low edge)", "high": " (high edge)"}

    def lr(col: str, **kw: Any) -> Any:
        return lambda r: (_num(r[col], **{k: v(r) if callable(v) else v for k, v in kw.items()}), r["why_lr"])

    cols: list[tuple[str, Any]] = []  # (header, row -> Cell)
    if np.isfinite(sub["robust_rank"].astype(float)).any():
        cols.append(("robust rank", lambda r: (_num(r["robust_rank"]), f"no {r['robust_by'] or 'score'}")))
    if np.isfinite(sub["basin_decades"].astype(float)).any():
        cols += [
            ("best lr", lambda r: (_num(r["best_lr"]) and _num(r["best_lr"]) + edge.get(str(r["lr_edge"]), ""), r["why_lr"])),
            ("lr basin (decades)", lr("basin_decades", censored=lambda r: bool(r["basin_open"]))),
            ("lr sensitivity", lambda r: (_num(r["lr_sensitivity"]), _axis(axes, r, "lr")[1] or r["why_lr"])),
            ("headroom", lr("headroom", prefix="x", censored=lambda r: bool(r["headroom_censored"]))),
        ]  # fmt: skip
    for axis in [a for a in dict.fromkeys(axes["axis"]) if a != "lr"]:
        cols.append((f"{axis} sensitivity", lambda r, a=axis: _axis(axes, r, a)))
    if np.isfinite(sub["cpe"].astype(float)).any():
        alpha = f"alpha-tunability (alpha {board.spec.alpha:g})"
        cols += [
            ("CPE", lambda r: (_num(r["cpe"], 4), r["why_tunability"])),
            (alpha, lambda r: (_num(r["alpha_tunability"]), r["why_tunability"])),
        ]
    if sub["top_param"].notna().any():
        cols.append(("most important", lambda r: (
            isinstance(r["top_param"], str) and f"{r['top_param']} ({_fmt(r['top_importance'], 2)})" or None,
            r["why_importance"],
        )))  # fmt: skip
    out = ["", f"### Robustness: {task}", ""]
    reasons = _left_out(sub, {h for h, _ in cols})
    if not cols:
        return [
            *out,
            "No robustness column applies: " + "; ".join(reasons) + ".",
            *_robust_plots(task, plots),
        ]
    body, na = [], {}
    for r in sub.to_dict("records"):
        row = [r["optimizer"]]
        for header, cell in cols:
            text, why = cell(r)
            row.append(text if text else "n/a")
            if not text:
                na.setdefault(header, {})[r["optimizer"]] = why or "not computed"
        body.append(row)
    eps = board.basin_abs.get(task)
    absolute = eps is not None or board.spec.basin_absolute
    basin = f"{'absolute' if absolute else 'relative'} eps {eps if eps is not None else board.basin_eps:g}"
    out += _table(["optimizer", *(h for h, _ in cols)], body)
    windows = f"windowed sensitivities over {board.spec.sensitivity_decades:g} decade(s)"
    if any(h == "lr basin (decades)" for h, _ in cols):
        out += ["", f"lr basin with {basin}; {windows} around each optimizer's own optimum."]
    elif any(h.endswith("sensitivity") for h, _ in cols):
        out += ["", f"{windows.capitalize()} around each optimizer's own optimum."]
    if na:
        out += ["", *_na_reasons(na)]
    if reasons:
        out += ["", "Not shown: " + "; ".join(reasons) + "."]
    return out + _robust_plots(task, plots)


def _axis(axes: pd.DataFrame, r: Mapping[str, Any], axis: str) -> Cell:
    """An optimizer's sensitivity on one swept axis, with its edge flag."""
    sel = axes[(axes["optimizer"] == r["optimizer"]) & (axes["axis"] == axis)]
    if sel.empty:
        return None, f"'{axis}' was not swept for it (not in its search space, or no schedule to warm up)"
    a = sel.iloc[0]
    text = _num(a["sensitivity"])
    return (text and text + (f" ({a['edge']} edge)" if a["edge"] else "")), str(a["why"] or "")


def _left_out(sub: pd.DataFrame, shown: set[str]) -> list[str]:
    """Why the robustness columns absent from the table are absent (one reason each, the first)."""
    out = []
    for header, why_col in (
        ("lr basin, sensitivity and headroom", "why_lr"),
        ("CPE and alpha-tunability", "why_tunability"),
        ("importance", "why_importance"),
    ):
        first = {"lr basin, sensitivity and headroom": "lr basin (decades)", "CPE and alpha-tunability": "CPE",
                 "importance": "most important"}[header]  # fmt: skip
        if first in shown:
            continue
        whys = [str(w) for w in sub[why_col].fillna("") if w]
        if whys:
            out.append(f"{header} ({whys[0]})")
    return out


def _robust_plots(task: str, plots: Mapping[str, Path]) -> list[str]:
    out = []
    for key, title in (
        (f"sensitivity_{_safe(task)}", "sensitivity to each hyperparameter"),
        (f"importance_{_safe(task)}", "hyperparameter importance"),
    ):
        if key in plots:
            out += ["", f"![{title}]({plots[key].as_posix()})"]
    return out


def robustness_dict(board: Leaderboard, task: str, r: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of one (task, optimizer)'s robustness: every column, its axes, its importance, its
    band at the leaderboard's ks, and why what is null is null."""
    opt = r["optimizer"]
    axes = board.axes[(board.axes["task"] == task) & (board.axes["optimizer"] == opt)]
    imp = board.importances[(board.importances["task"] == task) & (board.importances["optimizer"] == opt)]
    band = board.bands.get((task, opt))
    out: dict[str, Any] = {
        k: _clean(r[k])
        for k in ("protocol", "lr_points", "lr_edge", "basin_decades", "basin_open", "lr_sensitivity",
                  "headroom", "headroom_censored", "cpe", "alpha_tunability", "robust_rank", "robust_by")
    }  # fmt: skip
    out["axes"] = {
        str(a["axis"]): {k: _clean(a[k]) for k in ("scale", "n_points", "best_at", "best", "edge", "sensitivity", "why")}
        for a in axes.to_dict("records")
    }  # fmt: skip
    out["importance"] = {str(i["param"]): _clean(i["importance"]) for i in imp.to_dict("records")}
    if band is not None:
        ks, lo, hi = band
        at = {int(k): (float(a), float(b)) for k, a, b in zip(ks, lo, hi, strict=True)}
        out["expected_best_band"] = {str(k): [_clean(v) for v in at[k]] for k in board.ks if k in at}
    out["why"] = {k: _clean(r[f"why_{k}"]) or None for k in ("random", "lr", "tunability", "importance")}
    return out


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
    ax.xaxis.set_major_formatter(FuncFormatter(_tick))
    ax.minorticks_off()  # building minor ticks costs more than drawing the data


def _tick(v: float, _: Any) -> str:
    return f"{v:.0e}" if v < 1e-2 or v >= 1e4 else f"{v:g}"


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
    """Tunability curves (Sivaprasad et al. 2020): E_k vs k for each optimizer on the task, with the
    bootstrap band of each curve and the alpha-tunability threshold."""
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
        if key in board.bands:
            ks, lo, hi = board.bands[key]
            ax.fill_between(ks, lo, hi, color=colors[key[1]], alpha=0.15, lw=0)
    for k in board.ks:
        ax.axvline(k, lw=0.5, color="lightgray")
    if np.isfinite(info["target"]):
        ax.axhline(info["target"], ls="--", lw=1, color="gray", label="target")
    finals = [float(np.asarray(board.curves[k])[-1]) for k in keys]
    best = min(finals) if info["mode"] == "min" else max(finals)
    if best > 0:  # alpha-tunability assumes a positive metric
        a = board.spec.alpha
        ax.axhline(best * (2 - a) if info["mode"] == "min" else best * a, ls=":", lw=1, color="black",
                   label=f"within {1 - a:.0%} of the best")  # fmt: skip
    _k_axis(ax, n)
    ax.set(xlabel="k (configurations tried)", ylabel=f"expected best {info['metric']}")
    ax.set_title(f"{task}: expected best of k random configurations (band: 90% bootstrap)", fontsize=10)
    _legend(ax)
    return _save(fig, path)


def plot_sensitivity(board: Leaderboard, trials: pd.DataFrame, task: str, path: Path) -> Path | None:
    """Zhao et al. 2024's figure: one panel per swept hyperparameter (the lr first), the final metric
    against the swept value, one line per optimizer; x: every trial there failed (drawn at what a
    failure costs, L0: the dashed line, or at the panel's edge when L0 is far off the curves), star: the
    curve's optimum, diamond: the seed reruns of the best configuration (mean +- std), on the panel
    where it lies."""
    pts = board.points[board.points["task"] == task]
    if pts.empty:
        return None
    info = board.tasks.loc[task]
    present = set(pts["axis"])
    order = ["lr", *sorted(present - {"lr", "warmup"}), "warmup"]
    order = [a for a in order if a in present]
    colors = _colors(board.rows["optimizer"].unique().tolist())
    fig, panels = _figure(len(order), width=3.6, legend=0.0)
    fig.subplots_adjust(bottom=0.25)
    seeds = _seed_marks(board, trials, task)
    l0, sign = float(info["worst"]), -1.0 if info["mode"] == "max" else 1.0
    ok = pts.loc[~pts["failed"].astype(bool), "value"].to_numpy(dtype=float)
    lo, hi = (ok.min(), ok.max()) if ok.size else (l0, l0)
    span = max(hi - lo, 1e-3 * max(abs(hi), 1.0))
    off = np.isfinite(l0) and sign * (l0 - (hi if sign > 0 else lo)) > 2 * span  # L0 far beyond the curves
    edge_y = (hi + 0.1 * span) if sign > 0 else (lo - 0.1 * span)
    for ax, axis in zip(panels, order, strict=True):
        sel = pts[pts["axis"] == axis]
        scale = str(sel["scale"].iloc[0])
        for opt, g in sel.groupby("optimizer", sort=True):
            x = np.arange(len(g)) if scale == "choice" else g["at"].astype(float).to_numpy()
            y = g["value"].to_numpy(dtype=float)
            failed = g["failed"].to_numpy(dtype=bool)
            if off:
                y = np.where(sign * (y - edge_y) > 0, edge_y, y)  # at the edge: drawn, off the scale
            c = colors[opt]
            ax.plot(x, y, "-o", ms=3, lw=1.2, color=c, label=str(opt))
            if failed.any():
                ax.scatter(x[failed], y[failed], marker="x", s=40, color=c, zorder=3)
            best = g["best"].to_numpy(dtype=bool)
            ax.scatter(x[best], y[best], marker="*", s=120, color=c, edgecolor="black", lw=0.5, zorder=4)
            if scale == "choice":
                ax.set_xticks(x, [str(v) for v in g["at"]])
            if (opt, axis) in seeds:
                at, mean, std = seeds[(opt, axis)]
                at = list(g["at"]).index(at) if scale == "choice" else at
                ax.errorbar([at], [mean], yerr=[std if np.isfinite(std) else 0.0], color=c, marker="D", ms=4,
                            mfc="white", capsize=3, lw=1, zorder=5)  # fmt: skip
        if off:
            ax.set_ylim(*sorted((lo - 0.05 * span * sign, edge_y + 0.05 * span * sign)))
        elif np.isfinite(l0):
            ax.axhline(l0, ls="--", lw=1, color="gray", label="failure cost L0")
        if scale == "log":
            _log_x(ax)
        ax.set(xlabel=axis, ylabel=str(info["metric"]) if axis == order[0] else "")
        ax.set_title(f"{task}: {axis}", fontsize=10)
    handles, labels = panels[0].get_legend_handles_labels()
    note = (
        f"x: failed (cost L0 = {_fmt(l0)}, drawn at the edge)" if off else "x: failed, at the failure cost L0"
    )
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8, frameon=False,
               title=f"star: optimum; diamond: seed reruns of the best configuration (mean +- std); {note}", title_fontsize=8)  # fmt: skip
    return _save(fig, path)


def _seed_marks(
    board: Leaderboard, trials: pd.DataFrame, task: str
) -> dict[tuple[str, str], tuple[Any, float, float]]:
    """(optimizer, axis) -> (axis value, seed mean, seed std: NaN for one rerun) for each optimizer whose
    best configuration was rerun on seeds, on the axis its best trial lies on."""
    out: dict[tuple[str, str], tuple[Any, float, float]] = {}
    if "axis" not in trials.columns:
        return out
    rows = board.rows[(board.rows["task"] == task) & (board.rows["n_seeds"] > 0)]
    by_id = trials.set_index("trial_id")
    for r in rows.to_dict("records"):
        if r["best_trial_id"] not in by_id.index:
            continue
        best = by_id.loc[r["best_trial_id"]]
        best = best.iloc[0] if isinstance(best, pd.DataFrame) else best
        if isinstance(best["axis"], str) and best["axis"]:
            out[(r["optimizer"], best["axis"])] = (
                best["axis_value"],
                float(r["seed_mean"]),
                float(r["seed_std"]),
            )
    return out


def plot_importance(board: Leaderboard, task: str, path: Path) -> Path | None:
    """Hyperparameter importance per optimizer on the task: one bar per (hyperparameter, optimizer)."""
    imp = board.importances[board.importances["task"] == task]
    if imp.empty:
        return None
    colors = _colors(board.rows["optimizer"].unique().tolist())
    params = sorted(set(imp["param"]))
    opts = sorted(set(imp["optimizer"]))
    fig, (ax,) = _figure()
    fig.subplots_adjust(left=0.1 + 0.012 * max(len(p) for p in params))  # room for the names
    height = 0.8 / len(opts)
    for j, opt in enumerate(opts):
        share = imp[imp["optimizer"] == opt].set_index("param")["importance"].reindex(params).fillna(0.0)
        ax.barh(
            np.arange(len(params)) + j * height,
            share.to_numpy(dtype=float),
            height,
            color=colors[opt],
            label=opt,
        )
    ax.set_yticks(np.arange(len(params)) + 0.4 - height / 2, params)
    ax.set_xlim(0, 1)
    ax.set(xlabel=f"importance ({board.spec.importance}, share of the study's total)")
    ax.set_title(f"{task}: hyperparameter importance", fontsize=10)
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
    board: Leaderboard,
    df: pd.DataFrame,
    curves: Curves,
    out_dir: Path,
    suite_name: str,
    scaling: Scaling | None = None,
) -> list[Path]:
    """Write `<suite>.md`, `.html`, `.csv`, `.json` and the plots under `<suite>/`; return every path.
    With `scaling` (a suite with scans or horizons), the scaling section and its plots too."""
    out_dir = Path(out_dir)
    df = prepare(df)  # once, not per plot
    plot_dir = out_dir / _safe(suite_name)
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    for task in board.tasks.index.astype(str):
        s = _safe(task)
        swept = bool((board.points["task"] == task).any())  # the sensitivity panels show its lr curve
        for key, draw in (
            (f"sensitivity_{s}", lambda p, task=task: plot_sensitivity(board, df, task, p)),
            (
                f"lr_sensitivity_{s}",
                lambda p, task=task, swept=swept: None if swept else plot_lr_sensitivity(board, df, task, p),
            ),
            (f"expected_best_{s}", lambda p, task=task: plot_expected_best(board, task, p)),
            (f"importance_{s}", lambda p, task=task: plot_importance(board, task, p)),
            (f"curves_{s}", lambda p, task=task: plot_best_curves(board, curves or {}, task, p)),
        ):
            if (path := draw(plot_dir / f"{key}.png")) is not None:
                plots[key] = path
    for unit in dict.fromkeys(p.time for p in board.profiles):
        key = f"performance_profile_{unit}"
        if (path := plot_performance_profiles(board, unit, plot_dir / f"{key}.png")) is not None:
            plots[key] = path

    section, data = "", {}
    if scaling is not None and not scaling.empty:
        scaling_plots = write_scaling_plots(scaling, plot_dir)
        plots.update(scaling_plots)
        section = "\n" + render_scaling(
            scaling, {k: p.relative_to(out_dir) for k, p in scaling_plots.items()}
        )
        data = {"scaling": scaling_dict(scaling)}

    md, html, csv, js = (out_dir / f"{suite_name}{ext}" for ext in FILES)
    rel = {k: p.relative_to(out_dir) for k, p in plots.items()}
    text = render_markdown(board, suite_name, rel) + section + "\n"
    md.write_text(text)
    html.write_text(render_html(text, out_dir, f"Leaderboard: {suite_name}"))
    board.rows.to_csv(csv, index=False)
    js.write_text(
        json.dumps({**leaderboard_dict(board, suite_name), **data}, indent=2, allow_nan=False) + "\n"
    )
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


def robustness_inputs(suite: Suite) -> dict[str, Any]:
    """What `score.leaderboard` needs from the suite for its robustness section: the importance
    evaluator (Optuna's, through `bench.search.importances`), the search spaces, and how each task's
    failure cost was set."""
    evaluator = suite.leaderboard.importance
    importance = None
    if evaluator != "none":
        from bench import search  # Optuna: only when a leaderboard is built

        def importance(configs: list[dict[str, Any]], values: list[float], space: Mapping[str, Any]) -> dict:
            return search.importances(configs, values, space, evaluator)

    return {
        "importance": importance,
        "spaces": {o.label: o.search_space for o in getattr(suite, "optimizers", ())},
        "failure_why": {t.name: t.failure_why for t in getattr(suite, "tasks", ())},
    }


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
    board = score.leaderboard(table, suite.leaderboard, **robustness_inputs(suite))
    run_of = dict(zip(table["trial_id"], table["run_id"], strict=True))
    curves = {}
    for task, rows in board.rows.groupby("task"):
        best = {t: run_of[t] for t in rows["best_trial_id"].dropna() if t in run_of}
        metric = table.loc[table["task"] == task, "metric"].iloc[0]
        curves.update(tracker.curves(best, metric=metric))
    scaling = suite_scaling(suite, tracker)
    paths = write_leaderboard(board, table, curves, out_dir, suite.name, scaling)
    run_id = run_id or tracker.suite_run(suite.name)
    tracker.log_dict(run_id, suite.resolved, records.RESOLVED_ARTIFACT)
    tracker.log_artifacts(run_id, [p for p in paths if p.suffix in FILES], records.LEADERBOARD_DIR)
    plots = f"{records.LEADERBOARD_DIR}/{_safe(suite.name)}"  # as on disk: the .md's links resolve
    tracker.log_artifacts(run_id, [p for p in paths if p.suffix == ".png"], plots)
    metrics = {"trials": len(table), **(scaling_metrics(scaling) if scaling else {})}
    tracker.log(run_id, metrics=metrics, tags={records.LEADERBOARD_OF: source})
    tracker.finish(run_id)
    out(f"bench: leaderboard written from {len(table)} trial runs")
    for line in where_to_look(suite, tracker, paths[0]):
        out(line)
    return paths


# ---------------------------------------------------------------------------------------------------
# The scaling section: scans and horizons (bench.laws)

SCALING_LEGEND = """\
How to read it (formulas in `bench/laws.py`; every number is over completed trials only):

- **steps to target at B**: the fewest optimizer steps any learning rate of the point's sweep needed to
  reach the task's target (a transferred lr: its one run). **critical batch** (Zhang et al. 2024): where
  steps to target exceed perfect linear scaling from the smallest batch, S(B0) B0 / B, by 20%,
  interpolated in log B between the two measured batches around it; `> B` when no measured batch is
  20% over (it lies beyond the scan); `n/a` with fewer than two batches that reached the target.
  **B_noise** fits S(B) = S_min (1 + B_noise / B) (McCandlish et al. 2018), under which B* = 1.2 B0 +
  0.2 B_noise: a smooth cross-check of the interpolation.
- **lr exponent**: the slope alpha of log lr* against log B by least squares, with its 95% t-interval
  (none from 2 batches); lr* at each batch is the vertex of a parabola in log lr through the sweep's best
  trial and its neighbours. **declared**: the optimizer entry's `lr_scaling` rule (linear: 1, sqrt:
  1/2, none: 0; Goyal et al. 2017, Malladi et al. 2022); **agrees**: the declared slope lies in the
  interval. Points whose lr was transferred are not in this fit.
- **loss against data**: at each horizon (or length point), the best value over the learning rates of
  the sweep, with the EMA of the weights at the same point when the optimizer has `ema:`. D is tokens,
  or examples (steps x global batch) for tasks that count no tokens. **L(D) = a D^-b + c** fitted per
  optimizer (`exact` with 3 points: no degree of freedom; `n/a` below 3).
- **speedup** (Wen et al. 2025): the data the reference optimizer's fitted law needs to reach the same
  loss, divided by the data used: 1.5x means the reference would need 1.5 times the data; `inf` below
  the reference's asymptote c; extrapolated when outside the reference's measured range.
"""


def _curve_name(task: str, group: str) -> str:
    return f"{task} ({group})" if group else task


def _plot_key(kind: str, task: str, group: str) -> str:
    return f"{kind}_{_safe(task)}" + (f"_{_safe(group.replace('=', ''))}" if group else "")


def _log_y(ax: Any) -> None:
    """Log y axis with ticks at 1, 2 and 5 of each decade (short ranges get ticks too)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(_tick))
    ax.minorticks_off()


def _value_ticks(ax: Any, values: Any, label: Callable[[float], str] = lambda v: f"{v:g}") -> None:
    """The measured values (batch sizes, data) as the x ticks of a log axis."""
    ticks = sorted({float(v) for v in values})
    ax.set_xticks(ticks, [label(v) for v in ticks])


def plot_steps_vs_batch(sc: Scaling, task: str, group: str, path: Path) -> Path | None:
    """Steps to target against batch size (log-log), the ideal linear-scaling line from each optimizer's
    smallest batch (dashed), and each optimizer's critical batch (dotted)."""
    rows = sc.batch[(sc.batch["task"] == task) & (sc.batch["group"] == group)]
    rows = rows[np.isfinite(rows["steps_to_target"])]
    if rows.empty:
        return None
    colors = _colors(sc.batch["optimizer"].unique().tolist())
    fig, (ax,) = _figure()
    crit = sc.critical[(sc.critical["task"] == task) & (sc.critical["group"] == group)].set_index("optimizer")
    for opt, g in rows.groupby("optimizer", sort=False):
        g = g.sort_values("global_batch_size")
        b, s = g["global_batch_size"].to_numpy(float), g["steps_to_target"].to_numpy(float)
        ax.plot(b, s, "-o", ms=4, color=colors[opt], label=str(opt))
        ax.plot(b, s[0] * b[0] / b, "--", lw=0.8, color=colors[opt])
        cb = crit.loc[opt, "critical_batch"] if opt in crit.index else math.nan
        if math.isfinite(cb) and not bool(crit.loc[opt, "beyond"]):
            ax.axvline(cb, ls=":", lw=1, color=colors[opt])
    _log_x(ax)
    _log_y(ax)
    _value_ticks(ax, rows["global_batch_size"])
    ax.set(xlabel="global batch size", ylabel="steps to target")
    ax.set_title(
        f"{_curve_name(task, group)}: steps to target (dashed: linear scaling, dotted: B*)", fontsize=10
    )
    _legend(ax)
    return _save(fig, path)


def plot_lr_vs_batch(sc: Scaling, task: str, group: str, path: Path) -> Path | None:
    """lr* against batch size (log-log) with each optimizer's fitted slope."""
    rows = sc.batch[(sc.batch["task"] == task) & (sc.batch["group"] == group) & sc.batch["tuned"]]
    rows = rows[np.isfinite(rows["lr_star"])]
    if rows.empty:
        return None
    colors = _colors(sc.batch["optimizer"].unique().tolist())
    fits = sc.lr_fit[(sc.lr_fit["task"] == task) & (sc.lr_fit["group"] == group)].set_index("optimizer")
    fig, (ax,) = _figure()
    for opt, g in rows.groupby("optimizer", sort=False):
        b = g["global_batch_size"].to_numpy(float)
        label = str(opt)
        if opt in fits.index and math.isfinite(fits.loc[opt, "slope"]):
            f = fits.loc[opt]
            line = np.exp(f["intercept"]) * np.power(np.sort(b), f["slope"])
            ax.plot(np.sort(b), line, "-", lw=1, color=colors[opt])
            label += f": {f['slope']:.2f}" + (f" (declared {f['declared_slope']:g})" if f["declared"] else "")
        ax.plot(b, g["lr_star"], "o", ms=4, color=colors[opt], label=label)
    _log_x(ax)
    _log_y(ax)
    _value_ticks(ax, rows["global_batch_size"])
    ax.set(xlabel="global batch size", ylabel="best learning rate lr*")
    ax.set_title(f"{_curve_name(task, group)}: lr* vs batch, fitted slopes", fontsize=10)
    _legend(ax)
    return _save(fig, path)


def plot_loss_vs_data(sc: Scaling, task: str, group: str, path: Path) -> Path | None:
    """Loss against data (log x) per optimizer, the fitted power law, and the EMA (hollow) when logged."""
    rows = sc.loss[(sc.loss["task"] == task) & (sc.loss["group"] == group)]
    if rows.empty:
        return None
    colors = _colors(sc.loss["optimizer"].unique().tolist())
    fig, (ax,) = _figure()
    for opt, g in rows.groupby("optimizer", sort=False):
        g = g.sort_values("data")
        ax.plot(g["data"], g["value"], "o", ms=4, color=colors[opt], label=str(opt))
        if np.isfinite(g["ema"]).any():
            ax.plot(g["data"], g["ema"], "o", ms=5, mfc="none", color=colors[opt], label=f"{opt} (EMA)")
        law = sc.fits.get((task, group, str(opt)))
        if law is not None and law.ok:
            d = np.geomspace(g["data"].min(), g["data"].max(), 50)
            ax.plot(d, law(d), "-", lw=1, color=colors[opt])
    _log_x(ax)
    _log_y(ax)
    _value_ticks(ax, rows["data"], si)
    unit = str(rows["unit"].iloc[0])
    ax.set(xlabel=f"data ({unit})", ylabel=sc.metric.get(task, "value"))
    ax.set_title(f"{_curve_name(task, group)}: loss vs data, L(D) = a D^-b + c", fontsize=10)
    _legend(ax)
    return _save(fig, path)


def _curves_of(table: pd.DataFrame) -> list[tuple[str, str]]:
    if table.empty:
        return []
    return list(dict.fromkeys(zip(table["task"], table["group"], strict=True)))


def write_scaling_plots(sc: Scaling, plot_dir: Path) -> dict[str, Path]:
    plots: dict[str, Path] = {}
    for kind, table, draw in (
        ("steps_vs_batch", sc.batch, plot_steps_vs_batch),
        ("lr_vs_batch", sc.batch, plot_lr_vs_batch),
        ("loss_vs_data", sc.loss, plot_loss_vs_data),
    ):
        for task, group in _curves_of(table):
            key = _plot_key(kind, task, group)
            if (path := draw(sc, task, group, plot_dir / f"{key}.png")) is not None:
                plots[key] = path
    return plots


def _never(steps: float) -> str:
    """Steps to target of a point: NaN there means the target was never reached."""
    return _fmt(steps) if math.isfinite(steps) else "never"


def _critical_cell(r: Mapping[str, Any]) -> str:
    if not math.isfinite(r["critical_batch"]):
        return f"n/a ({r['n_batches']} batch{'es' if r['n_batches'] != 1 else ''} reached the target)"
    return f"> {r['critical_batch']:g}" if r["beyond"] else f"{r['critical_batch']:.3g}"


def _slope_cell(r: Mapping[str, Any]) -> str:
    if not math.isfinite(r["slope"]):
        return f"n/a ({r['n_batches']} tuned batch{'es' if r['n_batches'] != 1 else ''})"
    ci = f" [{r['low']:.2f}, {r['high']:.2f}]" if math.isfinite(r["low"]) else " (no interval: 2 batches)"
    return f"{r['slope']:.2f}{ci}"


def _law_cell(r: Mapping[str, Any]) -> str:
    if not all(math.isfinite(r[k]) for k in ("a", "b", "c")):
        return f"n/a ({r.get('why') or str(r['n_points']) + ' points'})"
    return f"{r['a']:.3g} D^-{r['b']:.3g} + {r['c']:.3g}" + (" (exact)" if r["exact"] else "")


def _speedup_cell(mine: pd.Series, d: float, ref: str) -> str:
    if d not in mine.index:
        return ref
    x = float(mine.loc[d])
    return "inf" if x == math.inf else "n/a" if math.isnan(x) else f"{x:.2f}x"


def render_scaling(sc: Scaling, plots: Mapping[str, Path]) -> str:
    """The scaling section of the leaderboard's Markdown."""
    lines = ["## Scaling", ""]
    for task, group in _curves_of(sc.batch):
        b = sc.batch[(sc.batch["task"] == task) & (sc.batch["group"] == group)]
        batches = sorted(b["global_batch_size"].unique())
        n = int(b["n_trials"].sum())
        lines += [
            f"### {_curve_name(task, group)}: batch size",
            "",
            f"{len(batches)} batch sizes x {b['optimizer'].nunique()} optimizers, {n} tune trials; "
            f"metric `{sc.metric.get(task, '')}`.",
            "",
        ]
        crit = sc.critical[(sc.critical["task"] == task) & (sc.critical["group"] == group)].set_index(
            "optimizer"
        )
        fit = sc.lr_fit[(sc.lr_fit["task"] == task) & (sc.lr_fit["group"] == group)].set_index("optimizer")
        header = ["optimizer", "critical batch", "B_noise fit", "lr exponent (95% CI)", "declared", "agrees"]
        body = []
        for opt in b["optimizer"].unique():
            c, f = crit.loc[opt], fit.loc[opt]
            agrees = {True: "yes", False: "no", None: "n/a"}[f["agrees"]] if f["declared"] else "n/a"
            row = [str(opt), _critical_cell(c), _fmt(c["b_noise"], 3), _slope_cell(f)]
            body.append(
                row + [f"{f['declared']} ({f['declared_slope']:g})" if f["declared"] else "—", agrees]
            )
        lines += _table(header, body) + [""]
        # by batch: steps to target and lr* of each optimizer
        opts = list(b["optimizer"].unique())
        by = b.set_index(["global_batch_size", "optimizer"])
        header = ["batch"] + [f"{o} steps to target" for o in opts] + [f"{o} lr*" for o in opts]
        body = []
        for bs in batches:
            row = [str(bs)]
            row += [_never(by.loc[(bs, o), "steps_to_target"]) if (bs, o) in by.index else "—" for o in opts]
            row += [
                _fmt(by.loc[(bs, o), "lr_star"], 3) + ("" if by.loc[(bs, o), "tuned"] else " (transferred)")
                if (bs, o) in by.index
                else "—"
                for o in opts
            ]
            body.append(row)
        lines += _table(header, body)
        for kind, title in (("steps_vs_batch", "steps to target vs batch"), ("lr_vs_batch", "lr* vs batch")):
            key = _plot_key(kind, task, group)
            if key in plots:
                lines += ["", f"![{title}]({plots[key].as_posix()})"]
        lines.append("")
    for task, group in _curves_of(sc.loss):
        lo = sc.loss[(sc.loss["task"] == task) & (sc.loss["group"] == group)]
        points = sorted(lo["data"].unique())
        unit = str(lo["unit"].iloc[0])
        lines += [
            f"### {_curve_name(task, group)}: loss against data",
            "",
            f"{len(points)} lengths ({unit}) x {lo['optimizer'].nunique()} optimizers, "
            f"{int(lo['n_trials'].sum())} results (best lr per length); metric `{sc.metric.get(task, '')}`.",
            "",
        ]
        laws_t = sc.laws[(sc.laws["task"] == task) & (sc.laws["group"] == group)].set_index("optimizer")
        sp = (
            sc.speedups[(sc.speedups["task"] == task) & (sc.speedups["group"] == group)]
            if not sc.speedups.empty
            else sc.speedups
        )
        header = ["optimizer", "L(D) fit"] + [f"{si(d)}" for d in points]
        if not sp.empty:
            header += [f"speedup at {si(d)}" for d in points]
        body = []
        for opt, g in lo.groupby("optimizer", sort=False):
            by = g.set_index("data")

            def cell(d: float, by: pd.DataFrame = by) -> str:
                if d not in by.index:
                    return "—"
                ema = by.loc[d, "ema"]
                return _fmt(by.loc[d, "value"]) + (f" (EMA {_fmt(ema)})" if math.isfinite(ema) else "")

            row = [str(opt), _law_cell(laws_t.loc[opt])] + [cell(d) for d in points]
            if not sp.empty:
                mine = sp[sp["optimizer"] == opt].set_index("data")["speedup"]
                ref = "1 (reference)" if opt == sc.reference else "—"
                row += [_speedup_cell(mine, d, ref) for d in points]
            body.append(row)
        lines += _table(header, body)
        if not sp.empty:
            ref_law = sc.fits.get((task, group, str(sc.reference)))
            why = (
                ""
                if ref_law is not None and ref_law.ok
                else f" n/a: `{sc.reference}` has no fitted law here."
            )
            lines += [
                "",
                f"Speedups are compute-equivalent, relative to `{sc.reference}` (Wen et al. 2025).{why}",
            ]
        key = _plot_key("loss_vs_data", task, group)
        if key in plots:
            lines += ["", f"![loss vs data]({plots[key].as_posix()})"]
        lines.append("")
    lines += ["### Reading the scaling section", "", SCALING_LEGEND]
    return "\n".join(lines)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in r.items()} for r in df.to_dict("records")] if not df.empty else []


def scaling_dict(sc: Scaling) -> dict[str, Any]:
    """The scaling section for `<suite>.json` (NaN and inf as null)."""
    return {
        "reference": sc.reference,
        "batch": _records(sc.batch),
        "critical_batch": _records(sc.critical),
        "lr_exponent": _records(sc.lr_fit),
        "loss": _records(sc.loss),
        "power_laws": _records(sc.laws),
        "speedups": _records(sc.speedups),
    }


def scaling_metrics(sc: Scaling) -> dict[str, float]:
    """The headline numbers for the suite's MLflow run: critical batch and lr exponent per curve and
    optimizer (finite values only; the JSON artifact has everything)."""
    out: dict[str, float] = {}
    for table, column, name in (
        (sc.critical, "critical_batch", "critical_batch"),
        (sc.lr_fit, "slope", "lr_exponent"),
    ):
        for r in table.to_dict("records") if not table.empty else []:
            if math.isfinite(r[column]) and not r.get("beyond", False):
                where = _safe(f"{r['task']}{'_' + r['group'] if r['group'] else ''}")
                out[f"scaling/{where}/{r['optimizer']}/{name}"] = float(r[column])
    return out


def suite_scaling(suite: Suite, tracker: Tracker) -> Scaling | None:
    """The scaling tables of a suite with scans or horizons (None for any other suite)."""
    tasks, optimizers = getattr(suite, "tasks", ()), getattr(suite, "optimizers", ())  # duck-typed suites too
    if not any(t.scan for t in tasks) and not any(o.schedule.horizons for o in optimizers):
        return None
    rules = {o.label: o.entry.lr_scaling for o in optimizers}
    return laws.scaling(tracker.results_table(), rules, suite.leaderboard.reference)
