"""End to end, in process: a tiny suite through Optuna, Lightning and MLflow to a leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import optuna_states, trial_runs, write_suite

from bench.cli import main


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_suite_runs_records_every_trial_and_resumes_without_duplicates(workdir: Path, capsys) -> None:
    suite = write_suite(workdir, tuning={"protocol": "random", "trials": 2, "seeds": 2})
    assert main(["run", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "[6/6]" in out and "leaderboard written" in out

    runs = trial_runs(workdir)
    assert len(runs) == 6  # 2 optimizers x (2 tuning trials + 1 seed rerun)
    assert sorted(r["bench.kind"] for r in runs).count("seed") == 2
    assert len({r["bench.trial_id"] for r in runs}) == 6
    assert all(r["bench.outcome"] == "completed" and r["status"] == "FINISHED" for r in runs)
    assert all(r["bench.git_commit"] and "torch" in json.loads(r["bench.versions"]) for r in runs)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    one = client.get_run(runs[0]["run_id"])
    assert one.data.params["steps"] == "20" and any(k.startswith("hp.") for k in one.data.params)
    assert len(client.get_metric_history(one.info.run_id, "val/error")) == 2  # steps 10 and 20
    assert client.get_metric_history(one.info.run_id, "train/loss")
    assert one.data.metrics["train/device/samples_per_sec"] > 0  # Lightning's ThroughputMonitor
    assert one.data.tags["mlflow.parentRunId"]  # a child of its study's run
    artifacts = {a.path for a in client.list_artifacts(one.info.run_id)}
    assert "suite.resolved.json" in artifacts

    board = workdir / "leaderboards" / "tiny.md"
    text = board.read_text()
    assert "adamw" in text and "sgd" in text and "trials" in text
    data = json.loads((workdir / "leaderboards" / "tiny.json").read_text())
    assert data  # machine-readable baseline for `bench check`

    # A second run finds every slot finished: no new trial, no new run.
    assert main(["run", str(suite)]) == 0
    assert len(trial_runs(workdir)) == 6
    assert optuna_states(workdir, "tiny.digits_cnn.adamw").count("COMPLETE") == 2


def test_absurd_learning_rates_are_recorded_as_diverged(workdir: Path) -> None:
    suite = write_suite(
        workdir,
        name="absurd",
        optimizers=[{"name": "sgd", "search_space": {"lr": {"low": 1.0e3, "high": 1.0e4, "log": True}}}],
        tuning={"protocol": "random", "trials": 2, "seeds": 1},
    )
    assert main(["run", str(suite)]) == 0
    runs = trial_runs(workdir)
    assert [r["bench.outcome"] for r in runs] == ["diverged", "diverged"]
    assert "diverged" in (workdir / "leaderboards" / "absurd.md").read_text()


def test_defaults_protocol_runs_one_trial_per_study(workdir: Path) -> None:
    suite = write_suite(workdir, name="defaults", tuning={"protocol": "defaults", "trials": 5, "seeds": 1})
    assert main(["run", str(suite)]) == 0
    runs = trial_runs(workdir)
    assert len(runs) == 2 and {r["bench.optimizer"] for r in runs} == {"sgd", "adamw"}
    assert all(json.loads(r["bench.params"]) == {} for r in runs)


def test_pruned_trials_are_recorded_as_pruned(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from bench import search

    class AlwaysPrune(optuna.pruners.BasePruner):  # deterministic pruner, as optuna.testing has
        def prune(self, study, trial) -> bool:
            return True

    monkeypatch.setattr(search, "make_pruner", lambda *a, **k: AlwaysPrune())
    suite = write_suite(
        workdir, name="pruned", optimizers=["adamw"], tuning={"trials": 2, "pruner": "median"}
    )
    assert main(["run", str(suite)]) == 0
    runs = trial_runs(workdir)
    assert [r["bench.outcome"] for r in runs] == ["pruned", "pruned"]
    assert optuna_states(workdir, "pruned.digits_cnn.adamw") == ["PRUNED", "PRUNED"]
    assert all(int(float(r.get("bench.number", 0))) in (0, 1) for r in runs)


def test_malformed_suite_exits_nonzero_and_creates_nothing(workdir: Path, capsys) -> None:
    suite = write_suite(workdir, name="bad", optimizers=["adamW"])
    assert main(["run", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "optimizers[0]" in err and "adamw" in err
    assert sorted(p.name for p in workdir.iterdir()) == ["bad.yaml"]


def test_trial_outcome_value_is_nan_free_in_leaderboard_json(workdir: Path) -> None:
    suite = write_suite(workdir, name="one", optimizers=["adamw"], tuning={"trials": 1, "seeds": 1})
    assert main(["run", str(suite)]) == 0
    (run,) = trial_runs(workdir)
    assert math.isfinite(float(run["bench.lr"]))


def test_a_changed_suite_under_the_same_name_is_refused_with_the_way_out(workdir: Path, capsys) -> None:
    suite = write_suite(workdir, optimizers=["adamw"], tuning={"protocol": "random", "trials": 1, "seeds": 1})
    assert main(["run", str(suite)]) == 0
    before = trial_runs(workdir)
    assert main(["run", str(suite), "--trials", "2"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "--set name=" in err and ".bench/optuna.db" in err
    assert trial_runs(workdir) == before  # nothing ran, nothing recorded
    assert main(["run", str(suite), "--trials", "2", "--set", "name=tiny2"]) == 0


def test_progress_line_says_why_a_trial_failed() -> None:
    from bench.engine import Progress
    from bench.run import TrialResult

    lines: list[str] = []
    error = 'Traceback (most recent call last):\n  File "x.py", line 1\nFileNotFoundError: tokenizer file not found: x\n'
    result = TrialResult(outcome="error", value=math.nan, metrics={}, steps=0, time_s=0.1, error=error)
    Progress(total=1, out=lines.append).trial("s.t.adamw", "adamw#0", result, {"lr": 0.1}, "val/loss")
    assert "error (FileNotFoundError: tokenizer file not found: x) val/loss=n/a" in lines[0]


def test_standins_into_a_file_is_refused(tmp_path: Path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("keep")
    assert main(["standins", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err and target.read_text() == "keep"
