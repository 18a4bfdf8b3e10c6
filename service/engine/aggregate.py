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
    """Position-free logits and per-element order disagreement |P(A>B) - (1 - P(B>A))| (None in single-order
    mode). 1 - sigmoid(l) is computed as sigmoid(-l), so an antisymmetric model (l_ba == -l_ab bit for bit)
    reports exactly 0, not the 1e-16 that subtracting from 1 leaves."""
    if l_ba is None:
        return np.asarray(l_ab, dtype=np.float64), None
    l_ab, l_ba = np.asarray(l_ab, dtype=np.float64), np.asarray(l_ba, dtype=np.float64)
    return (l_ab - l_ba) / 2.0, np.abs(sigmoid(l_ab) - sigmoid(-l_ba))


def overall(dim_logits: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    """Overall logit: the weighted mean of dimension logits (last axis)."""
    w = np.asarray(weights, dtype=np.float64)
    return np.asarray(dim_logits, dtype=np.float64) @ (w / w.sum())


def win_rate(prob: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Soft win-rate: mean over valid opponents j of P(i beats j). prob[..., i, j] = P(i > j), any leading
    batch axes (one matrix per dimension); valid [n, n] is shared."""
    counts = valid.sum(axis=1)
    wins = np.where(valid, prob, 0.0).sum(axis=-1)
    return np.where(counts > 0, wins / np.maximum(counts, 1), np.nan)


def bradley_terry(prob: np.ndarray, valid: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Bradley-Terry strengths s (zero mean over valid items) maximising
    sum_{i<j valid} P_ij log sigmoid(s_i - s_j) + (1 - P_ij) log sigmoid(s_j - s_i) - l2/2 |s|^2
    by Newton's method (the objective is concave). Soft outcomes P_ij come straight from the model, so no
    information is lost by thresholding. The small ridge keeps s finite when one item wins every pair.

    prob may carry leading batch axes ([K, n, n], one problem per dimension): all K are solved together,
    one batched linear solve per Newton step, so a group's aggregation costs a handful of numpy calls.
    """
    prob = np.asarray(prob, dtype=np.float64)
    single = prob.ndim == 2
    p3 = prob.reshape(-1, *prob.shape[-2:])
    n = p3.shape[-1]
    mask = valid & ~np.eye(n, dtype=bool)
    active = mask.any(axis=1)
    out = np.full((len(p3), n), np.nan)
    if active.sum() < 2:
        out[:, active] = 0.0
        return out[0] if single else out.reshape(prob.shape[:-1])
    idx = np.flatnonzero(active)
    m = mask[np.ix_(idx, idx)]
    p = np.where(m, p3[:, idx][:, :, idx], 0.0)
    eye = np.eye(len(idx))
    s = np.zeros((len(p3), len(idx)))
    for _ in range(iters):
        q = sigmoid(s[:, :, None] - s[:, None, :])
        grad = np.where(m, p - q, 0.0).sum(axis=-1) - l2 * s
        w = np.where(m, q * (1.0 - q), 0.0)
        hess = w - (w.sum(axis=-1) + l2 + 1e-12)[:, :, None] * eye
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        s -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    out[:, idx] = s - s.mean(axis=1, keepdims=True)
    return out[0] if single else out.reshape(prob.shape[:-1])


def pair_matrix(n: int, rows: list[tuple[int, int]], logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability matrices P[..., i, j] = P(i > j) (antisymmetric in logit) and their validity mask [n, n]
    from debiased logits for unordered pairs (i, j): logits [P] gives one [n, n] matrix, [P, K] gives K."""
    logits = np.asarray(logits, dtype=np.float64)
    lk = logits.reshape(len(rows), -1).T  # [K, P]
    prob = np.full((len(lk), n, n), 0.5)
    valid = np.zeros((n, n), dtype=bool)
    if rows:
        ii, jj = np.asarray(rows).T
        prob[:, ii, jj], prob[:, jj, ii] = sigmoid(lk), sigmoid(-lk)
        valid[ii, jj] = valid[jj, ii] = True
    return (prob[0] if logits.ndim == 1 else prob), valid

