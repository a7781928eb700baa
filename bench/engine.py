"""Run a suite: studies -> trials -> Lightning fits, with Optuna choosing and MLflow recording.

`run_suite(suite)` is what `bench run` calls. It imports none of the three engines directly: Optuna
lives in `bench.search`, Lightning in `bench.run`, MLflow in `bench.track`.

For each study of the plan (task x optimizer) a worker opens the Optuna study (creating it with its
whole budget enqueued as slots, see `bench.search`) and its MLflow parent run, then pops slots until
none is left. Each slot is one trial: sample (or read) the hyperparameters, open a child run, train,
record the outcome. When a study's tuning slots are all finished, its best configuration is rerun on
the suite's extra seeds (a second study `<study>.seeds`, same slot mechanism). Any number of workers,
in this process or others, may do this at once; each trial runs exactly once. Finally the leaderboard
is built from what MLflow holds.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import distributed, search
from bench.outcomes import OUTCOMES
from bench.plan import Plan, StudyPlan, make_plan, seed_run_id, tokens_per_step, trial_id
from bench.run import TrialResult, TrialSpec, train_trial
from bench.space import to_kwargs
from bench.spec import Suite
from bench.track import Tracker

PACKAGES = (
    "bench",
    "torch",
    "lightning",
    "optuna",
    "mlflow",
    "timm",
    "pytorch_optimizer",
    "heavyball",
    "schedulefree",
)


class SuiteConflict(RuntimeError):
    """The stores already hold a study of this name with a different configuration."""


def say(line: str) -> None:
    """Print a progress line now, also when stdout is a pipe or a CI log (block-buffered)."""
    print(line, flush=True)


@dataclass
class Progress:
    """Plain line-per-trial progress with elapsed and remaining-time estimates."""

    total: int
    out: Callable[[str], None] = say
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    trial_seconds: list[float] = field(default_factory=list)

    def trial(
        self, study: str, label: str, result: TrialResult, hparams: dict[str, Any], metric: str
    ) -> None:
        self.done += 1
        self.trial_seconds.append(result.time_s)
        elapsed = time.monotonic() - self.started
        mean = sum(self.trial_seconds) / len(self.trial_seconds)
        remaining = max(0, self.total - self.done) * mean
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in hparams.items())
        value = f"{metric}={result.value:.4g}" if math.isfinite(result.value) else f"{metric}=n/a"
        why = f" ({_last_line(result.error)})" if result.error and result.outcome != "completed" else ""
        self.out(
            f"[{self.done}/{self.total}] {study} {label}: {result.outcome}{why} {value} "
            f"({result.steps} steps, {result.time_s:.1f}s) {shown} | elapsed {_hms(elapsed)}, "
            f"remaining ~{_hms(remaining)}"
        )


def _last_line(text: str, width: int = 160) -> str:
    """The last non-empty line of an error (a traceback's exception line), cut to `width`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else text
    return last if len(last) <= width else last[: width - 3] + "..."


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def provenance(suite: Suite) -> dict[str, Any]:
    """Git commit of the suite's repository, package versions and hardware, computed once."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg.replace("_", "-"))
        except metadata.PackageNotFoundError:
            try:
                versions[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                continue
    try:
        commit = subprocess.run(
            ["git", "-C", str(suite.path.parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "git_commit": commit or "unknown",
        "versions": versions,
        "hardware": f"{platform.machine()} {os.cpu_count()} cpus, gpu: {gpu}, {platform.platform()}",
        "python": platform.python_version(),
    }


def trial_spec(suite: Suite, sp: StudyPlan, hparams: dict[str, Any], seed: int) -> TrialSpec:
    return TrialSpec(
        task=sp.task,
        optimizer=sp.optimizer,
        hparams=hparams,
        seed=seed,
        trainer=suite.trainer,
        data_root=Path(suite.settings.data_root),
        divergence_factor=suite.tuning.divergence_factor,
        time_budget_s=suite.tuning.trial_time_budget_s,
    )


# What the losers of a schema-creation race see (PostgreSQL, then SQLite via Optuna and MLflow).
SCHEMA_RACE = (
    "already exists",
    "UNIQUE constraint failed",
    "Online migration expected",
    "database is locked",
)


def write_standins(data_root: str, out: Callable[[str], None]) -> None:
    """The offline stand-in datasets a `settings.standins` suite trains on, written once (seconds)."""
    from bench.tasks import standins

    missing = standins.missing(data_root)
    if missing:
        out(f"bench: writing offline stand-ins for {', '.join(missing)} under {data_root}/ (once)")
        standins.write_standins(data_root)


def open_store(make: Callable[[], Any], tries: int = 6) -> Any:
    """Open a store, retrying while another worker creates the same empty database's tables: workers
    started together on a fresh shared PostgreSQL race to create the Optuna/MLflow schema, and the
    losers fail with "... already exists" until the winner commits."""
    for attempt in range(tries):
        try:
            return make()
        except Exception as exc:
            if attempt == tries - 1 or not any(m in str(exc) for m in SCHEMA_RACE):
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def follow_leader(suite: Suite, plan: Plan) -> None:
    """Non-zero ranks of a multi-process trial (torchrun, srun): train what rank 0 announces, record
    nothing (rank 0 alone talks to Optuna and MLflow)."""
    studies = {sp.name: sp for sp in plan.studies}

    def run(payload: dict[str, Any]) -> None:
        sp = studies[payload["study"]]
        train_trial(trial_spec(suite, sp, payload["hparams"], payload["seed"]))

    distributed.follow(run)


class Worker:
    """One process's share of a suite run."""

    def __init__(self, suite: Suite, plan: Plan, *, progress: bool, out: Callable[[str], None]):
        self.suite, self.plan, self.out = suite, plan, out
        self.show_bars = progress
        settings = suite.settings
        self.storage = open_store(lambda: search.open_storage(settings.storage, settings.heartbeat_s))
        self.tracker = open_store(lambda: Tracker(suite.settings.tracking_uri, suite.name))
        self.meta = provenance(suite)
        self.progress = Progress(total=plan.estimate.runs, out=out)
        self.ran = 0

    # -- stores ---------------------------------------------------------------------------------
    def _study_tags(self, sp: StudyPlan) -> dict[str, Any]:
        return {
            "bench.suite": self.suite.name,
            "bench.task": sp.task.name,
            "bench.optimizer": sp.optimizer.label,
            "bench.study": sp.name,
        }

    def _parent_run(self, sp: StudyPlan) -> Callable[[Any], None]:
        def on_create(study: Any) -> None:  # idempotent: the repair path may call it again
            if study.user_attrs.get("mlflow_parent"):
                return
            run_id = self.tracker.find_run(kind="study", study=sp.name)
            if run_id is None:
                tags = {
                    **self._study_tags(sp),
                    "bench.kind": "study",
                    "bench.fingerprint": sp.fingerprint,
                    "bench.metric": sp.task.metric,
                    "bench.protocol": self.suite.tuning.protocol,
                }
                run_id = self.tracker.create_run(f"{sp.task.name}/{sp.optimizer.label}", tags)
                space = {k: str(v) for k, v in sp.optimizer.search_space.items()}
                self.tracker.log(
                    run_id,
                    params={"search_space": space, "fixed": dict(sp.optimizer.fixed), "trials": sp.trials,
                            "seeds": sp.seeds, "steps": sp.task.steps, "protocol": self.suite.tuning.protocol},
                )  # fmt: skip
            study.set_user_attr("mlflow_parent", run_id)

        return on_create

    def open_tuning(self, sp: StudyPlan) -> Any:
        t = self.suite.tuning
        space = sp.optimizer.search_space if t.protocol != "defaults" else {}
        slots = search.draw_configurations(t.protocol, t.sampler_seed, space, sp.trials)
        study, created = search.open_study(
            self.storage,
            sp.name,
            direction="minimize" if sp.task.mode == "min" else "maximize",
            protocol=t.protocol,
            seed=t.sampler_seed,
            space=space,
            pruner=search.make_pruner(t.pruner, sp.task.steps, sp.task.eval_every or sp.task.steps),
            slots=slots,
            slot_attrs=[{"kind": "tune", "seed": 0}] * len(slots),
            study_attrs={"fingerprint": sp.fingerprint, "suite": self.suite.name},
            on_create=self._parent_run(sp),
        )
        found = study.user_attrs.get("fingerprint")
        if not created and found != sp.fingerprint:
            raise SuiteConflict(
                f"study '{sp.name}' already exists in {self.suite.settings.storage} with a different "
                f"configuration (fingerprint {found}, this suite {sp.fingerprint}): its trials would not be "
                "comparable. Give this version its own name (`--set name=NEW_NAME`, or `name:` in the suite "
                "file), or other stores (`--storage`, `--tracking-uri`), or delete the old stores (by "
                "default `.bench/optuna.db`, `mlflow.db` and `mlruns/`)."
            )
        return study

    def open_seeds(self, sp: StudyPlan, tuning: Any) -> Any | None:
        best = search.best_trial(tuning)
        if best is None:
            return None
        seeds = list(range(1, sp.seeds))
        study, _ = search.open_study(
            self.storage,
            f"{sp.name}.seeds",
            direction="minimize" if sp.task.mode == "min" else "maximize",
            protocol="random",
            seed=0,
            space={},
            pruner=search.make_pruner("none", 1, 1),
            slots=[dict(best.params)] * len(seeds),
            slot_attrs=[{"kind": "seed", "seed": s, "best_number": best.number} for s in seeds],
            study_attrs={"fingerprint": sp.fingerprint, "best_number": best.number},
            on_create=lambda st: st.set_user_attr("mlflow_parent", tuning.user_attrs.get("mlflow_parent")),
        )
        return study

    # -- one trial ------------------------------------------------------------------------------
    def objective(self, sp: StudyPlan, study: Any) -> Callable[[Any], float]:
        suite, tracker = self.suite, self.tracker
        space = sp.optimizer.search_space if suite.tuning.protocol != "defaults" else {}

        def run(trial: Any) -> float:
            if not search.is_slot(trial):
                # Another worker popped the last slot between our look and our ask: this trial runs
                # nothing and is left FAIL, marked, outside the budget.
                trial.set_user_attr("bench.excess", True)
                raise search.ExcessTrial("no slot left")
            stale = trial.user_attrs.get("mlflow_run")
            if stale:  # a retry of a trial whose process died: retire the dead attempt's run
                tracker.retire(stale, f"process died; retried as optuna trial {trial.number}")
            kind, seed = trial.user_attrs.get("kind", "tune"), int(trial.user_attrs.get("seed", 0))
            hparams = search.suggest(trial, space)
            slot = int(trial.user_attrs["slot"])
            tid = trial_id(sp.name, slot) if kind == "tune" else seed_run_id(sp.name, seed)
            kwargs = to_kwargs(sp.optimizer.entry.defaults, {**sp.optimizer.fixed, **hparams})
            lr = kwargs.get("lr", math.nan)
            name = f"{sp.task.name}/{sp.optimizer.label}" + (f"#{slot}" if kind == "tune" else f"@seed{seed}")
            tags = {
                **self._study_tags(sp),
                "bench.trial_id": tid,
                "bench.number": slot,
                "bench.optuna_trial": trial.number,
                "bench.kind": kind,
                "bench.seed": seed,
                "bench.outcome": "running",
                "bench.metric": sp.task.metric,
                "bench.mode": sp.task.mode,
                "bench.target": sp.task.target if sp.task.target is not None else math.nan,
                "bench.lr": lr,
                "bench.params": json.dumps(hparams, default=str),
                "bench.tokens_per_step": tokens_per_step(sp.task, suite.trainer.accumulate_grad_batches)
                or math.nan,
                "bench.task_version": sp.task.entry.version,
                "bench.optimizer_source": sp.optimizer.entry.source,
                "bench.git_commit": self.meta["git_commit"],
                "bench.hardware": self.meta["hardware"],
                "bench.versions": json.dumps(self.meta["versions"]),
                "bench.fingerprint": sp.fingerprint,
            }
            run_id = tracker.create_run(name, tags, parent_id=study.user_attrs.get("mlflow_parent"))
            trial.set_user_attr("mlflow_run", run_id)
            tracker.log(
                run_id,
                params={**{f"hp.{k}": v for k, v in hparams.items()},
                        **{f"opt.{k}": v for k, v in kwargs.items()}, "seed": seed, "steps": sp.task.steps,
                        "batch_size": sp.task.batch_size, "schedule": sp.optimizer.schedule.name,
                        "world_size": distributed.world_size(),
                        "batch_size_per_device": distributed.per_device_batch(sp.task.batch_size),
                        "global_batch_size": distributed.global_batch(
                            sp.task.batch_size, suite.trainer.accumulate_grad_batches)},
            )  # fmt: skip
            tracker.log_dict(run_id, suite.resolved, "suite.resolved.json")
            callbacks = []
            # optuna-integration's callback needs the trial on every rank: no pruning in multi-process trials
            if kind == "tune" and suite.tuning.pruner != "none" and distributed.world_size() == 1:
                callbacks.append(search.PruningCallback(trial, monitor=sp.task.metric))
            spec = trial_spec(suite, sp, hparams, seed)
            distributed.announce({"study": sp.name, "hparams": hparams, "seed": seed})
            result = train_trial(
                spec,
                callbacks=callbacks,
                logger=tracker.lightning_logger(run_id),
                progress=self.show_bars,
                is_prune=search.is_pruned,
            )
            self.record(run_id, trial, result)
            self.progress.trial(sp.name, name.split("/", 1)[1], result, hparams, sp.task.metric)
            self.ran += 1
            if result.outcome == "pruned":
                raise search.TrialPruned(f"pruned at step {result.steps}")
            ok = result.outcome in ("completed", "timeout") and math.isfinite(result.value)
            worst = math.inf if sp.task.mode == "min" else -math.inf
            return result.value if ok else worst

        return run

    def record(self, run_id: str, trial: Any, result: TrialResult) -> None:
        summary = {
            "value": result.value,
            "steps": result.steps,
            "time_s": result.time_s,
            "steps_to_target": result.steps_to_target,
            "seconds_to_target": result.seconds_to_target,
            "tokens_to_target": result.tokens_to_target,
            **{f"final/{k}": v for k, v in result.metrics.items()},
        }
        self.tracker.log(run_id, metrics=summary, tags={"bench.outcome": result.outcome})
        if result.error:
            self.tracker.client.log_text(run_id, result.error, "error.txt")
        self.tracker.finish(run_id, "FAILED" if result.outcome == "error" else "FINISHED")
        for key, value in (("outcome", result.outcome), ("value", result.value), ("steps", result.steps),
                           ("time_s", result.time_s)):  # fmt: skip
            trial.set_user_attr(key, value if not isinstance(value, float) or math.isfinite(value) else None)

    # -- the loop -------------------------------------------------------------------------------
    def spent(self, study: Any, *, log: bool = False) -> float:
        """Training seconds of a tuning study's finished trials (all workers'); with `log`, logged to its
        MLflow parent run with the steps and the outcome counts. Every optimizer's budget is counted so."""
        done = search.finished_trials(study)
        seconds = sum(float(t.user_attrs.get("time_s") or 0.0) for t in done)
        outcomes = [t.user_attrs.get("outcome") for t in done]
        metrics = {
            "budget/trials": len(done),
            "budget/steps": sum(int(t.user_attrs.get("steps") or 0) for t in done),
            "budget/time_s": seconds,
            **{f"outcomes/{o}": outcomes.count(o) for o in OUTCOMES},
        }
        if log and study.user_attrs.get("mlflow_parent"):
            self.tracker.log(study.user_attrs["mlflow_parent"], metrics=metrics, step=len(done))
        return seconds

    def drain(self, sp: StudyPlan, study: Any, *, tuning: bool = False) -> bool:
        """Run waiting slots until none is left or, for a tuning study with `study_time_budget_s`,
        until its finished trials' training time reaches the cap (the trial that crosses it ends
        normally; the slots left stay waiting, so a larger cap resumes them). True when capped."""
        cap = self.suite.tuning.study_time_budget_s if tuning else None
        objective = self.objective(sp, study)
        search.fail_stale(study)
        ran = False
        while True:
            spent = self.spent(study, log=ran) if tuning else 0.0
            if cap is not None and spent >= cap:
                if study.user_attrs.get("bench.time_budget_spent_s") != spent:  # say it once per change
                    study.set_user_attr("bench.time_budget_spent_s", spent)
                    self.out(f"bench: {sp.name}: study time budget spent ({spent:.1f}s of {cap:g}s); "
                             f"{search.pending(study)[0]} slot(s) left unrun")  # fmt: skip
                return True
            if search.pending(study)[0] == 0:
                return False
            search.run_one(study, objective)
            ran = True

    def work(self, poll_s: float = 2.0) -> None:
        """Run slots until every study of the plan (and its seed reruns) is finished."""
        while True:
            busy = False
            for sp in self.plan.studies:
                tuning = self.open_tuning(sp)
                capped = self.drain(sp, tuning, tuning=True)
                waiting, running = search.pending(tuning)
                waiting = 0 if capped else waiting
                if waiting or running:
                    busy = True
                    continue
                if sp.seeds > 1:
                    seeds = self.open_seeds(sp, tuning)
                    if seeds is not None:
                        self.drain(sp, seeds)
                        busy = busy or any(search.pending(seeds))
            if not busy:
                return
            time.sleep(poll_s)  # other workers are finishing their trials (or dead ones go stale)


def run_suite(
    suite: Suite,
    *,
    workers: int = 1,
    progress: bool | None = None,
    leaderboard: bool = True,
    out: Callable[[str], None] = say,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Run every trial of `suite` (resuming what is already recorded) and build its leaderboard."""
    plan = make_plan(suite)
    distributed.check(suite, workers)
    distributed.setup(suite.trainer.accelerator)
    if not distributed.is_leader():
        follow_leader(suite, plan)
        return {"trials_run": 0}
    if progress is None:
        progress = sys.stderr.isatty() and os.environ.get("CI") is None
    if suite.settings.standins:
        write_standins(suite.settings.data_root, out)
    procs = []
    if workers > 1:  # share the cores instead of oversubscribing them
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
        cmd = [
            sys.executable,
            "-m",
            "bench.cli",
            *(argv or []),
            "--workers",
            "1",
            "--no-leaderboard",
            "--quiet-bars",
        ]
        procs = [subprocess.Popen(cmd) for _ in range(workers - 1)]
    total = plan.estimate.runs  # tuning trials plus seed reruns
    out(f"bench: suite '{suite.name}': {len(plan.studies)} studies, {total} trials, {workers} worker(s)")
    out(f"bench: tracking {suite.settings.tracking_uri}  studies {suite.settings.storage}")
    if distributed.world_size() > 1:
        off = "" if suite.tuning.pruner == "none" else " (pruning is off: it needs the trial on every rank)"
        out(f"bench: each trial runs on {distributed.world_size()} processes ({distributed.launcher()}){off}")
    worker = Worker(suite, plan, progress=progress, out=out)
    try:
        worker.work()
    finally:
        distributed.announce(None)  # release the followers of a multi-process trial
    failed = [p.wait() for p in procs]
    if any(failed):
        out(f"bench: {sum(1 for r in failed if r)} worker process(es) exited with an error")
    result: dict[str, Any] = {"trials_run": worker.ran}
    if leaderboard:
        result["leaderboard"] = build_leaderboard(suite, tracker=worker.tracker, out=out)
    return result


def build_leaderboard(
    suite: Suite, *, tracker: Tracker | None = None, out: Callable[[str], None] = say
) -> list[Path]:
    """Read the suite's trials back from MLflow, score them, write and log the leaderboard files."""
    from bench import report, score

    tracker = tracker or Tracker(suite.settings.tracking_uri, suite.name)
    table = tracker.trials_table()
    if table.empty:
        out("bench: no finished trials recorded yet; no leaderboard written")
        return []
    board = score.leaderboard(table, suite.leaderboard)
    run_of = dict(zip(table["trial_id"], table["run_id"], strict=True))
    curves = {}
    for task, rows in board.rows.groupby("task"):
        best = {t: run_of[t] for t in rows["best_trial_id"].dropna() if t in run_of}
        metric = table.loc[table["task"] == task, "metric"].iloc[0]
        curves.update(tracker.curves(best, metric=metric))
    paths = report.write_leaderboard(board, table, curves, Path(suite.settings.leaderboard_dir), suite.name)
    run_id = tracker.find_run(kind="suite", suite=suite.name)
    if run_id is None:
        run_id = tracker.create_run(suite.name, {"bench.kind": "suite", "bench.suite": suite.name})
    tracker.log_dict(run_id, suite.resolved, "suite.resolved.json")
    tracker.log_artifacts(run_id, [p for p in paths if p.suffix in (".md", ".csv", ".json")], "leaderboard")
    tracker.log_artifacts(run_id, [p for p in paths if p.suffix == ".png"], "plots")
    tracker.log(run_id, metrics={"trials": len(table)})
    tracker.finish(run_id)
    md = next((p for p in paths if p.suffix == ".md"), None)
    out(f"bench: leaderboard written to {md}" if md else "bench: leaderboard written")
    return paths
