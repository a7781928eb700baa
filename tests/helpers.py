"""Small helpers shared by the end-to-end tests: write a suite, read the stores back."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def write_suite(directory: Path, name: str = "tiny", **overrides: Any) -> Path:
    """A self-contained CPU suite (digits CNN, a few 20-step trials) with stores inside `directory`."""
    suite: dict[str, Any] = {
        "name": name,
        "settings": {
            "tracking_uri": f"sqlite:///{directory / 'mlflow.db'}",
            "storage": f"sqlite:///{directory / '.bench' / 'optuna.db'}",
            "leaderboard_dir": str(directory / "leaderboards"),
            "checkpoint_dir": str(directory / ".bench" / "checkpoints"),
            "heartbeat_s": 1,
        },
        "tasks": [{"name": "digits_cnn", "steps": 20, "eval_every": 10}],
        "optimizers": ["sgd", "adamw"],
        "tuning": {"protocol": "random", "trials": 2, "seeds": 1},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "leaderboard": {"ks": [1, 2]},
    }
    for key, value in overrides.items():
        suite[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def runner_spec(
    tmp_path: Path, steps: int = 20, eval_every: int = 10, lr: float = 1e-3, optimizer: str = "adamw"
) -> Any:
    """The `bench.run.TrialSpec` the engine would build for one trial of `optimizer` on digits_cnn."""
    from bench.engine import trial_spec
    from bench.loader import load_suite
    from bench.plan import make_plan

    suite = load_suite(
        write_suite(
            tmp_path,
            name="runner",
            tasks=[{"name": "digits_cnn", "steps": steps, "eval_every": eval_every}],
            optimizers=[optimizer],
        )
    )
    (study,) = make_plan(suite).studies
    return trial_spec(suite, study, {"lr": lr}, seed=0)


def bench_run(suite: Path, log: Path, *args: str, failpoints: str | None = None) -> subprocess.Popen:
    """`bench run SUITE --quiet-bars ARGS` as a real process in its own process group (a kill reaches
    every process it starts), its output appended to `log`; `failpoints` arms `BENCH_FAILPOINTS`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.pop("BENCH_FAILPOINTS", None)
    if failpoints:
        env["BENCH_FAILPOINTS"] = failpoints
    with log.open("a") as out:
        out.write(f"\n=== bench run {' '.join(args)} failpoints={failpoints}\n")
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(suite), "--quiet-bars", *args],
        cwd=suite.parent,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def trial_runs(directory: Path, *, active_only: bool = True) -> list[dict[str, str]]:
    """Trial runs in the MLflow store, read straight from its SQLite tables: one dict of tags each."""
    con = sqlite3.connect(directory / "mlflow.db")
    try:
        stage = "AND r.lifecycle_stage = 'active'" if active_only else ""
        rows = con.execute(
            f"SELECT r.run_uuid, r.status, t.key, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            f"WHERE t.key LIKE 'bench.%' {stage}"
        ).fetchall()
    finally:
        con.close()
    runs: dict[str, dict[str, str]] = {}
    for run_id, status, key, value in rows:
        runs.setdefault(run_id, {"run_id": run_id, "status": status})[key] = value
    return [r for r in runs.values() if r.get("bench.kind") in ("tune", "seed")]


def optuna_states(directory: Path, study: str) -> list[str]:
    import optuna

    storage = f"sqlite:///{directory / '.bench' / 'optuna.db'}"
    return [t.state.name for t in optuna.load_study(study_name=study, storage=storage).get_trials()]


def seeds_study(storage: str, study: str) -> str:
    """The name of the one study of reruns of `study`'s best configuration (named after its slot)."""
    import optuna

    from bench.plan import seeds_study as prefix

    names = [
        n for n in optuna.get_all_study_names(storage) if n.startswith(prefix(study)) and ".extend" not in n
    ]
    assert len(names) == 1, names
    return names[0]


def run_statuses(directory: Path, kind: str) -> dict[str, str]:
    """Status of the active runs of a kind (`study`, `suite`, `tune`, `seed`) by run name, from SQLite."""
    con = sqlite3.connect(directory / "mlflow.db")
    try:
        rows = con.execute(
            "SELECT r.name, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'bench.kind' AND t.value = ? AND r.lifecycle_stage = 'active'",
            (kind,),
        ).fetchall()
    finally:
        con.close()
    return dict(rows)
