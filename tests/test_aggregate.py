"""Aggregation maths against hand-computed cases."""

import math

import numpy as np
import pytest

from service.engine import aggregate


def test_bradley_terry_two_items_is_half_the_logit():
    # Two items, P(0 > 1) = 0.8: the unregularised MLE has s0 - s1 = logit(0.8) = ln 4, centred.
    prob = np.array([[0.5, 0.8], [0.2, 0.5]])
    s = aggregate.bradley_terry(prob, ~np.eye(2, dtype=bool), l2=0.0)
    assert s == pytest.approx([math.log(4) / 2, -math.log(4) / 2], abs=1e-9)


def test_bradley_terry_recovers_consistent_strengths_and_skips_missing_items():
    s_true = np.array([1.0, 0.0, -1.0])
    prob = aggregate.sigmoid(s_true[:, None] - s_true[None, :])
    valid = ~np.eye(3, dtype=bool)
    assert aggregate.bradley_terry(prob, valid, l2=0.0) == pytest.approx(s_true, abs=1e-8)
    valid[2, :] = valid[:, 2] = False  # item 2 failed to decode
    s = aggregate.bradley_terry(prob, valid, l2=0.0)
    assert s[:2] == pytest.approx([0.5, -0.5], abs=1e-8) and math.isnan(s[2])


def test_bradley_terry_stays_finite_when_one_item_wins_everything():
    prob = np.array([[0.5, 1.0, 1.0], [0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    s = aggregate.bradley_terry(prob, ~np.eye(3, dtype=bool))
    assert np.all(np.isfinite(s)) and s[0] > s[1] == pytest.approx(s[2])


def test_win_rate_is_mean_soft_win():
    s_true = np.array([1.0, 0.0, -1.0])
    prob = aggregate.sigmoid(s_true[:, None] - s_true[None, :])
    wr = aggregate.win_rate(prob, ~np.eye(3, dtype=bool))
    expected0 = (1 / (1 + math.exp(-1)) + 1 / (1 + math.exp(-2))) / 2
    assert wr[0] == pytest.approx(expected0) and wr[1] == pytest.approx(0.5)


def test_debias_cancels_a_constant_position_bias():
    true = np.array([1.0, -0.4, 0.0])
    bias = 0.7  # the model likes whichever video comes first
    l_ab, l_ba = true + bias, -true + bias
    logits, disagreement = aggregate.debias(l_ab, l_ba)
    assert logits == pytest.approx(true)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert disagreement == pytest.approx(np.abs(sig(l_ab) - (1 - sig(l_ba))))
    assert np.all(disagreement > 0.1)


def test_an_exactly_antisymmetric_pair_disagrees_by_exactly_zero():
    """1 - sigmoid(l) leaves up to 1e-16 where sigmoid(-l) is exact: a response of the antisymmetric embedded
    model says 0.0, as the README claims, not 1.1e-16."""
    l_ab = np.array([0.5559559464454651, 5.258059978485107, -0.05762699246406555, 1.9187963108221688, 40.0, -37.5])
    assert np.any(np.abs(aggregate.sigmoid(l_ab) - (1.0 - aggregate.sigmoid(-l_ab))) > 0)  # the old formula's residue
    logits, disagreement = aggregate.debias(l_ab, -l_ab)
    assert np.array_equal(logits, l_ab) and np.all(disagreement == 0.0)


def test_single_order_has_no_disagreement_and_overall_is_weighted_mean():
    logits, disagreement = aggregate.debias(np.array([1.0, 2.0, 3.0]), None)
    assert disagreement is None
    assert aggregate.overall(logits, (1, 1, 2)) == pytest.approx((1 + 2 + 6) / 4)
