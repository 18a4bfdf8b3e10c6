"""Aggregate stage: turn the pipeline's per-pair logits into the public response fields.

Pure functions of (contract, logits, settings): order debiasing, the weighted overall score, and for a
group the Bradley-Terry / win-rate rewards or the per-candidate comparison with a reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service import errors
from service.contract import NOVELTY_THRESHOLD, ModelContract
from service.engine import aggregate
from service.schemas import DimensionScores, GroupItem, Novelty


PUBLIC_DIMENSIONS = ("VA", "VF", "VP")


def dimension_scores(c: ModelContract, values: Sequence[float], overall: float) -> DimensionScores:
    """Named by the contract's dimensions (in the contract's order), never by position."""
    named = dict(zip(c.dimensions, (float(v) for v in values)))
    missing = [d for d in PUBLIC_DIMENSIONS if d not in named]
    if missing or "overall" in named:
        raise errors.BackendError(f"model contract dimensions {c.dimensions} lack {missing} (or name 'overall')")
    return DimensionScores(**named, overall=overall)


def novelty_info(novelty, threshold: float = NOVELTY_THRESHOLD) -> Novelty | None:
    """The public novelty of one pair from the backend's [2] (video a, video b); None when absent."""
    if novelty is None:
        return None
    a, b = (float(x) for x in novelty)
    if not (np.isfinite(a) and np.isfinite(b)):
        return None  # a model that cannot say is reported as saying nothing, not as 'far away'
    worst = max(a, b)
    return Novelty(a=a, b=b, max=worst, threshold=threshold, in_distribution=worst <= threshold)


def pair_fields(c: ModelContract, res, weights) -> tuple[dict, float | None]:
    """Preference, logits, criteria and order disagreement of one scored pair; also the max disagreement."""
    dims, disagree = aggregate.debias(res.ab, res.ba)
    ov = float(aggregate.overall(dims, weights))
    crit = None
    if res.crit_ab is not None and c.criteria:
        cl, _ = aggregate.debias(res.crit_ab, res.crit_ba)
        crit = {name: float(aggregate.sigmoid(v)) for name, v in zip(c.criteria, cl)}
    worst = float(disagree.max()) if disagree is not None else None
    fields = {
        "preference": dimension_scores(c, aggregate.sigmoid(dims), float(aggregate.sigmoid(ov))),
        "logits": dimension_scores(c, dims, ov), "criteria": crit,
        "order_disagreement": dimension_scores(c, disagree, worst) if disagree is not None else None,
        "novelty": novelty_info(getattr(res, "novelty", None)),
    }
    return fields, worst


def group_items(c: ModelContract, g: int, scored: dict, reference: bool, aggregation: str,
                weights) -> tuple[list[GroupItem], list[float]]:
    """One GroupItem per candidate (index order) and the per-pair max order disagreements.

    Vectorised over pairs and dimensions: the D + 1 Bradley-Terry problems (each dimension and overall)
    are solved as one batch, so the cost is a few numpy calls whatever G is (it runs on the event loop)."""
    rows = list(scored)
    dims, dis = _debias_rows(c, [scored[r] for r in rows])
    disagreements = [] if dis is None else [float(x) for x in dis.max(axis=1)]
    ov = aggregate.overall(dims, weights) if rows else np.zeros(0)
    results = [GroupItem(index=n) for n in range(g)]
    if reference:
        probs, po = aggregate.sigmoid(dims), aggregate.sigmoid(ov)
        for k, (i, _) in enumerate(rows):
            results[i].vs_reference = dimension_scores(c, probs[k], float(po[k]))
            results[i].reward = float(po[k])
        return results, disagreements
    prob, valid = aggregate.pair_matrix(g, rows, np.column_stack([dims, ov]))  # [D + 1, g, g]
    bt, wr = aggregate.bradley_terry(prob, valid), aggregate.win_rate(prob, valid)
    per_dim = bt[:-1] if aggregation == "bradley_terry" else wr[:-1]
    for n in range(g):
        if not valid[n].any():
            continue
        results[n].bradley_terry, results[n].win_rate = float(bt[-1, n]), float(wr[-1, n])
        results[n].reward = results[n].bradley_terry if aggregation == "bradley_terry" else results[n].win_rate
        results[n].dimensions = dimension_scores(c, per_dim[:, n], results[n].reward)
    return results, disagreements


def _debias_rows(c: ModelContract, res: list) -> tuple[np.ndarray, np.ndarray | None]:
    """Debiased dimension logits [P, D] and order disagreements [P, D] (None in single-order mode)."""
    if not res:
        return np.zeros((0, len(c.dimensions))), None
    ab = np.array([r.ab for r in res], dtype=np.float64)
    if all(r.ba is not None for r in res):
        return aggregate.debias(ab, np.array([r.ba for r in res], dtype=np.float64))
    if all(r.ba is None for r in res):
        return ab, None
    both = [aggregate.debias(r.ab, r.ba) for r in res]  # mixed (cannot come from one pipeline run)
    return np.array([d for d, _ in both]), np.array([x if x is not None else np.zeros(len(d)) for d, x in both])
