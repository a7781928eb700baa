"""The leaderboard's scaling section: its tables, plots and JSON from a hand-made results table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from test_laws import row
from test_report import PNG, trials_table

from bench import laws, report, score
from bench.laws import PowerLaw
from bench.spec import LeaderboardSpec


def results() -> pd.DataFrame:
    """A batch scan (sgd and adamw, 4 batches, 5 lrs each) and horizons (3 lengths, 2 optimizers)."""
    rows = []
    for opt, rule_exp in (("sgd", 1.0), ("adamw", 0.5)):
        for batch in (16, 32, 64, 128):
            for mult in (0.25, 0.5, 1, 2, 4):
                lr = 1e-3 * (batch / 16) ** rule_exp * mult
                stt = 1000 * (1 + 128 / batch) * (1 + abs(math.log(mult)))
                rows.append(row("mlp", opt, batch, lr, 0.3 + math.log(mult) ** 2, stt))
    law = PowerLaw(20.0, 0.5, 0.2, 0)
    for opt, factor in (("adamw", 1.0), ("sgd", 0.5)):
        for h in (100, 200, 400, 800):
            rows.append(row("cnn", opt, 64, 1e-3, float(law(64 * h * factor)), math.nan, kind="horizon",
                            horizon=h, study=f"s.cnn.{opt}", axes={"options.width": 8}, final={"val_ema/loss": 0.25}))  # fmt: skip
    return pd.DataFrame(rows)


def test_the_scaling_section_shows_critical_batch_exponents_laws_and_speedups(tmp_path: Path) -> None:
    sc = laws.scaling(results(), {"sgd": "linear", "adamw": "sqrt"}, "adamw")
    table = trials_table()
    board = score.leaderboard(table, LeaderboardSpec(ks=(1, 2), reference="adamw"))
    paths = report.write_leaderboard(board, table, {}, tmp_path, "suite", sc)
    md = (tmp_path / "suite.md").read_text()
    assert "## Scaling" in md and "### mlp: batch size" in md and "### cnn (width=8): loss against data" in md
    assert "| sgd | " in md and "linear (1) | yes |" in md and "sqrt (0.5) | yes |" in md
    assert "0.50x" in md  # sgd needs twice adamw's data: half the speed
    assert "(EMA 0.25)" in md and "Zhang et al. 2024" in md
    assert "| batch | sgd steps to target | adamw steps to target | sgd lr* | adamw lr* |" in md
    assert "| 16 | 9000 | 9000 | 0.001 | 0.001 |" in md  # one row per batch, optimizers in suite order
    names = {p.name for p in paths}
    assert {"steps_vs_batch_mlp.png", "lr_vs_batch_mlp.png", "loss_vs_data_cnn_width8.png"} <= names
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes().startswith(PNG)
    data = json.loads((tmp_path / "suite.json").read_text())
    crit = {r["optimizer"]: r for r in data["scaling"]["critical_batch"]}
    assert crit["sgd"]["critical_batch"] > 16 and data["scaling"]["reference"] == "adamw"
    slopes = {r["optimizer"]: r["slope"] for r in data["scaling"]["lr_exponent"]}
    assert abs(slopes["sgd"] - 1.0) < 1e-9 and abs(slopes["adamw"] - 0.5) < 1e-9
    metrics = report.scaling_metrics(sc)
    assert metrics["scaling/mlp/sgd/lr_exponent"] == slopes["sgd"]
    assert "scaling/mlp/adamw/critical_batch" in metrics


def test_the_batch_table_says_never_where_no_lr_reached_the_target() -> None:
    table = results()
    never = (table["optimizer"] == "sgd") & (table["global_batch_size"] == 128)
    table.loc[never, "steps_to_target"] = math.nan
    md = report.render_scaling(laws.scaling(table, {"sgd": "linear", "adamw": "sqrt"}, "adamw"), {})
    assert "| 128 | never | 2000 |" in md


def test_no_scaling_section_without_scans() -> None:
    table = trials_table().assign(
        scan=[{}] * len(trials_table()), global_batch_size=64, horizon=100, final=[{}] * len(trials_table())
    )
    assert laws.scaling(table, {}, "adamw").empty
