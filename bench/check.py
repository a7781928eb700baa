"""`bench check`: gate a run on a committed baseline leaderboard and on a reference optimizer, for CI.

    result = compare(current, json.loads(Path("leaderboards/smoke.json").read_text()), suite.check)
    print(result.to_markdown())                         # a CI job summary
    Path("bench-check.xml").write_text(result.to_junit("smoke"))   # a CI test report (JUnit XML)
    sys.exit(result.exit_code)

Both leaderboards are the JSON that `bench.report.leaderboard_dict` writes (`leaderboards/<suite>.json`);
the suite's `check:` section (`bench.schema.CheckSpec`, docs/ci.md) says how to decide. Three gates:

**Quality against the baseline**, for every (task, optimizer) of the baseline. A side's values are the
runs of its best configuration that were not selected for being best, by seed (its seed reruns, and its
tuning run when it was the only configuration: `bench.score.seed_values`); a leaderboard written before
those were recorded offers its seed mean and std; else the tune best is the one value. With `method: test` (the
default) each row is a one-sided test (bench/stats.py) of "the current run is worse than the baseline by
more than the margin max(rel_tol * |baseline|, abs_tol)": *paired* over the seeds both sides ran (a seed
fixes the initialisation and the data order, so the seed-to-seed spread cancels), else Welch's test on
the two sides' means and stds, each std at least `noise_floor[task]`; a side with a single value takes
the floor as its known sigma. The p-values of all rows are corrected together (`correction`, Holm by
default) and a row *regresses* when its adjusted p <= alpha, so a rerun of unchanged code fails the
gate with probability at most alpha. Each row also states the smallest worsening it would have caught
with probability `power`. A row that cannot be tested (one value on a side and no floor) falls back to
the tolerance rule. `method: tolerance` is the rule bench had before, for every row: regressed when worse
by more than max(rel_tol * |baseline|, seed_k * pooled seed std, abs_tol), with pooled std
sqrt((std_b^2 + std_c^2) / 2) over the sides that have one.

**Cost against the baseline**: step time, update time and optimizer-state bytes of every optimizer as
ratios to the leaderboard's reference optimizer measured in the same run (`bench.score.costs`), so a
faster or busier machine moves both sides alike. A ratio that grew by more than its tolerance
(`step_time_tol`, `update_time_tol`, `memory_tol`; null: not gated) fails. State bytes fall back to the
absolute count when the reference keeps no state. The reference's own row is 1 by construction and is
not listed.

**Improvement over a reference** (`beat: adamw`), in the current run alone: every optimizer of
`beat_optimizers` (default: all others) must be significantly better than `beat` on every task, by at
least `beat_by * |reference mean|`, tested like the quality rows (paired on the seeds both ran). Each row
is tested at alpha without a correction: requiring all of them is an intersection-union test (Berger
1982), whose level is alpha as it is.

Statuses that fail: regressed, missing (the entry or its task is absent now), no result (nothing
completed now, a value before), metric changed, slower, larger, reference changed, not shown (an
improvement not significant). Passing: ok, within noise (worse by more than the margin, not
significantly), improved (significantly better: time to update the baseline), no baseline, new,
faster, smaller, not gated, beats.

Exit codes of `bench check` (`run_check` returns them, EXIT_*): 0 every gate passed; 1 a gate failed;
2 the check could not be made as asked (a malformed suite, a baseline that is missing or not a
leaderboard, nothing recorded to compare, no gate asked for); 3 bench itself failed (an unexpected
exception, printed with its traceback by `bench.cli`).

`compare` is pure: dicts in, a `CheckResult` out. `run_check` is the command around it: it scores the
suite's recorded trials (running the suite first with `rerun`), compares, prints the Markdown, appends it
to a CI summary file and writes JUnit XML. It writes no leaderboard files: the baseline is usually the
committed `leaderboards/<suite>.json`, and a check leaves every file as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import stats
from bench.schema import CheckSpec, thaw

if TYPE_CHECKING:
    from bench.spec import Suite

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3

FAILING = (
    "regressed", "missing", "no result", "metric changed", "slower", "larger", "reference changed",
    "not shown",
)  # fmt: skip
VALUES = (
    "Values are means over the runs of the best configuration that were not selected for being best (its seed "
    "reruns, and its tuning run when it was the only configuration), else the tune best."
)
SKIPPED = ("new", "no baseline", "not gated", "not measured")  # JUnit: nothing was compared
_ICON = {
    "ok": "✅", "within noise": "✅", "improved": "⬆️", "faster": "⬆️", "smaller": "⬆️", "beats": "✅",
    "no baseline": "➖", "not gated": "➖", "not measured": "➖", "new": "🆕",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True)
class CheckRow:
    """One (task, optimizer) quality comparison. Values are in the metric's units; `worse_by` > 0 means
    worse than the baseline; `allowed` is the margin (the tolerance with `method` "tolerance"); `p_value`
    the corrected p of "worse by more than the margin"; `detectable` the smallest worsening the row
    would catch (with the check's power; exactly, past the tolerance)."""

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
    method: str = "tolerance"  # "paired t", "Welch t", "z (noise floor)" or "tolerance"
    p_value: float | None = None
    detectable: float | None = None
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass(frozen=True)
class CostRow:
    """One cost comparison: `measure` is "step time", "update time" or "optimizer state"; `baseline` and
    `current` are ratios to the reference (`unit` "ratio"), or bytes when the reference keeps no state
    (`unit` "bytes"); `change` is current / baseline - 1."""

    task: str
    optimizer: str
    measure: str
    baseline: float | None
    current: float | None
    change: float | None
    tolerance: float | None
    status: str
    unit: str = "ratio"
    reference: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass(frozen=True)
class BeatRow:
    """Whether `optimizer` is significantly better than `reference` on `task` in the current run;
    `improvement` > 0 is better (metric units), `required` the margin it must exceed."""

    task: str
    optimizer: str
    reference: str
    metric: str
    mode: str
    reference_value: float | None
    value: float | None
    improvement: float | None
    required: float
    status: str
    n: str
    method: str = ""
    p_value: float | None = None
    detectable: float | None = None
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass(frozen=True)
class CheckResult:
    rows: tuple[CheckRow, ...]
    spec: CheckSpec = field(default_factory=CheckSpec)
    costs: tuple[CostRow, ...] = ()
    beats: tuple[BeatRow, ...] = ()
    baseline: str | None = "baseline"  # what the quality and cost rows compare with (None: no baseline)
    notes: tuple[str, ...] = ()

    @property
    def all_rows(self) -> tuple[CheckRow | CostRow | BeatRow, ...]:
        return (*self.rows, *self.costs, *self.beats)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[CheckRow | CostRow | BeatRow, ...]:
        return tuple(r for r in self.all_rows if r.failed)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    # -- CI outputs ---------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """A summary line, then per gate its rule and a table (failures first), for a CI job summary."""
        n = len(self.all_rows)
        head = "✅ passed" if self.ok else f"❌ failed ({len(self.failures)} of {n} checks)"
        lines = [f"### bench check: {head}", ""]
        if self.rows:
            lines += self._quality_markdown()
        if self.costs:
            lines += self._cost_markdown()
        if self.beats:
            lines += self._beat_markdown()
        lines += [f"_{note}_" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def _quality_markdown(self) -> list[str]:
        s = self.spec
        tested = sum(r.p_value is not None for r in self.rows)
        if s.method == "test":
            rule = (
                f"Quality against {self.baseline}: a row **regresses** when it is significantly worse by more than its "
                f"margin max({s.rel_tol:g} × |baseline|, {s.abs_tol:g}): one-sided tests at alpha {s.alpha:g}, "
                f"{_correction_words(s.correction, tested)}. **p**: the corrected p-value; **detectable**: the "
                f"smallest worsening the row catches with {s.power:.0%} power. {VALUES} Tests pair the seeds both "
                "sides ran."
            )
        else:
            rule = (
                f"Quality against {self.baseline}: a result fails when it is worse than the baseline by more than "
                f"max({s.rel_tol:g} × |baseline|, {s.seed_k:g} × pooled seed std, {s.abs_tol:g}). {VALUES}"
            )
        lines = [rule, ""]
        lines += _table(
            ["task", "optimizer", "metric", "baseline", "current", "worse by", "margin", "p", "detectable", "test", "status"],
            [
                [
                    r.task, r.optimizer, f"{r.metric} {'↓' if r.mode == 'min' else '↑'}",
                    f"{_fmt(r.baseline)} ({r.baseline_n})", f"{_fmt(r.current)} ({r.current_n})",
                    _fmt(r.worse_by), _fmt(r.allowed), _p(r.p_value), _fmt(r.detectable),
                    r.method + (f" ({r.note})" if r.note else ""), _status(r.status),
                ]
                for r in sorted(self.rows, key=lambda r: not r.failed)
            ],
        )  # fmt: skip
        return [*lines, ""]

    def _cost_markdown(self) -> list[str]:
        s = self.spec
        ref = self.costs[0].reference or "the reference"
        tols = ", ".join(
            f"{name} +{tol:.0%}" if tol is not None else f"{name} not gated"
            for name, tol in (
                ("step time", s.step_time_tol),
                ("update time", s.update_time_tol),
                ("optimizer state", s.memory_tol),
            )
        )
        lines = [
            f"Speed and memory against {self.baseline}, as ratios to `{ref}` measured in the same run "
            f"(per trial the mean step after the first steps, the median over each optimizer's completed trials); a ratio fails when it grew by more than its "
            f"tolerance: {tols}.",
            "",
        ]
        lines += _table(
            ["task", "optimizer", "measure", "baseline", "current", "change", "tolerance", "status"],
            [
                [
                    r.task, r.optimizer, r.measure, _cost(r.baseline, r.unit), _cost(r.current, r.unit),
                    _pct(r.change), "—" if r.tolerance is None else f"+{r.tolerance:.0%}", _status(r.status),
                ]
                for r in sorted(self.costs, key=lambda r: not r.failed)
            ],
        )  # fmt: skip
        return [*lines, ""]

    def _beat_markdown(self) -> list[str]:
        s = self.spec
        ref = self.beats[0].reference
        lines = [
            f"Improvement over `{ref}` in this run: each optimizer must be significantly better on every task "
            f"(by more than {s.beat_by:g} × |{ref}|), one-sided tests at alpha {s.alpha:g} each (requiring all "
            "of them needs no correction: an intersection-union test). **improvement**: how much better (metric "
            f"units); **detectable**: the smallest improvement the row shows with {s.power:.0%} power.",
            "",
        ]
        lines += _table(
            ["task", "optimizer", ref, "optimizer's", "improvement", "required", "p", "detectable", "test", "status"],
            [
                [
                    r.task, r.optimizer, _fmt(r.reference_value), f"{_fmt(r.value)} ({r.n})", _fmt(r.improvement),
                    _fmt(r.required), _p(r.p_value), _fmt(r.detectable),
                    r.method + (f" ({r.note})" if r.note else ""), _status(r.status),
                ]
                for r in sorted(self.beats, key=lambda r: not r.failed)
            ],
        )  # fmt: skip
        return [*lines, ""]

    def to_junit(self, suite: str, *, time_s: float = 0.0) -> str:
        """JUnit XML (the format CI test reports read: GitHub test-reporter actions, GitLab, Jenkins): one
        test case per row, named `<optimizer> <what>` in class `<suite>.<task>`; a failing row is a
        `<failure>`, a row with nothing to compare `<skipped>`."""
        cases = [_case(suite, r) for r in self.all_rows]
        n_fail = sum(r.failed for r in self.all_rows)
        n_skip = sum(r.status in SKIPPED for r in self.all_rows)
        counts = {"tests": str(len(cases)), "failures": str(n_fail), "errors": "0", "skipped": str(n_skip)}
        root = ET.Element("testsuites", name="bench check", time=f"{time_s:.3f}", **counts)
        ts = ET.SubElement(
            root,
            "testsuite",
            name=f"bench check: {suite}",
            timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            time=f"{time_s:.3f}",
            **counts,
        )
        props = ET.SubElement(ts, "properties")
        spec = {
            k: v if isinstance(v, str) else json.dumps(thaw(v)) for k, v in self.spec.model_dump().items()
        }
        settings = {"baseline": self.baseline or "", **spec}
        for name, value in settings.items():
            ET.SubElement(props, "property", name=name, value=value)
        ts.extend(cases)
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _case(suite: str, r: CheckRow | CostRow | BeatRow) -> ET.Element:
    if isinstance(r, CheckRow):
        name = f"{r.optimizer} {r.metric} vs baseline"
        text = (
            f"{r.status}: baseline {_fmt(r.baseline)} ({r.baseline_n}), current {_fmt(r.current)} ({r.current_n}), "
            f"worse by {_fmt(r.worse_by)}, margin {_fmt(r.allowed)}, p {_p(r.p_value)}, detectable "
            f"{_fmt(r.detectable)}, test {r.method}{f' ({r.note})' if r.note else ''}"
        )
    elif isinstance(r, CostRow):
        name = f"{r.optimizer} {r.measure} vs baseline"
        text = (
            f"{r.status}: {r.measure} {_cost(r.baseline, r.unit)} -> {_cost(r.current, r.unit)} "
            f"(change {_pct(r.change)}, tolerance {'—' if r.tolerance is None else f'+{r.tolerance:.0%}'})"
        )
    else:
        name = f"{r.optimizer} beats {r.reference}"
        text = (
            f"{r.status}: {r.reference} {_fmt(r.reference_value)}, {r.optimizer} {_fmt(r.value)} ({r.n}), "
            f"improvement {_fmt(r.improvement)}, required > {_fmt(r.required)}, p {_p(r.p_value)}, detectable "
            f"{_fmt(r.detectable)}, test {r.method}{f' ({r.note})' if r.note else ''}"
        )
    case = ET.Element("testcase", classname=f"{suite}.{r.task}", name=name, time="0")
    if r.failed:
        ET.SubElement(case, "failure", type=r.status, message=text).text = text
    elif r.status in SKIPPED:
        ET.SubElement(case, "skipped", message=text)
    ET.SubElement(case, "system-out").text = text
    return case


# ---------------------------------------------------------------------------------------------------
# Formatting


def _fmt(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _p(p: float | None) -> str:
    return "—" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _pct(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "—"
    return "+inf" if math.isinf(x) else f"{x:+.1%}"


def _cost(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}x" if unit == "ratio" else f"{x:.0f} B"


def _status(status: str) -> str:
    return f"{_ICON.get(status, '❌')} {status}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def _correction_words(method: str, m: int) -> str:
    if method == "none":
        return f"no correction over {m} tests"
    name = "Holm" if method == "holm" else "Benjamini-Hochberg"
    return f"{name}-corrected over {m} tests"


# ---------------------------------------------------------------------------------------------------
# Reading a leaderboard entry


@dataclass(frozen=True)
class Side:
    """One (task, optimizer) entry of a leaderboard as a comparison sees it."""

    value: float | None  # the mean of its per-seed values (or its seed mean), else the tune best
    std: float | None  # their sample std (two or more values)
    n: int  # values behind `value`
    seeds: Mapping[int, float]  # seed -> value (leaderboards written since per-seed values exist)
    label: str  # "3 seeds", "best of 8 trials", "absent"

    @property
    def sample(self) -> stats.Sample | None:
        return None if self.value is None else stats.Sample(self.value, self.std, max(self.n, 1))


def side(entry: Mapping[str, Any] | None) -> Side:
    """A leaderboard entry as a comparison sees it: its per-seed values when it has them (every unselected
    run of the best configuration, see `bench.score.seed_values`), else its seed mean and std, else its
    tune best (a single value)."""
    if entry is None:
        return Side(None, None, 0, {}, "absent")
    seeds = {int(k): float(v) for k, v in (entry.get("seed_values") or {}).items() if v is not None}
    if seeds:
        sample = stats.Sample.of(list(seeds.values()))
        return Side(sample.mean, sample.std, sample.n, seeds, f"{sample.n} seed{'s' if sample.n > 1 else ''}")
    n_seeds = int(entry.get("n_seeds") or 0)
    if n_seeds and entry.get("seed_mean") is not None:
        std = entry.get("seed_std") if n_seeds > 1 else None
        std = None if std is None else float(std)
        return Side(float(entry["seed_mean"]), std, n_seeds, {}, f"{n_seeds} seeds")
    best = entry.get("best")
    n = entry.get("n_scored", entry.get("n_trials", 0))
    return Side(None if best is None else float(best), None, 1, {}, f"best of {n} trials")


def _test(x: Side, y: Side, sign: float, margin: float, floor: float) -> tuple[stats.Test | None, str]:
    """The test of sign * (x - y) > margin: paired over common seeds when there are enough, else
    unpaired; (test or None, a note on what it used)."""
    common = sorted(set(x.seeds) & set(y.seeds))
    if len(common) >= 2 or (common and floor > 0 and x.n == y.n == len(common)):
        test = stats.paired_test(
            [sign * x.seeds[s] for s in common],
            [sign * y.seeds[s] for s in common],
            margin=margin,
            floor=floor,
        )
        extra = max(x.n, y.n) - len(common)
        note = f"{len(common)} common seeds" + (f", {extra} unpaired left out" if extra else "")
        return test, note + (", floored" if test is not None and test.floored else "")
    xs, ys = x.sample, y.sample
    if xs is None or ys is None:
        return None, ""
    xs = stats.Sample(sign * xs.mean, xs.std, xs.n)
    ys = stats.Sample(sign * ys.mean, ys.std, ys.n)
    test = stats.unpaired_test(xs, ys, margin=margin, floor=floor)
    if test is None:
        return None, "too few seeds for a test: needs 2+ values a side (tuning.seeds) or check.noise_floor"
    return test, "floored" if test.floored else ""


# ---------------------------------------------------------------------------------------------------
# The gates


def _check_tasks(d: Mapping[str, Any], name: str) -> None:
    if not isinstance(d, Mapping) or not isinstance(d.get("tasks"), Mapping):
        raise ValueError(
            f"{name}: not a leaderboard JSON (no 'tasks' mapping); write it with `bench leaderboard`"
        )


def compare(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    spec: CheckSpec | None = None,
    *,
    baseline_name: str = "the baseline",
) -> CheckResult:
    """Every gate the spec asks for (see the module docstring); `baseline` None runs the `beat` gate alone."""
    spec = spec or CheckSpec()
    _check_tasks(current, "current")
    rows: list[CheckRow] = []
    costs: list[CostRow] = []
    notes: list[str] = []
    if baseline is not None:
        _check_tasks(baseline, "baseline")
        rows = quality_rows(current, baseline, spec)
        costs = cost_rows(current, baseline, spec)
        has_cost = any(
            "cost" in e for t in baseline["tasks"].values() for e in t.get("optimizers", {}).values()
        )
        if not has_cost:
            notes.append(
                "The baseline has no speed or memory figures (written before bench measured them): rewrite it "
                "with `bench leaderboard` to gate them."
            )
    beats = beat_rows(current, spec) if spec.beat is not None else []
    return CheckResult(
        tuple(rows),
        spec,
        tuple(costs),
        tuple(beats),
        baseline_name if baseline is not None else None,
        tuple(notes),
    )


def quality_rows(current: Mapping[str, Any], baseline: Mapping[str, Any], spec: CheckSpec) -> list[CheckRow]:
    """The quality gate: one row per (task, optimizer) of the baseline, plus `new` rows."""
    pending: list[dict[str, Any]] = []  # rows before the family-wide correction
    cur_tasks: Mapping[str, Any] = current["tasks"]
    for task, b_task in baseline["tasks"].items():
        c_task = cur_tasks.get(task)
        metric, mode = str(b_task.get("metric", "value")), str(b_task.get("mode", "min"))
        changed = c_task is not None and (
            c_task.get("metric") != b_task.get("metric") or c_task.get("mode") != mode
        )
        sign = 1.0 if mode == "min" else -1.0
        for opt, b_entry in b_task.get("optimizers", {}).items():
            c_entry = None if c_task is None else c_task.get("optimizers", {}).get(opt)
            b, c = side(b_entry), side(c_entry)
            row: dict[str, Any] = {
                "task": task, "optimizer": opt, "metric": metric, "mode": mode, "baseline": b.value,
                "current": c.value, "baseline_n": b.label, "current_n": c.label, "allowed": None,
                "worse_by": None,
            }  # fmt: skip
            if b.value is not None and c.value is not None:
                row["worse_by"] = sign * (c.value - b.value)
            if c_entry is None:
                row["status"] = "missing"
            elif changed:
                row["status"] = "metric changed"
            elif b.value is None:
                row["status"] = "no baseline"
            elif c.value is None:
                row["status"] = "no result"
            if "status" in row or b.value is None:
                pending.append(row)
                continue
            margin = max(spec.rel_tol * abs(b.value), spec.abs_tol)
            test, note = (None, "")
            if spec.method == "test":
                test, note = _test(c, b, sign, margin, spec.noise_floor.get(task, 0.0))
            if test is None:  # the tolerance rule (asked for, or no test possible)
                stds = [s for s in (b.std, c.std) if s is not None and math.isfinite(s)]
                pooled = math.sqrt(sum(s * s for s in stds) / len(stds)) if stds else 0.0
                row["allowed"] = max(spec.rel_tol * abs(b.value), spec.seed_k * pooled, spec.abs_tol)
                row["detectable"] = row["allowed"]
                row["note"] = note
            else:
                row.update(allowed=margin, test=test, method=test.method, note=note)
            pending.append(row)
    tested = [r for r in pending if "test" in r]
    worse = stats.adjust([r["test"].p for r in tested], spec.correction)
    better = stats.adjust([_flipped(r["test"]).p for r in tested], spec.correction)
    level = stats.per_test_level(spec.alpha, len(tested), spec.correction)
    for r, p_worse, p_better in zip(tested, worse, better, strict=True):
        test = r.pop("test")
        r["p_value"], r["detectable"] = float(p_worse), test.detectable(level, spec.power)
        if p_worse <= spec.alpha:
            r["status"] = "regressed"
        elif p_better <= spec.alpha:
            r["status"] = "improved"
        else:
            r["status"] = "within noise" if r["worse_by"] > r["allowed"] else "ok"
    for r in pending:
        if "status" not in r:  # the tolerance rule
            worse_by, allowed = r["worse_by"], r["allowed"]
            r["status"] = "regressed" if worse_by > allowed else "improved" if worse_by < -allowed else "ok"
    out = [CheckRow(**r) for r in pending]
    for task, c_task in cur_tasks.items():
        known = baseline["tasks"].get(task, {}).get("optimizers", {})
        for opt, c_entry in c_task.get("optimizers", {}).items():
            if opt not in known:
                c = side(c_entry)
                metric, mode = str(c_task.get("metric", "value")), str(c_task.get("mode", "min"))
                out.append(
                    CheckRow(task, opt, metric, mode, None, c.value, None, None, "new", "absent", c.label)
                )
    return out


def _flipped(test: stats.Test) -> stats.Test:
    """The same comparison asked the other way round: better by more than the margin."""
    return dataclasses.replace(test, effect=-test.effect)


COSTS = (("step time", "step_time_s", "step_time_tol"), ("update time", "update_time_s", "update_time_tol"),
         ("optimizer state", "state_bytes", "memory_tol"))  # fmt: skip


def cost_rows(current: Mapping[str, Any], baseline: Mapping[str, Any], spec: CheckSpec) -> list[CostRow]:
    """The cost gate: per (task, optimizer) both sides measured, per measure, the ratio to the reference."""
    out: list[CostRow] = []
    for task, b_task in baseline["tasks"].items():
        c_task = current["tasks"].get(task) or {}
        for opt, b_entry in b_task.get("optimizers", {}).items():
            b_cost = b_entry.get("cost")
            c_cost = (c_task.get("optimizers", {}).get(opt) or {}).get("cost")
            if not b_cost or not c_cost:
                continue  # an old baseline, or nothing ran now (the quality gate says so)
            ref = str(c_cost.get("reference") or "")
            if opt == ref:
                continue  # 1 by construction
            for measure, key, tol_key in COSTS:
                tol = getattr(spec, tol_key)
                unit = "ratio"
                bv, cv = b_cost.get(f"{key}_ratio"), c_cost.get(f"{key}_ratio")
                if key == "state_bytes" and (bv is None or cv is None):  # the reference keeps no state
                    unit, bv, cv = "bytes", b_cost.get(key), c_cost.get(key)
                change = None
                if bv is not None and cv is not None:
                    change = cv / bv - 1 if bv > 0 else (0.0 if cv == 0 else math.inf)
                worse, better = ("larger", "smaller") if key == "state_bytes" else ("slower", "faster")
                if b_cost.get("reference") != c_cost.get("reference"):
                    status = "reference changed"
                elif change is None:
                    status = "not measured"
                elif tol is None:
                    status = "not gated"
                else:
                    status = worse if change > tol else better if change < -tol else "ok"
                out.append(CostRow(task, opt, measure, bv, cv, change, tol, status, unit, ref))
    return out


def beat_rows(current: Mapping[str, Any], spec: CheckSpec) -> list[BeatRow]:
    """The improvement gate: every optimizer of `beat_optimizers` against `beat`, on every task."""
    ref = str(spec.beat)
    out: list[BeatRow] = []
    for task, c_task in current["tasks"].items():
        entries = c_task.get("optimizers", {})
        metric, mode = str(c_task.get("metric", "value")), str(c_task.get("mode", "min"))
        sign = 1.0 if mode == "min" else -1.0
        r = side(entries.get(ref))
        for opt in spec.beat_optimizers or [o for o in entries if o != ref]:
            o = side(entries.get(opt))
            required = spec.beat_by * abs(r.value) if r.value is not None else 0.0
            row = {"task": task, "optimizer": opt, "reference": ref, "metric": metric, "mode": mode,
                   "reference_value": r.value, "value": o.value, "required": required, "n": o.label,
                   "improvement": None if r.value is None or o.value is None else sign * (r.value - o.value)}  # fmt: skip
            if r.value is None or o.value is None:
                out.append(BeatRow(**row, status="no result"))
                continue
            test, note = _test(r, o, sign, required, spec.noise_floor.get(task, 0.0))
            if test is None:
                out.append(BeatRow(**row, status="not shown", method="none", note=note))
                continue
            out.append(
                BeatRow(
                    **row,
                    status="beats" if test.p <= spec.alpha else "not shown",
                    method=test.method,
                    p_value=test.p,
                    detectable=test.detectable(spec.alpha, spec.power),
                    note=note,
                )
            )
    return out


# ---------------------------------------------------------------------------------------------------
# The command


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline leaderboard, or ValueError saying what is wrong with the file."""
    if not path.is_file():
        raise ValueError(
            f"baseline {path} not found; write one with "
            f"`bench leaderboard SUITE --set settings.leaderboard_dir={path.parent}`"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"baseline {path}: not JSON ({e})") from None
    _check_tasks(data, f"baseline {path}")
    return data


def run_check(
    suite: Suite,
    baseline: Path | None,
    *,
    rerun: bool = False,
    summary: str | Path | None = None,
    junit: str | Path | None = None,
    tracker: Any = None,
    out: Callable[[str], None] = print,
) -> int:
    """`bench check`: an exit code (EXIT_*; see the module docstring).

    tracker: anything with `trials_table()` (default: the suite's MLflow experiment via bench.track)."""
    import time

    from bench import report, score

    started = time.perf_counter()
    spec: CheckSpec = getattr(suite, "check", None) or CheckSpec()
    if baseline is None and spec.beat is None:
        out("bench check: nothing to check: give --baseline FILE, or name an optimizer to beat (check.beat)")
        return EXIT_USAGE
    base = None
    if baseline is not None:
        try:  # read before running: the run may rewrite leaderboards/
            base = load_baseline(Path(baseline))
        except ValueError as e:
            out(f"bench check: {e}")
            return EXIT_USAGE
    if rerun:
        from bench.engine import run_suite

        run_suite(suite, leaderboard=False, out=out)
    if tracker is None:
        from bench.track import Tracker

        tracker = Tracker(suite.settings.tracking_uri, suite.name)
    table = tracker.trials_table()
    if table.empty:
        out(f"bench check: no trials recorded for suite '{suite.name}'; run it first or pass --rerun")
        return EXIT_USAGE
    current = report.leaderboard_dict(score.leaderboard(table, suite.leaderboard), suite.name)
    result = compare(current, base, spec, baseline_name=f"`{baseline}`")
    md = result.to_markdown()
    out(md)
    if summary:
        with open(summary, "a", encoding="utf-8") as f:  # $GITHUB_STEP_SUMMARY is appended to
            f.write(md + "\n")
    if junit:
        Path(junit).parent.mkdir(parents=True, exist_ok=True)
        Path(junit).write_text(
            result.to_junit(suite.name, time_s=time.perf_counter() - started), encoding="utf-8"
        )
    return result.exit_code
