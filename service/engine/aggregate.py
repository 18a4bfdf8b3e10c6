"""Turn pairwise logits into answers: order debiasing, overall value, win-rate and Bradley-Terry rewards.

Both-order debiasing: with l_ab the logit for "A first" and l_ba for "B first", the position-free logit is
(l_ab - l_ba) / 2 and the disagreement |sigmoid(l_ab) - (1 - sigmoid(l_ba))| shows how much position bias
the model had on this pair (0 for an antisymmetric model).
"""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """1 / (1 + e^-x) without overflow for extreme logits (hostile inputs can produce them)."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def debias(l_ab: np.ndarray, l_ba: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Position-free logits and per-element order disagreement (None in single-order mode)."""
    if l_ba is None:
        return np.asarray(l_ab, dtype=np.float64), None
    l_ab, l_ba = np.asarray(l_ab, dtype=np.float64), np.asarray(l_ba, dtype=np.float64)
    return (l_ab - l_ba) / 2.0, np.abs(sigmoid(l_ab) - (1.0 - sigmoid(l_ba)))


def overall(dim_logits: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    """Overall logit: the weighted mean of dimension logits (last axis)."""
    w = np.asarray(weights, dtype=np.float64)
    return np.asarray(dim_logits, dtype=np.float64) @ (w / w.sum())


def win_rate(prob: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Soft win-rate: mean over valid opponents j of P(i beats j). prob[i, j] = P(i > j)."""
    counts = valid.sum(axis=1)
    wins = np.where(valid, prob, 0.0).sum(axis=1)
    return np.divide(wins, counts, out=np.full(len(prob), np.nan), where=counts > 0)


def bradley_terry(prob: np.ndarray, valid: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Bradley-Terry strengths s (zero mean over valid items) maximising
    sum_{i<j valid} P_ij log sigmoid(s_i - s_j) + (1 - P_ij) log sigmoid(s_j - s_i) - l2/2 |s|^2
    by Newton's method (the objective is concave). Soft outcomes P_ij come straight from the model, so no
    information is lost by thresholding. The small ridge keeps s finite when one item wins every pair.
    """
    n = len(prob)
    s = np.zeros(n)
    mask = valid & ~np.eye(n, dtype=bool)
    active = mask.any(axis=1)
    if active.sum() < 2:
        return np.where(active, 0.0, np.nan)
    p = np.where(mask, prob, 0.0)
    for _ in range(iters):
        q = sigmoid(s[:, None] - s[None, :])
        grad = np.where(mask, p - q, 0.0).sum(axis=1) - l2 * s
        w = np.where(mask, q * (1.0 - q), 0.0)
        hess = w - np.diag(w.sum(axis=1) + l2)
        idx = np.flatnonzero(active)
        step = np.linalg.solve(hess[np.ix_(idx, idx)] - 1e-12 * np.eye(len(idx)), grad[idx])
        s[idx] -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    s[active] -= s[active].mean()
    return np.where(active, s, np.nan)


def pair_matrix(n: int, rows: list[tuple[int, int]], logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, n] probability matrix (P[i,j] = P(i > j), antisymmetric in logit) and its validity mask from
    debiased logits for unordered pairs (i, j)."""
    prob = np.full((n, n), 0.5)
    valid = np.zeros((n, n), dtype=bool)
    for (i, j), logit in zip(rows, logits):
        prob[i, j], prob[j, i] = sigmoid(logit), sigmoid(-logit)
        valid[i, j] = valid[j, i] = True
    return prob, valid
