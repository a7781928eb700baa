"""Nothing lost, whatever happens: kill `bench run` again and again, or start many at once, then audit.

Real processes, real SQLite stores, real trainings (digits tasks with few steps, so a trial takes about a
second). Two experiments:

    python benchmarks/reliability.py kill   [--kills 22] [--seed 0]      # SIGKILLs, then resume
    python benchmarks/reliability.py race   [--attempts 10] [--processes 4]   # simultaneous starts

**kill**: a suite of 2 tasks x 3 optimizers x 6 trials, each best configuration rerun on one more seed
(42 slots). First it runs uninterrupted in its own stores, for the reference leaderboard. Then, in fresh
stores, `bench run` is SIGKILLed over and over: at every fail point of `bench.faults.POINTS` (the
dangerous instructions: half-created store, study without its slots, MLflow run whose id Optuna does not
know, trial marked FAIL but not re-enqueued, ...), while a trial is training, and at `--kills` random
moments (some of them runs with `--workers 2`, whose whole process group dies); two runs meet a full disk
(`trial.metrics=enospc`) and must stop with the disk-full message. Then one run finishes the suite and a
last one must find nothing to do. The audit (`audit`) counts lost and duplicated slots in Optuna,
duplicated, unfinished or half-written trial runs in MLflow, and compares the leaderboard with the
reference (every value but wall-clock times).

**race**: `--processes` `bench run`s on fresh stores (no database file yet) released at the same instant
(each imports everything first, then waits for a gate file), `--attempts` times; each attempt must end
with every process exiting 0 and every slot finished exactly once.

Exit status 1 when anything is lost, duplicated or different. Run it under the shared lock of a busy
machine: `flock /tmp/bench-heavy.lock python benchmarks/reliability.py kill`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
# The processes started below import this checkout's bench, whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
import helpers  # noqa: E402  (tests/helpers.py: the tiny suite and `bench run` as a process)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}  # fmt: skip
ENV.pop("BENCH_FAILPOINTS", None)


# -- suites and processes ------------------------------------------------------------------------------
def write_suite(
    directory: Path,
    *,
    name: str = "stress",
    tasks: tuple[str, ...] = ("digits_cnn", "digits_mlp"),
    optimizers: tuple[str, ...] = ("sgd", "adamw", "lion"),
    trials: int = 6,
    seeds: int = 2,
    steps: int = 400,
) -> Path:
    """A CPU suite with its stores and leaderboard inside `directory` (random protocol: configurations
    fixed when a study is created, so a resumed suite trains exactly what an uninterrupted one does)."""
    directory.mkdir(parents=True, exist_ok=True)
    return helpers.write_suite(
        directory,
        name=name,
        tasks=[{"name": t, "steps": steps, "eval_every": steps // 2} for t in tasks],
        optimizers=list(optimizers),
        tuning={"protocol": "random", "trials": trials, "seeds": seeds},
    )


start = helpers.bench_run  # `bench run SUITE` in its own process group, output appended to a log


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the run's whole process group; whether it was still running."""
    alive = proc.poll() is None
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


def training(db: Path) -> set[int]:
    """Optuna trials a live process is training, their MLflow run recorded (read straight from the SQLite
    file; a trial a killed run left RUNNING does not count)."""
    if not db.exists():
        return set()
    try:
        with closing(sqlite3.connect(db, timeout=30)) as con:
            rows = con.execute(
                "SELECT t.trial_id, w.value_json FROM trials t JOIN trial_user_attributes w ON "
                "w.trial_id = t.trial_id AND w.key = 'bench.worker' WHERE t.state = 'RUNNING' AND EXISTS "
                "(SELECT 1 FROM trial_user_attributes a WHERE a.trial_id = t.trial_id AND a.key = 'mlflow_run')"
            ).fetchall()
    except sqlite3.OperationalError:  # tables not created yet, or locked for long
        return set()
    return {trial for trial, worker in rows if alive(int(json.loads(worker).rpartition(":")[2]))}


def alive(pid: int) -> bool:
    """A running process (not gone, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# -- the audit -------------------------------------------------------------------------------------------
@dataclass
class Audit:
    slots: int = 0  # slots the plan has
    lost: list[str] = field(default_factory=list)  # slots with no finished trial
    duplicated: list[str] = field(default_factory=list)  # slots with more than one finished trial
    left: list[str] = field(default_factory=list)  # trials still WAITING or RUNNING
    runs: int = 0  # active trial runs in MLflow
    run_problems: list[str] = field(default_factory=list)  # missing, duplicated, unfinished, half-written
    leaderboard: list[str] = field(default_factory=list)  # differences with the reference

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.left or self.run_problems or self.leaderboard)

    def lines(self) -> list[str]:
        return [
            f"slots {self.slots}: lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"left waiting/running {len(self.left)}",
            f"MLflow trial runs {self.runs}: problems {len(self.run_problems)}",
            *(f"  {p}" for p in (self.lost + self.duplicated + self.left + self.run_problems)[:20]),
            f"leaderboard differences from the uninterrupted run: {len(self.leaderboard)}",
            *(f"  {d}" for d in self.leaderboard[:20]),
        ]


def expected_slots(suite_path: Path) -> dict[str, int]:
    """Optuna study name -> slots, from the suite's plan (tuning studies and the seed reruns of their best
    configuration, named after its slot)."""
    from bench import search
    from bench.loader import load_suite
    from bench.plan import make_plan, seeds_study

    suite = load_suite(suite_path)
    storage = search.open_storage(suite.settings.storage)
    out = {}
    for sp in make_plan(suite).studies:
        out[sp.name] = sp.trials
        tuning = search.load(storage, sp.name) if sp.seeds > 1 else None
        best = search.best_trial(tuning) if tuning is not None else None
        if sp.seeds > 1:  # no best: the reruns are lost with the tuning slots
            out[seeds_study(sp.name, None if best is None else int(best.user_attrs["slot"]))] = sp.seeds - 1
    return out


def expected_trial_ids(suite_path: Path) -> set[str]:
    from bench.loader import load_suite
    from bench.plan import make_plan, seed_run_id, trial_id

    plan = make_plan(load_suite(suite_path))
    ids = set()
    for sp in plan.studies:
        ids |= {trial_id(sp.name, i) for i in range(sp.trials)}
        ids |= {seed_run_id(sp.name, s) for s in range(1, sp.seeds)}
    return ids


def audit(suite: Path, reference: Path | None = None) -> Audit:
    """Count what a run of `suite` lost or duplicated, in Optuna and in MLflow (read straight from the
    SQLite files, not through bench), and compare its leaderboard JSON with `reference`'s."""
    directory = suite.parent
    result = Audit()
    with closing(sqlite3.connect(directory / ".bench" / "optuna.db")) as con:
        rows = con.execute(
            "SELECT s.study_name, t.trial_id, t.state, a.value_json FROM trials t "
            "JOIN studies s ON s.study_id = t.study_id LEFT JOIN trial_user_attributes a "
            "ON a.trial_id = t.trial_id AND a.key = 'slot'"
        ).fetchall()
    finished: Counter[tuple[str, int]] = Counter()
    for study, trial, state, slot in rows:
        if state in ("WAITING", "RUNNING"):
            result.left.append(f"{study}: trial {trial} still {state}")
        if slot is not None and state in ("COMPLETE", "PRUNED"):
            finished[(study, int(json.loads(slot)))] += 1
    for study, n in expected_slots(suite).items():
        result.slots += n
        for slot in range(n):
            count = finished[(study, slot)]
            if count == 0:
                result.lost.append(f"{study} slot {slot}: no finished trial")
            elif count > 1:
                result.duplicated.append(f"{study} slot {slot}: {count} finished trials")

    with closing(sqlite3.connect(directory / "mlflow.db")) as con:
        tags = con.execute(
            "SELECT r.run_uuid, r.status, t.key, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE r.lifecycle_stage = 'active' AND t.key IN ('bench.kind', 'bench.trial_id', 'bench.outcome')"
        ).fetchall()
    runs: dict[str, dict[str, str]] = {}
    for run, status, key, value in tags:
        runs.setdefault(run, {"status": status})[key] = value
    trials = [r for r in runs.values() if r.get("bench.kind") in ("tune", "seed")]
    result.runs = len(trials)
    outcomes = ("completed", "pruned", "diverged", "oom", "timeout", "error")
    ids = Counter(r.get("bench.trial_id") for r in trials)
    for trial, n in sorted(ids.items()):
        if n > 1:
            result.run_problems.append(f"MLflow: {trial}: {n} active runs")
    for trial in sorted(expected_trial_ids(suite) - set(ids)):
        result.run_problems.append(f"MLflow: {trial}: no active run")
    for r in trials:
        if r["status"] not in ("FINISHED", "FAILED") or r.get("bench.outcome") not in outcomes:
            result.run_problems.append(
                f"MLflow: {r.get('bench.trial_id')}: status {r['status']}, outcome {r.get('bench.outcome')}"
            )
    if reference is not None:
        result.leaderboard = compare(leaderboard_of(reference), leaderboard_of(suite))
    return result


def leaderboard_of(suite: Path) -> Any:
    name = yaml.safe_load(suite.read_text())["name"]
    return json.loads((suite.parent / "leaderboards" / f"{name}.json").read_text())


def compare(a: Any, b: Any, where: str = "") -> list[str]:
    """Differences between two leaderboard JSONs, leaving out wall-clock times (keys with 'seconds' or
    'time_s': times to target, a step's time and its ratio to the reference)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if "seconds" in str(key) or "time_s" in str(key):
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'the reference' if key in a else 'this run'}")
            else:
                out.extend(compare(a[key], b[key], f"{where}.{key}"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in compare(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: reference {a!r}, this run {b!r}"]


# -- kill ------------------------------------------------------------------------------------------------
# (what to do, argument): fail points fire where named (`trial.step@N`: mid-training, however fast the
# machine trains); "random" kills at a random moment; "training" polls the store and kills a moment after
# a trial started training (with --workers 2: the whole process group); "full" meets a full disk. The order matters: a store is created only once,
# a study only when it is reached, a stale trial exists only after a kill during training.
SCHEDULE: list[tuple[str, str]] = [
    ("point", "store.creating"),  # the Optuna store, half-created
    ("point", "store.creating@2"),  # the Optuna store created, then the MLflow store half-created
    ("point", "study.created"),
    ("point", "study.slot@2"),
    ("point", "trial.run"),
    ("point", "trial.recorded"),
    ("random", ""),
    ("point", "study.parent"),
    ("point", "trial.step@200"),  # half-way through the first trial the run trains
    ("point", "stale.failed"),  # that trial is failed; the kill comes before re-enqueuing
    ("point", "retire.tagged"),  # its run is retired when the next run starts
    ("random", ""),
    ("training", ""),
    ("full", "trial.metrics=enospc"),
    ("point", "trial.metrics=enospc,trial.failed"),
    ("random", "workers"),
    ("point", "trial.recorded@2"),
    ("random", ""),
    ("point", "trial.run@3"),
    ("training", "workers"),
    ("full", "trial.metrics@2=enospc"),
]


@dataclass
class Cycle:
    kind: str
    arg: str
    result: str  # killed | fired | finished | disk full | UNEXPECTED ...
    seconds: float


def run_cycle(
    suite: Path, log: Path, kind: str, arg: str, rng: random.Random, window: tuple[float, float]
) -> Cycle:
    db = suite.parent / ".bench" / "optuna.db"
    began = time.monotonic()
    extra = ("--workers", "2") if arg == "workers" else ()
    if kind in ("point", "full"):
        size = log.stat().st_size if log.exists() else 0
        proc = start(suite, log, "--no-leaderboard", failpoints=arg)
        try:
            rc = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            kill(proc)
            return Cycle(kind, arg, "not reached in 90s: killed", time.monotonic() - began)
        text = log.read_bytes()[size:].decode(errors="replace")  # this run's output
        if rc == -signal.SIGKILL:
            result = "fired (SIGKILL)"
        elif rc == 0:
            result = "finished (point not reached)"
        elif kind == "full" and rc == 1 and "no space left on device" in text and "Traceback" not in text:
            result = "disk full: clear error, exit 1"
        else:
            result = f"UNEXPECTED exit {rc}"
        return Cycle(kind, arg, result, time.monotonic() - began)
    proc = start(suite, log, "--no-leaderboard", *extra)
    if kind == "random":
        deadline = began + rng.uniform(*window)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    else:  # "training": a moment after a trial started training
        deadline = began + 120
        while time.monotonic() < deadline and proc.poll() is None and not training(db):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is not None:
        rc = proc.returncode
        return Cycle(
            kind,
            arg,
            "finished before the kill" if rc == 0 else f"UNEXPECTED exit {rc}",
            time.monotonic() - began,
        )
    when = "while a trial trained" if training(db) else "between trials or starting"
    kill(proc)
    at = f"{arg} at {time.monotonic() - began:.1f}s".strip()
    return Cycle(kind, at, f"killed {when}", time.monotonic() - began)


@dataclass
class Stress:
    """What `stress` did: the interrupted runs, the run to the end, one more that must do nothing."""

    cycles: list[Cycle]
    final_rc: int
    again_rc: int
    repeated: list[str]  # progress lines of trials the last run ran again (must be none)
    audit: Audit

    @property
    def killed(self) -> list[Cycle]:
        return [c for c in self.cycles if c.result.startswith("killed")]

    @property
    def fired(self) -> set[str]:
        return {c.arg for c in self.cycles if c.result.startswith("fired")}

    @property
    def unexpected(self) -> list[Cycle]:
        return [c for c in self.cycles if "UNEXPECTED" in c.result or "not reached" in c.result]

    def ok(self, schedule: list[tuple[str, str]], kills: int) -> bool:
        points = {arg for kind, arg in schedule if kind == "point"}
        return (
            self.audit.ok
            and self.final_rc == 0
            and self.again_rc == 0
            and not self.repeated
            and not self.unexpected
            and len(self.killed) >= kills
            and points <= self.fired
            and all(c.result.startswith("disk full") for c in self.cycles if c.kind == "full")
        )


def stress(
    suite: Path,
    reference: Path,
    schedule: list[tuple[str, str]],
    rng: random.Random,
    window: tuple[float, float],
    say: Any = print,
) -> Stress:
    """Interrupt `bench run suite` as `schedule` says, then run it to the end and once more, and audit it
    against `reference` (the same suite run uninterrupted in other stores)."""
    log = suite.parent / "stressed.log"
    cycles = []
    for kind, arg in schedule:
        cycle = run_cycle(suite, log, kind, arg, rng, window)
        cycles.append(cycle)
        say(f"  {len(cycles):2d}. {kind:8s} {cycle.arg:38s} {cycle.result} ({cycle.seconds:.1f}s)")
    final_rc = start(suite, log).wait()
    size = log.stat().st_size
    again_rc = start(suite, log, "--no-leaderboard").wait()
    repeated = [line for line in log.read_text()[size:].splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    return Stress(cycles, final_rc, again_rc, repeated, audit(suite, reference))


def kill_experiment(args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-kill-"))
    reference = write_suite(root / "reference")
    stressed = write_suite(root / "stressed")
    print(f"bench reliability: kill experiment in {root} (seed {args.seed})", flush=True)
    began = time.monotonic()
    if start(reference, root / "reference.log").wait() != 0:
        print((root / "reference.log").read_text()[-3000:])
        return False
    print(f"reference run (uninterrupted): {time.monotonic() - began:.0f}s", flush=True)

    schedule = list(SCHEDULE)
    randoms = sum(kind == "random" for kind, _ in schedule)
    for i in range(max(0, args.kills - randoms)):  # more random moments, every fourth with 2 workers
        schedule.append(("random", "workers" if i % 4 == 3 else ""))
    began = time.monotonic()
    result = stress(
        stressed, reference, schedule, rng, (args.min_s, args.max_s), lambda line: print(line, flush=True)
    )
    cycles, killed = result.cycles, result.killed
    print(f"stressed: {len(cycles)} interrupted runs in {time.monotonic() - began:.0f}s, then a run to the end "
          f"(exit {result.final_rc}) and one more (exit {result.again_rc}, {len(result.repeated)} trials run "
          "again)")  # fmt: skip
    points = {arg.split(",")[-1].split("@")[0] for arg in result.fired}
    full = [c for c in cycles if c.kind == "full"]
    print(f"SIGKILLs: {len(killed)} at random moments or during training "
          f"({sum('trial trained' in c.result for c in killed)} of them while a trial trained), "
          f"{sum(c.result.startswith('fired') for c in cycles)} at fail points "
          f"({len(points)} distinct: {', '.join(sorted(points))})")  # fmt: skip
    print(f"full disk: {sum(c.result.startswith('disk full') for c in full)} of {len(full)} runs stopped with "
          "the message")  # fmt: skip
    for line in result.audit.lines():
        print(line)
    if result.unexpected:
        print("unexpected cycles:", *(f"{c.kind} {c.arg}: {c.result}" for c in result.unexpected), sep="\n  ")
    if len(killed) < args.kills:
        print(f"only {len(killed)} random kills landed (wanted {args.kills}): the suite finished first")
    missing = sorted({arg for kind, arg in schedule if kind == "point"} - result.fired)
    if missing:
        print("fail points that did not fire:", ", ".join(missing))
    ok = result.ok(schedule, args.kills)
    print("PASS" if ok else "FAIL")
    return ok


# -- race ------------------------------------------------------------------------------------------------
GATED = """
import os, sys, time
from pathlib import Path
import bench.cli, bench.engine  # every import done before the gate opens
gate = Path(sys.argv[1])
gate.with_name(f"ready-{os.getpid()}").touch()
while not gate.exists():
    time.sleep(0.005)
sys.exit(bench.cli.main(["run", sys.argv[2], "--quiet-bars", "--no-leaderboard"]))
"""


@dataclass
class Race:
    codes: list[int]
    audit: Audit
    trained: int  # processes that trained at least one trial
    seconds: float
    logs: list[Path]

    @property
    def ok(self) -> bool:
        return self.audit.ok and all(c == 0 for c in self.codes)


def race_once(directory: Path, processes: int) -> Race:
    """`processes` `bench run`s of one suite on fresh stores in `directory`, released at the same instant
    once every one of them has imported everything."""
    suite = write_suite(directory, name="race", tasks=("digits_mlp",), optimizers=("sgd", "adamw"),
                        trials=3, seeds=2, steps=30)  # fmt: skip
    gate = directory / "gate"
    logs = [directory / f"worker-{i}.log" for i in range(processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GATED, str(gate), str(suite)],
            cwd=directory,
            env=ENV,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for log in logs
    ]
    deadline = time.monotonic() + 600
    while len(list(directory.glob("ready-*"))) < processes and time.monotonic() < deadline:
        time.sleep(0.05)
    began = time.monotonic()
    gate.touch()
    codes = [p.wait(timeout=600) for p in procs]
    trained = sum(bool(re.search(r"^\[\d+/\d+\] ", log.read_text(), re.M)) for log in logs)
    return Race(codes, audit(suite), trained, time.monotonic() - began, logs)


def race_experiment(args: argparse.Namespace) -> bool:
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-race-"))
    print(f"bench reliability: {args.attempts} attempts of {args.processes} processes started at once on "
          f"fresh stores, in {root}", flush=True)  # fmt: skip
    clean = 0
    for attempt in range(1, args.attempts + 1):
        race = race_once(root / f"attempt-{attempt}", args.processes)
        clean += race.ok
        a = race.audit
        print(f"  attempt {attempt:2d}: exit codes {race.codes}, {a.slots} slots, lost {len(a.lost)}, "
              f"duplicated {len(a.duplicated)}, MLflow problems {len(a.run_problems)}, {race.trained} "
              f"processes trained, {race.seconds:.0f}s: {'ok' if race.ok else 'FAILED'}", flush=True)  # fmt: skip
        if not race.ok:
            for log in race.logs:
                print(f"--- {log}\n{log.read_text()[-2000:]}")
    print(f"{clean} of {args.attempts} attempts clean")
    print("PASS" if clean == args.attempts else "FAIL")
    return clean == args.attempts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="experiment", required=True)
    k = sub.add_parser("kill", help="SIGKILL a suite many times, resume, audit")
    k.add_argument("--kills", type=int, default=22, help="random kills at least (default 22)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--min-s", type=float, default=2.0, help="earliest random kill after the start")
    k.add_argument("--max-s", type=float, default=12.0, help="latest random kill after the start")
    k.add_argument("--dir", help="work here (default: a new temporary directory)")
    r = sub.add_parser("race", help="start several runs at once on fresh stores")
    r.add_argument("--attempts", type=int, default=10)
    r.add_argument("--processes", type=int, default=4)
    r.add_argument("--dir", help="work here (default: a new temporary directory)")
    args = p.parse_args()
    ok = kill_experiment(args) if args.experiment == "kill" else race_experiment(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
