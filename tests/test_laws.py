"""The scaling analyses recover known answers on synthetic data: a critical batch size, an lr exponent
(with an interval that covers it as often as it says), a power law, and a compute-equivalent speedup."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.laws import (
    PowerLaw,
    best_lr,
    critical_batch_size,
    lr_exponent,
    noise_scale,
    power_law,
    scaling,
    speedup,
)


def test_critical_batch_is_where_steps_exceed_linear_scaling_by_20_percent() -> None:
    # r = S(B) B / (S(B0) B0) = 1, 1.1, 1.3: crosses 1.2 half-way (in log B) between 64 and 128
    cb = critical_batch_size([32, 64, 128], [1000, 1000 * 1.1 / 2, 1000 * 1.3 / 4])
    assert cb.value == pytest.approx(64 * math.sqrt(2)) and not cb.beyond and cb.n == 3
    assert cb.ratios == pytest.approx((1.0, 1.1, 1.3))


def test_critical_batch_of_the_mccandlish_model() -> None:
    """S(B) = S_min (1 + B_noise / B): r(B) = (B + B_noise) / (B0 + B_noise) = 1.2 at
    B* = 1.2 B0 + 0.2 B_noise (= 121.6 for B0 = 16, B_noise = 512)."""
    batches = 16 * 2 ** (np.arange(0, 57) / 8)  # 16 .. 2048, 8 per octave
    steps = 5000 * (1 + 512 / batches)
    cb = critical_batch_size(batches, steps)
    assert cb.value == pytest.approx(1.2 * 16 + 0.2 * 512, rel=2e-3)
    ns = noise_scale(batches, steps)
    assert ns.s_min == pytest.approx(5000) and ns.b_noise == pytest.approx(512)
    coarse = critical_batch_size(
        [16, 32, 64, 128, 256, 512], 5000 * (1 + 512 / np.array([16, 32, 64, 128, 256, 512]))
    )
    assert coarse.value == pytest.approx(121.6, rel=0.05)  # interpolation between octaves: a few %


def test_critical_batch_beyond_the_scan_and_too_few_points() -> None:
    cb = critical_batch_size([8, 16, 32], [400, 200, 100])  # perfect linear scaling throughout
    assert cb.beyond and cb.value == 32
    assert math.isnan(critical_batch_size([8, 16], [400, math.inf]).value)  # 16 never reached the target
    order = critical_batch_size([64, 32, 128], [1000 * 1.1 / 2, 1000, 1000 * 1.3 / 4])  # any order
    assert order.value == pytest.approx(64 * math.sqrt(2))


def test_best_lr_is_the_vertex_of_the_parabola_through_the_best_trials() -> None:
    lrs = np.logspace(-4, -1, 7)
    values = (np.log(lrs) - math.log(3e-3)) ** 2 + 0.1
    assert best_lr(lrs, values) == pytest.approx(3e-3)
    assert best_lr(lrs, -values, mode="max") == pytest.approx(3e-3)
    assert best_lr(lrs, np.log(lrs)) == pytest.approx(1e-4)  # at an edge: the edge
    assert best_lr([1e-3, 1e-3, 1e-2], [0.5, 0.4, 0.9]) == pytest.approx(1e-3)  # duplicates: their best
    assert math.isnan(best_lr([1e-3], [math.nan]))


def test_lr_exponent_recovers_the_slope_and_its_interval_covers_it() -> None:
    batches = np.array([16, 32, 64, 128, 256])
    exact = lr_exponent(batches, 1e-3 * (batches / 16) ** 0.5)
    assert exact.slope == pytest.approx(0.5) and exact.contains(0.5) and exact.n == 5
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        lr = 1e-3 * (batches / 16) ** 0.7 * np.exp(rng.normal(0, 0.3, batches.size))
        covered += bool(lr_exponent(batches, lr).contains(0.7))
    assert 0.92 <= covered / 400 <= 0.98  # a 95% interval
    two = lr_exponent([16, 64], [1e-3, 4e-3])
    assert two.slope == pytest.approx(1.0) and two.contains(1.0) is None  # no interval from 2 points


def test_power_law_recovers_a_known_law() -> None:
    d = np.logspace(3, 6, 6)
    law = power_law(d, 50 * d**-0.4 + 1.5)
    assert (law.a, law.b, law.c) == pytest.approx((50, 0.4, 1.5), rel=1e-4)
    assert law.n == 6 and not law.exact and law.data_for(law(1e4)) == pytest.approx(1e4)
    assert power_law([1e3, 1e4], [3.0, 2.0]).why == "2 lengths, needs 3"  # 3 parameters, 2 points
    rising = power_law([1e3, 1e4, 1e5, 1e6], [1.0, 1.1, 1.2, 1.3])
    assert not rising.ok and "no falling power law fits" in rising.why
    assert law.data_for(1.4) == math.inf  # below the asymptote: never


def test_speedup_is_the_data_the_reference_needs_for_the_same_loss() -> None:
    ref = PowerLaw(50.0, 0.4, 1.5, 6)
    for d in (1e3, 1e4, 1e5):  # an optimizer that needs half the reference's data everywhere
        assert speedup(ref, d, float(ref(2 * d))) == pytest.approx(2.0)
    assert speedup(ref, 1e4, 1.0) == math.inf
    assert math.isnan(speedup(PowerLaw(math.nan, math.nan, math.nan, 2), 1e4, 2.0))


# --------------------------------------------------------------------------------------------------
# The results table -> the scaling section


def row(task: str, opt: str, batch: int, lr: float, value: float, stt: float, **kw) -> dict:
    axes = kw.pop("axes", {"batch_size": batch})
    tuned = kw.pop("tuned", True)
    base = {
        "suite": "s", "task": f"{task}@bs{batch}", "optimizer": opt, "study": f"s.{task}@bs{batch}.{opt}",
        "trial_id": "", "run_id": "", "number": 0, "kind": "tune", "seed": 0, "outcome": "completed",
        "metric": "val/loss", "value": value, "mode": "min", "target": 0.5, "lr": lr, "params": {},
        "steps": 100, "time_s": 1.0, "steps_to_target": stt, "seconds_to_target": math.nan,
        "tokens_to_target": math.nan, "tokens_per_step": math.nan, "global_batch_size": batch,
        "scan": {"task": task, "point": f"bs{batch}", "axes": axes, "lr": {"tuned": tuned}},
        "horizon": 100, "final": {},
    }  # fmt: skip
    return {**base, **kw}


def test_scaling_tables_from_a_batch_scan() -> None:
    rows = []
    for batch in (16, 32, 64, 128):
        s_min, b_noise = 1000, 256  # steps to target: McCandlish with B* = 1.2*16 + 0.2*256 = 70.4 (coarse)
        for lr_mult in (0.25, 0.5, 1, 2, 4):
            lr = 1e-3 * (batch / 16) ** 0.5 * lr_mult
            value = 0.3 + (math.log(lr_mult)) ** 2
            stt = s_min * (1 + b_noise / batch) * (1 + abs(math.log(lr_mult)))
            rows.append(row("t", "adamw", batch, lr, value, stt))
    rows.append(row("t", "adamw", 16, 1e-3, math.nan, math.nan, outcome="diverged"))
    sc = scaling(pd.DataFrame(rows), {"adamw": "sqrt"}, "adamw")
    assert len(sc.batch) == 4 and list(sc.batch["n_trials"]) == [6, 5, 5, 5]
    assert sc.batch["lr_star"].to_numpy() == pytest.approx(1e-3 * (np.array([16, 32, 64, 128]) / 16) ** 0.5)
    (fit,) = sc.lr_fit.to_dict("records")
    assert fit["slope"] == pytest.approx(0.5) and fit["declared_slope"] == 0.5 and fit["agrees"]
    (crit,) = sc.critical.to_dict("records")
    exact = critical_batch_size([16, 32, 64, 128], 1000 * (1 + 256 / np.array([16, 32, 64, 128])))
    assert crit["critical_batch"] == pytest.approx(exact.value) and crit["b_noise"] == pytest.approx(256)
    assert sc.loss.empty


def test_scaling_tables_from_horizons_give_laws_and_speedups() -> None:
    ref = PowerLaw(20.0, 0.5, 0.2, 0)
    rows = []
    for opt, factor in (("adamw", 1.0), ("muon", 1.5)):  # muon needs 1/1.5 of adamw's data
        for h in (100, 200, 400, 800):
            for lr, extra in ((1e-3, 0.0), (3e-3, 0.05)):  # the better lr is picked per horizon
                d = h * 64
                rows.append(row("t", opt, 64, lr, float(ref(d * factor)) + extra, math.nan, kind="horizon",
                                horizon=h, study=f"s.t.{opt}", axes={}, final={"val_ema/loss": 0.1}))  # fmt: skip
    sc = scaling(pd.DataFrame(rows), {}, "adamw")
    assert sorted(sc.loss["steps"].unique()) == [100, 200, 400, 800] and set(sc.loss["unit"]) == {"examples"}
    assert (sc.loss["n_trials"] == 2).all() and (sc.loss["ema"] == 0.1).all()
    law = sc.fits[("t", "", "adamw")]
    assert (law.a, law.b, law.c) == pytest.approx((20.0, 0.5, 0.2), rel=1e-3)
    assert sc.speedups["speedup"].to_numpy() == pytest.approx(1.5, rel=1e-3)
    assert set(sc.speedups["optimizer"]) == {"muon"}
