"""Scan points: the product of a task's axes, their labels, tokens as steps, and the lr transfer factor."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.loader import load_suite
from bench.scans import axis_label, points, tokens_per_step, transfer_factor


def task_of(tmp_path: Path, task: str, optimizers: str = "[adamw]"):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ntasks:\n  - {task}\noptimizers: {optimizers}\n")
    return load_suite(path).tasks[0]


def test_points_are_the_product_of_the_axes_in_order(tmp_path: Path) -> None:
    task = task_of(
        tmp_path,
        "{name: digits_cnn, steps: 50, scan: {batch_size: [32, 128], options: {width: [8, 16]}, steps: [10, 20]}}",
    )
    pts = points(task)
    assert [p.point for p in pts] == [
        "bs32-width8-s10", "bs32-width8-s20", "bs32-width16-s10", "bs32-width16-s20",
        "bs128-width8-s10", "bs128-width8-s20", "bs128-width16-s10", "bs128-width16-s20",
    ]  # fmt: skip
    p = pts[5]
    assert (p.batch_size, p.options["width"], p.steps) == (128, 8, 20)
    assert p.label == "digits_cnn@bs128-width8-s20" and p.scan is None
    assert dict(p.axes) == {"batch_size": 128, "options.width": 8, "steps": 20}
    assert points(task_of(tmp_path, "digits_cnn")) == (task_of(tmp_path, "digits_cnn"),)


def test_a_tokens_axis_becomes_steps_at_each_points_batch(tmp_path: Path) -> None:
    task = task_of(tmp_path, "{name: pydocs_gpt_tiny, scan: {batch_size: [16, 32], tokens: [1.0e6]}}")
    small, large = points(task)
    assert small.point == "bs16-t1M" and large.point == "bs32-t1M"
    assert small.steps == round(1e6 / tokens_per_step(small)) and large.steps == round(
        1e6 / tokens_per_step(large)
    )
    assert small.steps == pytest.approx(2 * large.steps, abs=1)


def test_labels_stay_one_word() -> None:
    assert axis_label("batch_size", 256) == "bs256"
    assert axis_label("tokens", 2.5e9) == "t2500M"
    assert axis_label("options.dropout", 0.1) == "dropout0p1"
    assert axis_label("options.arch", "resnet/18") == "archresnet_18"


def test_transfer_follows_the_declared_rule_on_global_batches(tmp_path: Path) -> None:
    task = task_of(tmp_path, "{name: digits_cnn, scan: {batch_size: [32, 128]}}")
    source, point = points(task)
    assert transfer_factor("linear", source, point) == pytest.approx(4.0)
    assert transfer_factor("sqrt", source, point) == pytest.approx(2.0)
    assert transfer_factor("none", source, point) == 1.0
    assert transfer_factor("sqrt", source, point, accumulate_grad_batches=4) == pytest.approx(2.0)


@pytest.mark.slow
def test_a_transferred_point_runs_the_tuned_points_best_with_the_lr_scaled(tmp_path: Path) -> None:
    import json

    from helpers import trial_runs, write_suite

    from bench.cli import main

    suite = write_suite(
        tmp_path,
        name="tr",
        tasks=[
            {
                "name": "digits_cnn",
                "steps": 20,
                "eval_every": 10,
                "scan": {"batch_size": [32, 128], "lr": "transfer"},
            }
        ],
        optimizers=["adamw"],
        tuning={"protocol": "random", "trials": 3, "seeds": 2},
    )
    assert main(["run", str(suite), "--no-leaderboard"]) == 0
    runs = trial_runs(tmp_path)
    source = [r for r in runs if r["bench.task"] == "digits_cnn@bs32"]
    point = [r for r in runs if r["bench.task"] == "digits_cnn@bs128"]
    assert len(source) == 4 and len(point) == 2  # 3 tuned + 1 seed rerun; 1 transferred + 1 seed rerun
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    tuned = [r for r in source if r["bench.kind"] == "tune"]
    best = min(tuned, key=lambda r: client.get_run(r["run_id"]).data.metrics["value"])
    for r in point:
        assert float(r["bench.lr"]) == pytest.approx(float(best["bench.lr"]) * 2.0)  # adamw: sqrt(128/32)
        scan = json.loads(r["bench.scan"])
        assert (
            scan["axes"] == {"batch_size": 128}
            and scan["lr"]["tuned"] is False
            and scan["lr"]["rule"] == "sqrt"
        )
        assert (
            json.loads(r["bench.params"])["weight_decay"] == json.loads(best["bench.params"])["weight_decay"]
        )


def test_a_transferred_lr_is_refused_under_the_sweep_protocol(tmp_path: Path) -> None:
    from bench.spec import SpecError

    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ntasks:\n  - digits_mlp\n  - {name: digits_cnn, steps: 40, scan: {batch_size: [32, 128], "
        "lr: transfer}}\noptimizers: [adamw]\ntuning: {protocol: sweep}\n"
    )
    with pytest.raises(SpecError) as e:
        load_suite(path)
    assert "tasks[1].scan.lr" in str(e.value) and "lr: retune" in str(e.value)
    path.write_text(path.read_text().replace("lr: transfer", "lr: retune"))
    assert load_suite(path).tuning.protocol == "sweep"  # every point swept: accepted
