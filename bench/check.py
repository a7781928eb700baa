"""`bench check`: compare a leaderboard with a committed baseline and fail on regressions.

Both sides are the JSON form written by `bench.report.leaderboard_dict` (`leaderboards/<suite>.json`):

    result = compare(current, json.loads(Path("leaderboards/smoke.json").read_text()))
    print(result.to_markdown())   # a table for a CI job summary
    sys.exit(0 if result.ok else 1)

For every (task, optimizer) of the baseline, the compared value is the seed mean when that side has seed
reruns, else the tune best. The current value *regresses* when it is worse (in the metric's direction)
than the baseline by more than

    allowed = max(rel_tol * |baseline|, seed_k * pooled_std, abs_tol)

where pooled_std = sqrt((std_baseline^2 + std_current^2) / 2) over the sides that have a seed std (ddof=1,
so two or more reruns), 0 when neither has. Failing statuses: regressed, missing (the entry or its task
is absent from the current leaderboard), no result (nothing completed now, a value before) and metric
changed (another metric or mode). Passing: ok, improved (better by more than `allowed`; time to update
the baseline), no baseline (the baseline had no value either) and new (only in the current leaderboard).

`compare` is pure: dicts in, a `CheckResult` out. `run_check` is the command around it: it scores the
suite's recorded trials (running the suite first with `rerun`), compares, prints the table and appends it
to a CI summary file. It writes no leaderboard files: the baseline is usually the committed
`leaderboards/<suite>.json`, and a check leaves every file as it was.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.spec import Suite

FAILING = ("regressed", "missing", "no result", "metric changed")
_ICON = {
    "ok": "✅",
    "improved": "⬆️",
    "no baseline": "➖",
    "new": "🆕",
    "regressed": "❌",
    "missing": "❌",
    "no result": "❌",
    "metric changed": "❌",
}


@dataclass(frozen=True)
class CheckRow:
    """One (task, optimizer) comparison. Values are in the metric's units; `allowed` is how much worse
    the current value may be; `worse_by` > 0 means worse than the baseline."""

    task: str
    optimizer: str
    metric: str
    mode: str
    baseline: float | None
    current: float | None
    allowed: float | None
    worse_by: float | None
    status: str
    baseline_n: str  # what the value stands on: "3 seeds" or "best of 8 trials"
    current_n: str

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass(frozen=True)
class CheckResult:
    rows: tuple[CheckRow, ...]
    rel_tol: float
    abs_tol: float
    seed_k: float

    @property
    def ok(self) -> bool:
        return not any(r.failed for r in self.rows)

    @property
    def failures(self) -> tuple[CheckRow, ...]:
        return tuple(r for r in self.rows if r.failed)

    def to_markdown(self) -> str:
        """A summary line, the tolerance rule and a table (failures first), for a CI job summary."""
        n_fail = len(self.failures)
        head = "✅ passed" if self.ok else f"❌ failed ({n_fail} of {len(self.rows)} entries)"
        lines = [
            f"### bench check: {head}",
            "",
            "A result fails when it is worse than the baseline by more than "
            f"max({self.rel_tol:g} × |baseline|, {self.seed_k:g} × pooled seed std, {self.abs_tol:g}). "
            "Values are seed means when the best configuration was rerun on seeds, else the tune best.",
            "",
            "| task | optimizer | metric | baseline | current | allowed | status |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sorted(self.rows, key=lambda r: not r.failed):
            better = "↓" if r.mode == "min" else "↑"
            status = f"{_ICON.get(r.status, '')} {r.status}"
            lines.append(
                f"| {r.task} | {r.optimizer} | {r.metric} {better} | {_fmt(r.baseline)} ({r.baseline_n}) | "
                f"{_fmt(r.current)} ({r.current_n}) | {_fmt(r.allowed)} | {status} |"
            )
        return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _value(entry: Mapping[str, Any] | None) -> tuple[float | None, float | None, str]:
    """(compared value, seed std or None, what it stands on)."""
    if entry is None:
        return None, None, "absent"
    n_seeds = int(entry.get("n_seeds") or 0)
    if n_seeds and entry.get("seed_mean") is not None:
        std = entry.get("seed_std") if n_seeds > 1 else None
        return float(entry["seed_mean"]), (None if std is None else float(std)), f"{n_seeds} seeds"
    best = entry.get("best")
    n = entry.get("n_scored", entry.get("n_trials", 0))
    return (None if best is None else float(best)), None, f"best of {n} trials"


def compare(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    *,
    rel_tol: float = 0.02,
    abs_tol: float = 0.0,
    seed_k: float = 2.0,
) -> CheckResult:
    """Compare two leaderboard dicts (see the module docstring for the rule and the statuses)."""
    for name, d in (("current", current), ("baseline", baseline)):
        if not isinstance(d, Mapping) or not isinstance(d.get("tasks"), Mapping):
            raise ValueError(
                f"{name}: not a leaderboard JSON (no 'tasks' mapping); write it with `bench leaderboard`"
            )
    rows: list[CheckRow] = []
    cur_tasks: Mapping[str, Any] = current["tasks"]
    for task, b_task in baseline["tasks"].items():
        c_task = cur_tasks.get(task)
        metric, mode = str(b_task.get("metric", "value")), str(b_task.get("mode", "min"))
        changed = c_task is not None and (
            c_task.get("metric") != b_task.get("metric") or c_task.get("mode") != mode
        )
        for opt, b_entry in b_task.get("optimizers", {}).items():
            c_entry = None if c_task is None else c_task.get("optimizers", {}).get(opt)
            bv, bs, bn = _value(b_entry)
            cv, cs, cn = _value(c_entry)
            stds = [s for s in (bs, cs) if s is not None and math.isfinite(s)]
            pooled = math.sqrt(sum(s * s for s in stds) / len(stds)) if stds else 0.0
            allowed = max(rel_tol * abs(bv), seed_k * pooled, abs_tol) if bv is not None else None
            worse = None
            if bv is not None and cv is not None:
                worse = (cv - bv) if mode == "min" else (bv - cv)
            if c_entry is None:
                status = "missing"
            elif changed:
                status = "metric changed"
            elif bv is None:
                status = "no baseline"
            elif cv is None:
                status = "no result"
            elif worse > allowed:
                status = "regressed"
            elif worse < -allowed:
                status = "improved"
            else:
                status = "ok"
            rows.append(CheckRow(task, opt, metric, mode, bv, cv, allowed, worse, status, bn, cn))
    for task, c_task in cur_tasks.items():
        known = baseline["tasks"].get(task, {}).get("optimizers", {})
        for opt, c_entry in c_task.get("optimizers", {}).items():
            if opt not in known:
                cv, _, cn = _value(c_entry)
                metric, mode = str(c_task.get("metric", "value")), str(c_task.get("mode", "min"))
                rows.append(CheckRow(task, opt, metric, mode, None, cv, None, None, "new", "absent", cn))
    return CheckResult(tuple(rows), rel_tol, abs_tol, seed_k)


def run_check(
    suite: Suite,
    baseline: Path,
    *,
    rerun: bool = False,
    summary: str | Path | None = None,
    tracker: Any = None,
    out: Callable[[str], None] = print,
    **tolerance: float,
) -> int:
    """`bench check`: exit status 0 when nothing failed, 1 on a failure, 2 when there is nothing to compare.

    tracker: anything with `trials_table()` (default: the suite's MLflow experiment via bench.track).
    tolerance: rel_tol, abs_tol, seed_k for `compare`.
    """
    from bench import report, score

    path = Path(baseline)
    if not path.is_file():
        out(
            f"bench check: baseline {path} not found; write one with "
            f"`bench leaderboard {suite.path} --set settings.leaderboard_dir={path.parent}`"
        )
        return 2
    base = json.loads(path.read_text())  # read before running
    if rerun:
        from bench.engine import run_suite

        run_suite(suite, leaderboard=False, out=out)
    if tracker is None:
        from bench.track import Tracker

        tracker = Tracker(suite.settings.tracking_uri, suite.name)
    table = tracker.trials_table()
    if table.empty:
        out(f"bench check: no trials recorded for suite '{suite.name}'; run it first or pass --rerun")
        return 2
    current = report.leaderboard_dict(score.leaderboard(table, suite.leaderboard), suite.name)
    result = compare(current, base, **tolerance)
    md = result.to_markdown()
    out(md)
    if summary:
        with open(summary, "a", encoding="utf-8") as f:  # $GITHUB_STEP_SUMMARY is appended to
            f.write(md + "\n")
    return 0 if result.ok else 1
