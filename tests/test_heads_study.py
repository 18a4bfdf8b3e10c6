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
