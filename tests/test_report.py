"""Leaderboard files: written, parseable, plots non-empty, and the JSON round-trips through `bench check`."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import check, report, score
from bench.spec import LeaderboardSpec

NAN = float("nan")
PNG = b"\x89PNG\r\n\x1a\n"


def trial(task: str, optimizer: str, value: float, number: int, **kw) -> dict:
    row = {
        "task": task,
        "optimizer": optimizer,
        "trial_id": f"{task}/{optimizer}/{number}",
        "number": number,
        "kind": "tune",
        "seed": 0,
        "outcome": "completed",
        "value": value,
        "mode": "min",
        "target": 0.5,
        "metric": "val/loss",
        "lr": 1e-3,
        "steps": 100,
        "time_s": 1.0,
        "steps_to_target": NAN,
        "tokens_to_target": NAN,
        "seconds_to_target": NAN,
        "tokens_per_step": NAN,
    }
    row.update(kw)
    return row


def trials_table() -> pd.DataFrame:
    """lm (min, tokens measured): adamw with seeds, sgd that never reaches the target.
    img (max, no target): adamw and sgd with one trial each."""
    lm = {"task": "lm/tiny"}  # a name that is not a safe file name
    rows = [
        trial(
            optimizer="adamw", value=0.3, number=0, lr=1e-3, steps_to_target=60, tokens_to_target=6e3, **lm
        ),
        trial(
            optimizer="adamw", value=0.45, number=1, lr=1e-2, steps_to_target=90, tokens_to_target=9e3, **lm
        ),
        trial(optimizer="adamw", value=NAN, number=2, lr=1.0, outcome="diverged", **lm),
        trial(optimizer="adamw", value=0.8, number=3, lr=1e-5, outcome="pruned", **lm),
        trial(
            optimizer="adamw",
            value=0.31,
            number=4,
            kind="seed",
            seed=1,
            steps_to_target=70,
            tokens_to_target=7e3,
            **lm,
        ),
        trial(
            optimizer="adamw",
            value=0.33,
            number=5,
            kind="seed",
            seed=2,
            steps_to_target=80,
            tokens_to_target=8e3,
            **lm,
        ),
        trial(optimizer="sgd", value=0.7, number=0, lr=1e-2, **lm),
        trial(optimizer="sgd", value=0.6, number=1, lr=1e-1, **lm),
        trial(optimizer="sgd", value=NAN, number=2, lr=1.0, outcome="timeout", **lm),
        trial("img", "adamw", 0.9, 0, mode="max", target=NAN, metric="val/accuracy"),
        trial("img", "sgd", 0.85, 0, mode="max", target=NAN, metric="val/accuracy", lr=1e-1),
    ]
    for r in rows:
        if r["seconds_to_target"] != r["seconds_to_target"] and r["steps_to_target"] == r["steps_to_target"]:
            r["seconds_to_target"] = r["steps_to_target"] / 100
    return pd.DataFrame(rows)


CURVES = {
    "lm/tiny/adamw/0": {
        "val": [(0, 2.0), (50, 0.6), (100, 0.3)],
        "train": [(0, 2.1), (50, 0.7), (100, 0.35)],
    },
    "lm/tiny/sgd/1": [(0, 2.0), (100, 0.6)],  # a bare list: validation values only
}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[score.Leaderboard, list[Path], Path]:
    df = trials_table()
    board = score.leaderboard(df, LeaderboardSpec(ks=(1, 2, 8), reference="adamw", wall_clock=True))
    out = tmp_path_factory.mktemp("leaderboards")
    return board, report.write_leaderboard(board, df, CURVES, out, "quick"), out


def test_files_are_written_and_non_empty(written):
    _, paths, out = written
    names = {p.relative_to(out).as_posix() for p in paths}
    assert {"quick.md", "quick.html", "quick.csv", "quick.json"} <= names
    expected_plots = {
        "quick/lr_sensitivity_lm_tiny.png",
        "quick/expected_best_lm_tiny.png",
        "quick/curves_lm_tiny.png",
        "quick/lr_sensitivity_img.png",
        "quick/performance_profile_steps.png",
        "quick/performance_profile_tokens.png",
        "quick/performance_profile_seconds.png",
    }
    assert expected_plots <= names
    assert "quick/curves_img.png" not in names  # no curves given for img
    assert "quick/expected_best_img.png" not in names  # one trial each: no sample to draw k from
    for p in paths:
        assert p.exists() and p.stat().st_size > 0, p
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG


def test_markdown_states_what_is_behind_the_numbers(written):
    _, _, out = written
    md = (out / "quick.md").read_text()
    assert "# Leaderboard: quick" in md
    assert "**9 tune trials** and **2 seed reruns**" in md
    assert "## lm/tiny" in md and "## img" in md
    assert "Metric `val/loss` (lower is better), target 0.5" in md
    assert "Metric `val/accuracy` (higher is better), no target" in md
    assert "0.32 ± 0.014 (2)" in md  # seed mean ± std (n)
    assert "n/a" in md  # E[best of 8] with 3 trials
    assert "never" in md  # sgd never reaches the target
    assert "1 completed" in md and "1 pruned" in md and "1 diverged" in md and "1 timeout" in md
    assert "## Legend" in md and "E[best of k]" in md
    assert "![learning-rate sensitivity](quick/lr_sensitivity_lm_tiny.png)" in md
    assert "| =" not in md  # no ties on this table


def test_csv_round_trips(written):
    board, _, out = written
    csv = pd.read_csv(out / "quick.csv")
    assert list(csv.columns) == list(board.rows.columns)
    assert len(csv) == len(board.rows) == 4
    assert (
        csv.loc[(csv["task"] == "lm/tiny") & (csv["optimizer"] == "sgd"), "steps_to_target"].item()
        == math.inf
    )


def test_json_is_strict_and_complete(written):
    board, _, out = written

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads((out / "quick.json").read_text(), parse_constant=no_constants)
    assert data["format"] == report.JSON_FORMAT and data["suite"] == "quick"
    assert data["spec"]["ks"] == [1, 2, 8] and data["spec"]["reference"] == "adamw"
    lm = data["tasks"]["lm/tiny"]
    assert (lm["metric"], lm["mode"], lm["target"], lm["worst"]) == ("val/loss", "min", 0.5, 0.7)
    adamw = lm["optimizers"]["adamw"]
    assert adamw["best"] == 0.3 and adamw["n_trials"] == 4 and adamw["n_scored"] == 3
    assert adamw["seed_mean"] == pytest.approx(0.32) and adamw["n_seeds"] == 2
    assert adamw["outcomes"] == {
        "completed": 2,
        "pruned": 1,
        "diverged": 1,
        "oom": 0,
        "timeout": 0,
        "error": 0,
    }
    assert adamw["expected_best"]["1"] == pytest.approx((0.3 + 0.45 + 0.7) / 3)
    assert adamw["expected_best"]["8"] is None  # k > n
    assert adamw["steps_to_target"] == 75 and adamw["tokens_to_target"] == 7500 and adamw["reached_target"]
    sgd = lm["optimizers"]["sgd"]
    assert sgd["steps_to_target"] is None and sgd["reached_target"] is False
    assert data["tasks"]["img"]["optimizers"]["adamw"]["reached_target"] is None  # no target
    assert data["optimizers"]["adamw"]["profile_scores"]["steps"] == 1.0
    assert data["optimizers"]["sgd"]["profile_scores"]["steps vs adamw"] == 0.0
    assert data == report.leaderboard_dict(board, "quick")


def test_json_round_trips_through_check(written):
    _, _, out = written
    data = json.loads((out / "quick.json").read_text())
    result = check.compare(data, data)
    assert result.ok
    assert {r.status for r in result.rows} == {"ok"}
    assert len(result.rows) == 4


def test_render_markdown_without_plots():
    board = score.leaderboard(trials_table(), LeaderboardSpec(ks=(1,), reference="nobody"))
    md = report.render_markdown(board, "quick")
    assert "![" not in md
    assert "vs nobody" not in md  # the reference did not run: no reference profile


# -- build_leaderboard: the suite's trials read back from MLflow, scored, written and logged --------------
def recorded_suite(tmp_path: Path):
    """A suite-like object and an MLflow store holding two optimizers' trials (records, no training)."""
    from types import SimpleNamespace

    from bench import records
    from bench.track import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite = SimpleNamespace(
        name="quick",
        path=Path("suites/quick.yaml"),
        description="two optimizers",
        settings=SimpleNamespace(tracking_uri=uri, leaderboard_dir=str(tmp_path / "boards")),
        leaderboard=LeaderboardSpec(ks=(1, 2)),
        resolved={"name": "quick", "tasks": ["digits_cnn"]},
    )
    tracker = Tracker(uri, "quick")
    meta = records.Provenance(git_commit="abc", versions={}, hardware="cpu")
    for optimizer, values in (("adamw", (0.1, 0.2)), ("sgd", (0.3, 0.4))):
        study = f"quick.digits_cnn.{optimizer}"
        for number, value in enumerate(values):
            record = records.TrialRecord(
                suite="quick", task="digits_cnn", optimizer=optimizer, study=study,
                trial_id=f"{study}.trial-{number}", number=number, optuna_trial=number, kind=records.TUNE,
                seed=0, metric="val/error", mode="min", target=0.05, lr=10.0 ** -(number + 2),
                hparams={"lr": 10.0 ** -(number + 2)}, kwargs={}, steps=20, batch_size=64, schedule="cosine",
                world_size=1, batch_size_per_device=64, global_batch_size=64, tokens_per_step=None,
                task_version=1, optimizer_source="torch", fingerprint="f", provenance=meta,
            )  # fmt: skip
            run_id = tracker.open_trial(record, f"digits_cnn/{optimizer}#{number}", None)
            with tracker.metrics_writer(run_id) as log_metrics:
                for step in (9, 19):
                    log_metrics(
                        {"val/error": value + (19 - step) / 100, "train/loss": 1.0 - step / 100}, step
                    )
            summary = records.Summary(outcome="completed", value=value, steps=20, time_s=1.0)
            tracker.close_trial(run_id, dataclasses.replace(record, summary=summary))
    return suite, tracker


def test_build_leaderboard_with_nothing_recorded_writes_nothing(tmp_path: Path) -> None:
    from types import SimpleNamespace

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite = SimpleNamespace(
        name="none",
        path=Path("none.yaml"),
        description="",
        settings=SimpleNamespace(tracking_uri=uri, leaderboard_dir=str(tmp_path)),
    )
    said: list[str] = []
    assert report.build_leaderboard(suite, out=said.append) == []
    assert said == ["bench: no finished trials recorded yet; no leaderboard written"]


def test_build_leaderboard_reads_scores_writes_and_logs_on_the_suite_run(tmp_path: Path) -> None:
    from bench import records

    suite, tracker = recorded_suite(tmp_path)
    said: list[str] = []
    paths = report.build_leaderboard(suite, out=said.append)
    md = tmp_path / "boards" / "quick.md"
    assert paths[:4] == [md, md.with_suffix(".html"), md.with_suffix(".csv"), md.with_suffix(".json")]
    run_id = tracker.find_run(records.suite_key("quick"))
    experiment = f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}"
    ui = f"bench ui --tracking-uri '{suite.settings.tracking_uri}'"
    assert said == [
        "bench: leaderboard written from 4 trial runs",
        f"bench: leaderboard {md} (tables and plots in one page: {md.with_suffix('.html')})",
        f"bench: MLflow UI (start it with `{ui}`): the leaderboard at",
        f"    {experiment}/runs/{run_id}/artifacts/leaderboard/quick.html?workflowType=machine_learning",
        "  studies and trials, with their curves, at",
        f"    {experiment}/runs?workflowType=machine_learning",
    ]
    board = json.loads(md.with_suffix(".json").read_text())["tasks"]["digits_cnn"]["optimizers"]
    assert {k: (v["rank"], v["best"], v["n_trials"]) for k, v in board.items()} == {
        "adamw": (1, 0.1, 2), "sgd": (2, 0.3, 2)}  # fmt: skip
    assert (tmp_path / "boards" / "quick" / "curves_digits_cnn.png").read_bytes().startswith(PNG)

    # on the suite run as on disk: the Markdown's image links resolve inside the artifact tree
    artifacts = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert artifacts == {"leaderboard", "suite.resolved.json"}
    logged = {a.path for a in tracker.client.list_artifacts(run_id, "leaderboard")}
    files = {f"leaderboard/quick{ext}" for ext in (".md", ".html", ".csv", ".json")}
    assert logged == files | {"leaderboard/quick"}
    plots = {a.path for a in tracker.client.list_artifacts(run_id, "leaderboard/quick")}
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md.read_text())
    assert links and {f"leaderboard/{link}" for link in links} <= plots
    run = tracker.client.get_run(run_id)
    assert run.data.metrics["trials"] == 4 and run.info.status == "FINISHED"
    assert "leaderboard/quick.html" in run.data.tags["mlflow.note.content"]

    said.clear()
    again = report.build_leaderboard(suite, tracker=tracker, out=said.append, rebuild=False)  # a rerun
    assert again == paths[:4] and said[0].startswith("bench: leaderboard up to date (no new trials)")
    report.build_leaderboard(suite, tracker=tracker, out=said.append)  # rebuilt: the same suite run
    assert [r.info.run_id for r in tracker.runs(f"tags.`{records.KIND}` = 'suite'")] == [run_id]
    md.unlink()
    said.clear()
    report.build_leaderboard(suite, tracker=tracker, out=said.append, rebuild=False)  # a file is missing
    assert said[0] == "bench: leaderboard written from 4 trial runs" and md.is_file()


def test_the_html_page_holds_the_tables_and_its_plots(written):
    _, _, out = written
    page = (out / "quick.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page and "<h2>lm/tiny</h2>" in page
    assert page.count('src="data:image/png;base64,') == (out / "quick.md").read_text().count("![")
    assert 'src="quick/' not in page  # every plot embedded: the page is one self-contained file


def test_wall_clock_columns_are_left_out_and_said_so_unless_the_suite_declares_a_dedicated_machine():
    shared = score.leaderboard(trials_table(), LeaderboardSpec(ks=(1,), reference="adamw"))
    md = report.render_markdown(shared, "quick")
    assert " seconds to target |" not in md and report.WALL_CLOCK_NOTE in md
    assert report.leaderboard_dict(shared, "quick")["spec"]["wall_clock"] is False
    dedicated = score.leaderboard(
        trials_table(), LeaderboardSpec(ks=(1,), reference="adamw", wall_clock=True)
    )
    assert " seconds to target |" in report.render_markdown(dedicated, "quick")


def test_expected_best_axis_labels_every_k_when_few_and_decades_when_many():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    report._k_axis(ax, 4)
    assert [t for t in ax.get_xticks() if 0.8 <= t <= 4.2] == [1, 2, 3, 4]
    ax = Figure().add_subplot()
    report._k_axis(ax, 100)
    assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [1, 2, 5, 10, 20, 50, 100]


def test_lr_sensitivity_range_holds_every_completed_trial_and_the_target():
    lo, hi, log = report._y_range(np.array([0.31, 0.35, 2.4, 0.25]))  # a bad trial and the target
    assert lo < 0.25 and hi > 2.4 and log is False
    lo, hi, log = report._y_range(np.array([0.02, 0.03, 5.5]))  # 275x: a log axis keeps the good end readable
    assert lo < 0.02 and hi > 5.5 and log is True


def test_identical_performance_profiles_are_drawn_apart():
    lines = report._shifted([np.array([0.0, 0.5, 1.0])] * 3)
    assert len({tuple(line) for line in lines}) == 3
    assert max(abs(a - b).max() for a in lines for b in lines) <= 0.03


# -- the robustness section ---------------------------------------------------------------------------


def sweep_table() -> pd.DataFrame:
    """A sweep of two optimizers on a loss (failures cost 1.0): a's lr curve has its optimum inside and a
    1-D weight-decay sweep; b's optimum sits at the high edge."""
    rows = []
    common = {"task": "t", "metric": "val/loss", "target": NAN, "protocol": "sweep", "failure_value": 1.0}
    for optimizer, curve in (("a", {1e-4: 0.9, 10**-3.5: 0.5, 1e-3: 0.3, 10**-2.5: 0.4, 1e-2: NAN}),
                             ("b", {1e-4: 0.8, 10**-3.5: 0.6, 1e-3: 0.5}),):  # fmt: skip
        for i, (lr, v) in enumerate(curve.items()):
            rows.append(trial(optimizer=optimizer, value=v, number=i, lr=lr, axis="lr", axis_value=lr,
                              axis_scale="log", params={"lr": lr, "wd": 0.1}, warmup=0.05,
                              outcome="diverged" if math.isnan(v) else "completed", **common))  # fmt: skip
    for i, (wd, v) in enumerate(((0.01, 0.35), (1.0, 0.6)), start=5):
        rows.append(trial(optimizer="a", value=v, number=i, lr=1e-3, axis="wd", axis_value=wd, axis_scale="log",
                          params={"lr": 1e-3, "wd": wd}, warmup=0.05, **common))  # fmt: skip
    return pd.DataFrame(rows)


def test_a_sweep_gets_a_robustness_section_its_figure_and_reasons(tmp_path: Path) -> None:
    df = sweep_table()
    board = score.leaderboard(df, LeaderboardSpec(ks=(1,)), failure_why={"t": "initialization: ln V"})
    paths = report.write_leaderboard(board, df, {}, tmp_path, "sw")
    md = (tmp_path / "sw.md").read_text()
    assert "a failed trial costs 1 (initialization: ln V)" in md
    assert "### Robustness: t" in md and "| optimizer | best lr | lr basin (decades) | lr sensitivity |" in md
    assert "0.001 (high edge)" in md and ">=" in md  # b: the optimum at the edge, its basin open there
    assert "- lr sensitivity `n/a` for b: the optimum is within 0.5 of an end of the sweep" in md
    assert "- wd sensitivity `n/a` for b: 'wd' was not swept for it" in md
    # the main table leaves out what a sweep cannot support, and says why
    assert "| E[best of 1] |" not in md and "Not shown (median and E[best of k]): protocol sweep" in md
    assert "Not shown: CPE and alpha-tunability (protocol sweep" in md and "0 (1)" not in md
    assert (tmp_path / "sw" / "sensitivity_t.png").read_bytes()[:8] == PNG
    assert not (tmp_path / "sw" / "lr_sensitivity_t.png").exists()  # the panels show the lr curve
    assert "![sensitivity to each hyperparameter](sw/sensitivity_t.png)" in md
    data = json.loads((tmp_path / "sw.json").read_text())
    a = data["tasks"]["t"]["optimizers"]["a"]["robustness"]
    assert a["basin_decades"] == pytest.approx(0.0225) and a["lr_sensitivity"] == pytest.approx(0.1)
    assert set(a["axes"]) == {"lr", "wd"} and a["why"]["random"].startswith("protocol sweep")
    assert data["tasks"]["t"]["failure"] == {"value": 1.0, "declared": True, "why": "initialization: ln V"}
    assert check.compare(data, data).ok and {p.suffix for p in paths} == {
        ".md",
        ".html",
        ".csv",
        ".json",
        ".png",
    }


def test_random_search_shows_tunability_and_says_why_it_has_no_lr_curve(tmp_path: Path) -> None:
    rows = [
        trial("t", o, v, i, lr=lr, params={"lr": lr, "wd": wd}, protocol="random", target=0.1)
        for o, shift in (("a", 0.0), ("b", 0.05))
        for i, (lr, wd, v) in enumerate(
            [(1e-3, 0.1, 0.3), (1e-2, 0.01, 0.5), (1e-4, 1.0, 0.7), (3e-3, 0.3, 0.4)]
        )
        for v in [v + shift]
    ]
    df = pd.DataFrame(rows)
    board = score.leaderboard(df, LeaderboardSpec(ks=(1, 2)))
    report.write_leaderboard(board, df, {}, tmp_path, "rs")
    md = (tmp_path / "rs.md").read_text()
    assert "| optimizer | robust rank | CPE | alpha-tunability (alpha 0.95) |" in md
    assert "Not shown: lr basin, sensitivity and headroom (protocol random varies every hyperparameter" in md
    assert "importance (not computed" in md  # no evaluator given to this leaderboard
    assert "mean rank (robust)" in md and "ranks by CPE" in md
    assert (tmp_path / "rs" / "expected_best_t.png").exists()  # with its bootstrap bands
    # a target nobody reached: a sentence, not columns of `never`
    assert "No optimizer reached the target 0.1" in md and "steps to target" not in md
