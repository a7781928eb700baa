from __future__ import annotations

import pytest

from bench.optimizers.scaling import scale_lr


def test_rules():
    assert scale_lr(0.1, "linear", 128, 512) == pytest.approx(0.4)
    assert scale_lr(3e-4, "sqrt", 64, 256) == pytest.approx(6e-4)
    assert scale_lr(1.0, "none", 64, 256) == 1.0
    assert scale_lr(0.4, "linear", 512, 128) == pytest.approx(0.1)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown lr scaling rule 'cubic'"):
        scale_lr(0.1, "cubic", 1, 2)
    with pytest.raises(ValueError, match="positive"):
        scale_lr(0.1, "sqrt", 0, 2)
