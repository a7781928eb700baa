"""The trial-record schema (bench.records) and its round trip through a real MLflow store (bench.track)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from bench import records
from bench.records import Provenance, RunFields, StudyRecord, Summary, TrialRecord
from bench.track import MetricsWriter, Tracker, ui_links

PROVENANCE = Provenance(git_commit="abc123", versions={"torch": "2.4.0", "bench": "0.1.0"}, hardware="x86_64")


def trial_record(**changes) -> TrialRecord:
    record = TrialRecord(
        suite="tiny",
        task="digits_cnn",
        optimizer="adamw",
        study="tiny.digits_cnn.adamw",
        trial_id="tiny.digits_cnn.adamw.trial-1",
        number=1,
        optuna_trial=3,
        kind=records.TUNE,
        seed=0,
        metric="val/error",
        mode="min",
        target=0.05,
        lr=1e-3,
        hparams={"lr": 1e-3, "one_minus_beta1": 0.1},
        kwargs={"lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.01, "foreach": True, "name": "x"},
        steps=20,
        batch_size=64,
        schedule="cosine",
        world_size=1,
        batch_size_per_device=64,
        global_batch_size=64,
        tokens_per_step=None,
        task_version=2,
        optimizer_source="torch.optim.AdamW",
        fingerprint="f00d",
        provenance=PROVENANCE,
    )
    return dataclasses.replace(record, **changes)


SUMMARY = Summary(
    outcome="completed",
    value=0.0417,
    steps=20,
    time_s=1.5,
    steps_to_target=10.0,
    seconds_to_target=0.7,
    final={"val/error": 0.0417, "val/loss": 0.21},
)


def test_encode_writes_the_documented_layout() -> None:
    fields = records.encode(trial_record(summary=SUMMARY))
    assert fields.tags[records.KIND] == "tune" and fields.tags[records.OUTCOME] == "completed"
    assert fields.tags[records.TARGET] == "0.05" and fields.tags[records.TOKENS_PER_STEP] == "nan"
    assert fields.tags[records.PARAMS] == '{"lr": 0.001, "one_minus_beta1": 0.1}'
    assert all(name.startswith("bench.") for name in fields.tags)
    assert fields.params["hp.lr"] == "0.001" and fields.params["opt.betas"] == "[0.9, 0.999]"
    assert fields.params["global_batch_size"] == "64" and fields.params["schedule"] == "cosine"
    assert math.isnan(fields.metrics["tokens_to_target"])
    assert all("/" not in name for name in fields.metrics)  # listed after the curves in MLflow's charts
    assert fields.tags[records.FINAL] == '{"val/error": 0.0417, "val/loss": 0.21}'
    running = records.encode(trial_record())
    assert running.tags[records.OUTCOME] == records.RUNNING and running.metrics == {}


def test_decode_inverts_encode_and_skips_other_runs() -> None:
    for record in (trial_record(), trial_record(summary=SUMMARY), trial_record(kind="seed", target=None)):
        assert records.decode(records.encode(record)) == record
    study = StudyRecord(suite="tiny", task="digits_cnn", optimizer="adamw", study="tiny.digits_cnn.adamw",
                        fingerprint="f00d", metric="val/error", protocol="random", search_space={"lr": "Float"},
                        fixed={}, trials=2, seeds=1, steps=20)  # fmt: skip
    assert records.decode(records.encode(study)) is None
    assert records.decode(RunFields(tags=records.suite_key("tiny"))) is None


def test_a_trial_record_round_trips_through_a_real_mlflow_store(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    study = StudyRecord(suite="tiny", task="digits_cnn", optimizer="adamw", study="tiny.digits_cnn.adamw",
                        fingerprint="f00d", metric="val/error", protocol="random", search_space={"lr": "Float"},
                        fixed={"eps": 1e-8}, trials=2, seeds=1, steps=20)  # fmt: skip
    parent = tracker.open_study(study, "digits_cnn/adamw")
    assert tracker.find_run(records.study_key(study.study)) == parent

    started = trial_record()
    run_id = tracker.open_trial(started, "digits_cnn/adamw#1", parent)
    (running,) = tracker.read_trials(ended=False)
    assert running == dataclasses.replace(started, run_id=run_id, status="RUNNING")
    assert tracker.read_trials() == [] and tracker.trials_table().empty  # nothing ended yet

    failed = dataclasses.replace(
        SUMMARY, outcome="error", value=math.nan, error="Traceback\nRuntimeError: boom"
    )
    tracker.close_trial(run_id, dataclasses.replace(started, summary=failed))
    (back,) = tracker.read_trials()
    assert back == dataclasses.replace(started, summary=dataclasses.replace(failed, error=None),
                                       run_id=run_id, status="FAILED")  # fmt: skip
    run = tracker.client.get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert "value" not in run.data.metrics  # NaN summaries are left out, and read back as NaN
    text = Path(tracker.client.download_artifacts(run_id, records.ERROR_ARTIFACT, str(tmp_path))).read_text()
    assert text.endswith("RuntimeError: boom")

    first = trial_record(trial_id="tiny.digits_cnn.adamw.trial-0", number=0)
    tracker.close_trial(tracker.open_trial(first, "#0", parent), dataclasses.replace(first, summary=SUMMARY))
    table = tracker.trials_table().sort_values("number")
    assert list(table.columns) == list(records.COLUMNS)
    assert table["outcome"].tolist() == ["completed", "error"] and table["kind"].tolist() == ["tune"] * 2
    assert table["value"].iloc[0] == 0.0417 and math.isnan(table["value"].iloc[1])
    assert table["params"].iloc[0] == {"lr": 1e-3, "one_minus_beta1": 0.1}
    assert math.isnan(table["tokens_per_step"].iloc[0]) and table["target"].iloc[0] == 0.05


def test_metrics_writer_batches_until_flushed(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    run_id = tracker.create_run("r", {})
    calls: list[int] = []
    log_batch = tracker.client.log_batch

    def counting(run_id, metrics=(), **kw):
        calls.append(len(metrics))
        return log_batch(run_id, metrics=metrics, **kw)

    tracker.client.log_batch = counting
    with MetricsWriter(tracker.client, run_id, every_s=3600, size=1000) as log_metrics:
        for step in range(0, 30, 10):
            log_metrics({"train/loss": 2.0 - step / 100, "epoch": 0, "bad name!": 1.0, "note": "text"}, step)
        assert calls == []  # nothing written while the trial trains
    assert calls == [6]  # one batch at the end: 3 steps x 2 numeric metrics (`epoch` is not recorded)
    history = tracker.client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 2.0), (10, 1.9), (20, 1.8)]
    assert tracker.client.get_metric_history(run_id, "bad name")  # cleaned as MLflow requires


def test_metrics_writer_flushes_large_buffers_early(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    run_id = tracker.create_run("r", {})
    log_metrics = MetricsWriter(tracker.client, run_id, every_s=3600, size=4)
    for step in range(3):
        log_metrics({"a": 1.0, "b": 2.0}, step)
    assert len(tracker.client.get_metric_history(run_id, "a")) == 2  # the first 4 values went out
    log_metrics.flush()
    assert len(tracker.client.get_metric_history(run_id, "a")) == 3


@pytest.mark.parametrize("kind", [records.STUDY_KIND, records.SUITE_KIND])
def test_suite_and_study_runs_are_not_trials(kind: str) -> None:
    assert not records.is_trial({records.KIND: kind})
    assert all(records.is_trial({records.KIND: k}) for k in records.KINDS)


def test_lightning_throughput_is_recorded_as_system_metrics_and_the_curves_keep_their_names() -> None:
    assert records.curve_name("train/loss") == "train/loss" and records.curve_name("val/error") == "val/error"
    assert records.curve_name("val_ema/loss") == "val_ema/loss"
    assert records.curve_name("train/samples_per_sec") == "system/samples_per_sec"
    assert records.curve_name("train/device/mfu") == "system/device_mfu"
    assert records.curve_name("epoch") is None


def test_a_study_records_its_tuning_curve_first_its_budget_after_and_its_outcomes_in_words() -> None:
    fields = records.study_progress(3, 60, 1.5, {"completed": 2, "diverged": 1, "oom": 0}, "val/error", 0.04)
    assert fields.metrics == {"best/val/error": 0.04, "trials": 3, "steps": 60, "time_s": 1.5}
    assert fields.tags == {records.OUTCOMES_TAG: "2 completed, 1 diverged"}
    nothing = records.study_progress(1, 5, 0.1, {"completed": 0, "error": 1}, "val/error", None)
    assert "best/val/error" not in nothing.metrics and nothing.tags[records.OUTCOMES_TAG] == "1 error"


def test_runs_describe_themselves_in_words() -> None:
    started = records.note(trial_record())
    assert started.startswith("Tuning trial (slot 1) of study `tiny.digits_cnn.adamw`: adamw on digits_cnn")
    assert "lr=0.001" in started and "target 0.05" in started and "Outcome" not in started
    ended = records.note(trial_record(summary=SUMMARY))
    assert ended.endswith("**Outcome: completed**, val/error = 0.0417 after 20 steps (1.5 s).")
    seed = records.note(trial_record(kind=records.SEED, seed=2))
    assert seed.startswith("Rerun of the best configuration on seed 2 of study")
    study = StudyRecord(suite="tiny", task="digits_cnn", optimizer="adamw", study="tiny.digits_cnn.adamw",
                        fingerprint="f00d", metric="val/error", protocol="random", search_space={"lr": "1e-4..1e-1 log"},
                        fixed={}, trials=4, seeds=3, steps=20)  # fmt: skip
    assert records.note(study).startswith("Study **digits_cnn x adamw** of suite `tiny`: 4 `random` trial(s)")
    assert "`best/val/error` is the best value so far" in records.note(study)
    assert "rerun on 2 more seed(s)" in records.note(study)


def test_the_experiment_is_a_described_training_experiment_with_artifacts_beside_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow's default would put artifacts in ./mlruns of this directory
    store = tmp_path / "store"
    tracker = Tracker(f"sqlite:///{store / 'mlflow.db'}", "tiny", description="Two optimizers.")
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("Two optimizers.\n\nA bench suite:")
    assert experiment.artifact_location == (store / "mlruns" / "tiny").resolve().as_uri()
    run_id = tracker.suite_run("tiny")
    tracker.log_dict(run_id, {"a": 1}, records.RESOLVED_ARTIFACT)
    assert (store / "mlruns" / "tiny" / run_id / "artifacts" / records.RESOLVED_ARTIFACT).is_file()
    assert not (elsewhere / "mlruns").exists()
    tracker.client.set_experiment_tag(tracker.experiment_id, "mlflow.note.content", "edited in the UI")
    again = Tracker(f"sqlite:///{store / 'mlflow.db'}", "tiny", description="Two optimizers.")
    assert again.client.get_experiment(again.experiment_id).tags["mlflow.note.content"] == "edited in the UI"


def test_ui_links_open_the_training_view_of_each_suite(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert ui_links(uri, "http://127.0.0.1:5000") == {}  # no store yet: nothing is created
    assert not (tmp_path / "mlflow.db").exists()
    tracker = Tracker(uri, "tiny")
    study = StudyRecord(suite="tiny", task="t", optimizer="o", study="tiny.t.o", fingerprint="f", metric="m",
                        protocol="random", search_space={}, fixed={}, trials=1, seeds=1, steps=1)  # fmt: skip
    tracker.open_study(study, "t/o")
    Tracker(uri, "not_a_suite")  # an experiment without bench runs is not listed
    links = ui_links(uri, "http://127.0.0.1:5000")
    experiment = f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}"
    assert links == {"tiny": {"runs": f"{experiment}/runs?workflowType=machine_learning"}}
    suite_run = tracker.suite_run("tiny")
    assert ui_links(uri, "http://127.0.0.1:5000")["tiny"]["leaderboard"] == (
        f"{experiment}/runs/{suite_run}/artifacts/leaderboard/tiny.html?workflowType=machine_learning"
    )
