"""service.training.heads_study on logits whose answers are known (the study reads raw heads; these arrays
stand in for them so the arithmetic is checked exactly; the shipped checkpoint's numbers are in
service/model/README.md, "Proxy 2.1.0")."""

from __future__ import annotations

import numpy as np
import pytest

from service.training.data import CRITERIA
from service.training.heads_study import DIM_OF, calibration_alternatives, logit_scale, sibling_votes


def test_sibling_votes_report_a_criterion_voting_for_the_damaged_side():
    n = CRITERIA.index("noise")
    c = np.full(10, n)
    crit = np.zeros((10, len(CRITERIA)))
    crit[:, n] = 2.0
    crit[:, CRITERIA.index("sharpness")] = -1.0  # "the noisy clip is sharper"
    votes = sibling_votes(crit, c)["noise"]
    assert set(votes) == {CRITERIA[j] for j in range(len(CRITERIA)) if DIM_OF[j] == DIM_OF[n]}
    assert votes["sharpness"] == {"mean_logit": -1.0, "agrees": 0.0}
    assert votes["noise"] == {"mean_logit": 2.0, "agrees": 1.0}


def test_calibration_alternatives_on_separable_logits():
    rng = np.random.default_rng(0)
    c = np.repeat(np.arange(len(CRITERIA)), 40)
    d = DIM_OF[c]

    def pairs(on_scale: float) -> tuple:
        dim = rng.normal(0, 0.2, (len(c), 3))  # other dimensions: small
        dim[np.arange(len(c)), d] = np.abs(rng.normal(on_scale, 0.5, len(c)))  # edited: right, |l| ~ scale
        return dim, None, c

    val, test = pairs(4.0), pairs(4.0)
    alt = calibration_alternatives(val, test, bound=8.0)
    shipped = alt["shared, off-target label 0.5 (shipped)"]
    assert shipped["accuracy"] == 1.0 and shipped["overall_accuracy"] == 1.0
    assert shipped["off_target_strong"] == 0.0
    per_dim = alt["per dimension, edited dimension only"]
    assert per_dim["ece"] <= shipped["ece"]  # the edited-only fit can only sharpen toward P = 1
    assert logit_scale(*test[::2])["VF"]["edited"] == pytest.approx(np.median(np.abs(test[0][d == 1, 1])), abs=1e-3)


def test_power_map_fits_an_exponent_that_separates_small_off_target_logits():
    """Edited logits ~3 and off-target ones ~0.6: one temperature must trade one for the other, an
    exponent > 1 shrinks the small ones relative to the large ones, so it fits better on both counts."""
    from service.training.heads_study import _power, fit_power

    rng = np.random.default_rng(1)
    on = np.abs(rng.normal(3.0, 0.5, 400))
    off = rng.normal(0, 0.6, 400)
    t, g = fit_power(on, off, bound=8.0)
    assert g > 1.2
    x = np.linspace(-5, 5, 11)
    np.testing.assert_array_equal(_power(-x, t, g), -_power(x, t, g))  # odd: antisymmetry kept
    c = np.repeat(np.arange(len(CRITERIA)), 40)
    dim = rng.normal(0, 0.6, (len(c), 3))
    dim[np.arange(len(c)), DIM_OF[c]] = np.abs(rng.normal(3.0, 0.5, len(c)))
    alt = calibration_alternatives((dim, None, c), (dim, None, c), bound=8.0, heldout=(dim, DIM_OF[c]))
    power = alt["per dimension, odd power map, off-target label 0.5"]
    assert power.pop("heldout") == power  # the same pairs given as held-out score the same
    shipped = alt["shared, off-target label 0.5 (shipped)"]
    assert min(power["powers"].values()) > 1.2
    assert power["ece"] < shipped["ece"] and power["off_target_strong"] <= shipped["off_target_strong"]
