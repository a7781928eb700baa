"""End to end, in process: a tiny suite through Optuna, Lightning and MLflow to a leaderboard; and the
runner's plain-callable boundary (`train_trial` with `log_metrics`, `on_eval`, `on_step`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import optuna_states, run_statuses, runner_spec, seeds_study, trial_runs, write_suite

from bench.cli import main


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_suite_runs_records_every_trial_and_resumes_without_duplicates(workdir: Path, capsys) -> None:
    suite = write_suite(workdir, tuning={"protocol": "random", "trials": 2, "seeds": 2})
    assert main(["run", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "[6/6]" in out and "leaderboard written" in out
    assert "/artifacts/leaderboard/tiny.html?workflowType=machine_learning" in out  # where to look
    assert "already recorded" not in out

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
    assert [m.step for m in client.get_metric_history(one.info.run_id, "val/error")] == [
        9,
        19,
    ]  # 2 evaluations
    assert client.get_metric_history(one.info.run_id, "train/loss")
    assert one.data.metrics["system/device_samples_per_sec"] > 0  # Lightning's ThroughputMonitor
    assert "epoch" not in one.data.metrics and one.data.tags["mlflow.source.name"] == "tiny.yaml"
    assert one.data.tags["mlflow.note.content"].startswith("Tuning trial (slot")
    assert one.data.tags["mlflow.parentRunId"]  # a child of its study's run
    artifacts = {a.path for a in client.list_artifacts(one.info.run_id)}
    assert "suite.resolved.json" in artifacts

    board = workdir / "leaderboards" / "tiny.md"
    text = board.read_text()
    assert "adamw" in text and "sgd" in text and "trials" in text
    # the machine-readable baseline `bench check` compares against: every (task, optimizer), counted
    data = json.loads((workdir / "leaderboards" / "tiny.json").read_text())
    assert data["format"] == "bench-leaderboard/2" and data["suite"] == "tiny"
    rows = data["tasks"]["digits_cnn"]["optimizers"]
    assert set(rows) == {"sgd", "adamw"}
    assert all(
        r["n_trials"] == 2 and r["n_seeds"] == 1 and r["outcomes"]["completed"] == 2 for r in rows.values()
    )
    assert all(
        0.0 <= r["best"] <= 1.0 and r["best_trial_id"].startswith("tiny.digits_cnn.") for r in rows.values()
    )

    assert run_statuses(workdir, "study") == {"digits_cnn/sgd": "FINISHED", "digits_cnn/adamw": "FINISHED"}
    assert run_statuses(workdir, "suite") == {"tiny": "FINISHED"}

    # A second run finds every slot finished: no new trial, no new run, and it says so.
    assert main(["run", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "bench: 6/6 trials already recorded; nothing to train" in out and "[" not in out
    assert "leaderboard up to date" in out
    assert len(trial_runs(workdir)) == 6
    assert optuna_states(workdir, "tiny.digits_cnn.adamw").count("COMPLETE") == 2


@pytest.mark.slow
def test_absurd_learning_rates_are_recorded_as_diverged_without_lightning_noise(workdir: Path, capfd) -> None:
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
    # a failure costs chance (0.9 error with 10 classes), whatever the other trials did
    row = json.loads((workdir / "leaderboards" / "absurd.json").read_text())["tasks"]["digits_cnn"]
    assert row["failure"]["value"] == pytest.approx(0.9) and row["optimizers"]["sgd"][
        "median"
    ] == pytest.approx(0.9)
    out, err = capfd.readouterr()
    assert out.count(": diverged ") == 2
    assert "training_step` returned `None`" not in out + err  # a skipped step is the outcome, not a warning


@pytest.mark.slow
def test_defaults_protocol_runs_one_trial_per_study(workdir: Path) -> None:
    suite = write_suite(workdir, name="defaults", tuning={"protocol": "defaults", "trials": 5, "seeds": 1})
    assert main(["run", str(suite)]) == 0
    runs = trial_runs(workdir)
    assert len(runs) == 2 and {r["bench.optimizer"] for r in runs} == {"sgd", "adamw"}
    assert all(json.loads(r["bench.params"]) == {} for r in runs)


@pytest.mark.slow
def test_first_seed_moves_every_run_of_a_study_to_fresh_seeds(workdir: Path) -> None:
    tuning = {"protocol": "defaults", "seeds": 3, "first_seed": 7}
    suite = write_suite(workdir, name="fresh", optimizers=["adamw"], tuning=tuning)
    assert main(["run", str(suite)]) == 0
    seeds = sorted((r["bench.kind"], int(r["bench.seed"])) for r in trial_runs(workdir))
    assert seeds == [("seed", 8), ("seed", 9), ("tune", 7)]
    data = json.loads((workdir / "leaderboards" / "fresh.json").read_text())
    entry = data["tasks"]["digits_cnn"]["optimizers"]["adamw"]
    assert set(entry["seed_values"]) == {"7", "8", "9"}  # the lone tuning run counts: nothing was selected
    cost = entry["cost"]
    assert cost["step_time_s"] > cost["update_time_s"] > 0 and cost["n_timed"] == 3
    assert cost["state_bytes"] > 0 and cost["step_time_s_ratio"] == 1.0  # adamw is its own reference


@pytest.mark.slow
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
    assert sorted(int(r["bench.number"]) for r in runs) == [0, 1]
    assert optuna_states(workdir, "pruned.digits_cnn.adamw") == ["PRUNED", "PRUNED"]
    storage = f"sqlite:///{workdir / '.bench' / 'optuna.db'}"
    trials = optuna.load_study(study_name="pruned.digits_cnn.adamw", storage=storage).get_trials()
    # stopped at the first evaluation (step 10 of 20), where the metric was reported at the optimizer step
    assert all(t.user_attrs["steps"] == 10 and list(t.intermediate_values) == [10] for t in trials)


def test_malformed_suite_exits_nonzero_and_creates_nothing(workdir: Path, capsys) -> None:
    suite = write_suite(workdir, name="bad", optimizers=["adamW"])
    assert main(["run", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "optimizers[0]" in err and "adamw" in err
    assert sorted(p.name for p in workdir.iterdir()) == ["bad.yaml"]


@pytest.mark.slow
def test_trial_outcome_value_is_nan_free_in_leaderboard_json(workdir: Path) -> None:
    suite = write_suite(workdir, name="one", optimizers=["adamw"], tuning={"trials": 1, "seeds": 1})
    assert main(["run", str(suite)]) == 0
    (run,) = trial_runs(workdir)
    assert math.isfinite(float(run["bench.lr"])) and float(run["bench.lr"]) > 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the leaderboard JSON")

    text = (workdir / "leaderboards" / "one.json").read_text()
    row = json.loads(text, parse_constant=refuse)["tasks"]["digits_cnn"]["optimizers"]["adamw"]
    assert math.isfinite(row["best"]) and row["seed_mean"] is None  # one trial, no reruns: null, not NaN


@pytest.mark.slow
def test_a_changed_suite_under_the_same_name_is_refused_with_the_way_out(workdir: Path, capsys) -> None:
    suite = write_suite(workdir, optimizers=["adamw"], tuning={"protocol": "random", "trials": 1, "seeds": 1})
    assert main(["run", str(suite)]) == 0
    before = trial_runs(workdir)
    assert main(["run", str(suite), "--set", "tasks[0].steps=21"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "--set name=" in err and ".bench/optuna.db" in err
    assert trial_runs(workdir) == before  # nothing ran, nothing recorded
    assert main(["run", str(suite), "--set", "tasks[0].steps=21", "--set", "name=tiny2"]) == 0


@pytest.mark.slow
def test_a_larger_budget_extends_the_studies_without_repeating_or_changing_a_trial(
    workdir: Path, capsys
) -> None:
    from bench import search
    from bench.loader import load_suite

    suite = write_suite(workdir, optimizers=["sgd"], tuning={"protocol": "random", "trials": 2, "seeds": 1})
    assert main(["run", str(suite)]) == 0
    before = {r["bench.trial_id"]: (r["run_id"], r["bench.params"]) for r in trial_runs(workdir)}
    capsys.readouterr()

    assert main(["run", str(suite), "--trials", "3"]) == 0
    out = capsys.readouterr().out
    assert "bench: 2/3 trials already recorded; running the other 1" in out
    assert "extending its tuning trials from 2 to 3; the 2 recorded keep their configurations" in out
    assert "[3/3] tiny.digits_cnn.sgd sgd#2" in out
    after = {r["bench.trial_id"]: (r["run_id"], r["bench.params"]) for r in trial_runs(workdir)}
    assert {k: after[k] for k in before} == before  # the recorded trials: same runs, same configurations
    (new,) = set(after) - set(before)
    space = load_suite(suite).optimizers[0].search_space
    assert json.loads(after[new][1]) == search.draw_configurations("random", 0, space, 3)[2]  # the next draw
    assert optuna_states(workdir, "tiny.digits_cnn.sgd") == ["COMPLETE"] * 3
    assert run_statuses(workdir, "study") == {"digits_cnn/sgd": "FINISHED"}  # reopened, then ended again
    data = json.loads((workdir / "leaderboards" / "tiny.json").read_text())
    assert data["tasks"]["digits_cnn"]["optimizers"]["sgd"]["n_trials"] == 3

    # A smaller budget would drop recorded trials: refused, nothing run.
    assert main(["run", str(suite), "--trials", "2"]) == 2
    err = capsys.readouterr().err
    assert "holds 3 tuning trials and this suite asks for 2" in err and "--set tuning.trials=3" in err


@pytest.mark.slow
def test_an_extension_that_finds_a_new_best_reruns_it_and_retires_the_old_reruns(
    workdir: Path, capsys
) -> None:
    from bench import search
    from bench.space import Float

    # a sampler seed whose first draw is a hopeless learning rate and whose next ones are not
    space = {"lr": Float(1e-6, 1e-1, log=True)}
    seed = next(s for s in range(100) if (lrs := [c["lr"] for c in search.draw_configurations("random", s, space, 3)])
                and lrs[0] < 1e-5 and max(lrs[1:]) > 1e-2)  # fmt: skip
    sgd = {
        "name": "sgd",
        "search_space": {"lr": {"low": 1e-6, "high": 1e-1, "log": True}},
        "fixed": {"momentum": 0.9},
    }
    suite = write_suite(
        workdir,
        optimizers=[sgd],
        tuning={"protocol": "random", "trials": 1, "seeds": 2, "sampler_seed": seed},
    )
    assert main(["run", str(suite)]) == 0
    storage = f"sqlite:///{workdir / '.bench' / 'optuna.db'}"
    assert seeds_study(storage, "tiny.digits_cnn.sgd").endswith("seeds-of-slot0")
    (old,) = [r for r in trial_runs(workdir) if r["bench.kind"] == "seed"]

    assert main(["run", str(suite), "--trials", "3"]) == 0
    runs = trial_runs(workdir)
    tuned = {int(r["bench.number"]): float(r["bench.lr"]) for r in runs if r["bench.kind"] == "tune"}
    (rerun,) = [r for r in runs if r["bench.kind"] == "seed"]
    import optuna

    names = sorted(n for n in optuna.get_all_study_names(storage) if ".seeds-of-slot" in n)
    assert names[0] == "tiny.digits_cnn.sgd.seeds-of-slot0" and len(names) == 2  # the old best's, the new's
    best = int(names[1].removeprefix("tiny.digits_cnn.sgd.seeds-of-slot"))
    assert best != 0 and float(rerun["bench.lr"]) == tuned[best]  # the new best is rerun
    assert rerun["bench.trial_id"] == "tiny.digits_cnn.sgd.seed-1"
    assert old["run_id"] not in {r["run_id"] for r in runs}  # the old best's rerun is retired, not scored
    retired = {r["run_id"]: r for r in trial_runs(workdir, active_only=False)}[old["run_id"]]
    assert "superseded" in retired["bench.retired"]


def test_standins_into_a_file_is_refused(tmp_path: Path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("keep")
    assert main(["standins", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err and target.read_text() == "keep"


# -- the runner's boundary: plain callables in, an outcome out -----------------------------------------
@pytest.mark.slow
def test_the_runner_logs_through_a_plain_callable_and_reports_steps(tmp_path: Path) -> None:
    from bench.run import train_trial

    logged: list[tuple[int, dict[str, float]]] = []
    steps: list[int] = []
    result = train_trial(
        runner_spec(tmp_path), log_metrics=lambda m, step: logged.append((step, m)), on_step=steps.append
    )
    assert result.outcome == "completed" and result.steps == 20
    assert steps[-1] == 20 and steps == sorted(steps)
    keys = {k for _, m in logged for k in m}
    assert {"train/loss", "val/loss", "val/error", "train/device/samples_per_sec", "epoch"} <= keys
    val = [(step, m["val/error"]) for step, m in logged if "val/error" in m]
    assert [step for step, _ in val] == [9, 19] and val[-1][1] == pytest.approx(result.value)
    assert all(isinstance(v, int | float) for _, m in logged for v in m.values())


@pytest.mark.slow
def test_the_runner_stops_as_pruned_when_on_eval_says_so(tmp_path: Path) -> None:
    from bench.run import train_trial

    heard: list[tuple[int, float]] = []

    def on_eval(step: int, value: float) -> bool:
        heard.append((step, value))
        return True  # stop at the first evaluation

    result = train_trial(runner_spec(tmp_path, steps=40, eval_every=10), on_eval=on_eval)
    assert result.outcome == "pruned" and result.steps == 10 and result.error is None
    assert heard == [(10, pytest.approx(result.value))]  # one evaluation, no final one after stopping
    assert math.isfinite(result.value)

    patient = train_trial(runner_spec(tmp_path, steps=20, eval_every=10), on_eval=lambda s, v: False)
    assert patient.outcome == "completed" and patient.steps == 20


@pytest.mark.slow
def test_a_closure_optimizer_takes_two_passes_per_step_under_manual_optimization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAM (flag `closure`): the gradient first, then `step(closure)` re-evaluating the same batch, and
    the schedule stepped once per optimizer step; Lightning counts one global step per `step`."""
    from bench.run import train_trial
    from bench.workloads.digits import DigitsTask

    batches: list[int] = []
    original = DigitsTask.training_loss

    def counted(self, model, batch):  # type: ignore[no-untyped-def]
        batches.append(id(batch))
        return original(self, model, batch)

    monkeypatch.setattr(DigitsTask, "training_loss", counted)
    from lightning.pytorch.callbacks import Callback

    lrs: list[float] = []

    class LearningRates(Callback):
        def on_train_batch_end(self, trainer, *args) -> None:  # type: ignore[no-untyped-def]
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    spec = runner_spec(tmp_path, steps=20, eval_every=10, optimizer="sam")
    result = train_trial(spec, callbacks=[LearningRates()])
    assert result.outcome == "completed" and result.steps == 20, result.error
    assert len(batches) == 40 and all(a == b for a, b in zip(batches[::2], batches[1::2], strict=True))
    train = [v for _, v in result.curves["train"]]
    assert train[-1] < train[0] and math.isfinite(result.value)
    assert len(lrs) == 20 and lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.1 * lrs[0]  # cosine, stepped
