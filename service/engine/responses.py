"""Aggregate stage: turn the pipeline's per-pair logits into the public response fields.

Pure functions of (contract, logits, settings): order debiasing, the weighted overall score, and for a
group the Bradley-Terry / win-rate rewards or the per-candidate comparison with a reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service import errors
from service.contract import ModelContract
from service.engine import aggregate
from service.schemas import DimensionScores, GroupItem


PUBLIC_DIMENSIONS = ("VA", "VF", "VP")


def dimension_scores(c: ModelContract, values: Sequence[float], overall: float) -> DimensionScores:
    """Named by the contract's dimensions (in the contract's order), never by position."""
    named = dict(zip(c.dimensions, (float(v) for v in values)))
    missing = [d for d in PUBLIC_DIMENSIONS if d not in named]
    if missing or "overall" in named:
        raise errors.BackendError(f"model contract dimensions {c.dimensions} lack {missing} (or name 'overall')")
    return DimensionScores(**named, overall=overall)


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
    }
    return fields, worst


def group_items(c: ModelContract, g: int, scored: dict, reference: bool, aggregation: str,
                weights) -> tuple[list[GroupItem], list[float]]:
    """One GroupItem per candidate (index order) and the per-pair max order disagreements."""
    rows = list(scored)
    dims = np.zeros((len(rows), len(c.dimensions)))
    disagreements: list[float] = []
    for k, row in enumerate(rows):
        d, dis = aggregate.debias(scored[row].ab, scored[row].ba)
        dims[k] = d
        if dis is not None:
            disagreements.append(float(dis.max()))
    ov = aggregate.overall(dims, weights) if rows else np.zeros(0)
    results = [GroupItem(index=n) for n in range(g)]
    if reference:
        for k, (i, _) in enumerate(rows):
            po = float(aggregate.sigmoid(ov[k]))
            results[i].vs_reference = dimension_scores(c, aggregate.sigmoid(dims[k]), po)
            results[i].reward = po
        return results, disagreements
    per_dim = [aggregate.pair_matrix(g, rows, dims[:, k]) for k in range(dims.shape[1])]
    prob, valid = aggregate.pair_matrix(g, rows, ov)
    bt, wr = aggregate.bradley_terry(prob, valid), aggregate.win_rate(prob, valid)
    pick = aggregate.bradley_terry if aggregation == "bradley_terry" else aggregate.win_rate
    dim_vals = [pick(p, v) for p, v in per_dim]
    for n in range(g):
        if not valid[n].any():
            continue
        results[n].bradley_terry, results[n].win_rate = float(bt[n]), float(wr[n])
        results[n].reward = results[n].bradley_terry if aggregation == "bradley_terry" else results[n].win_rate
        results[n].dimensions = dimension_scores(c, [dv[n] for dv in dim_vals], results[n].reward)
    return results, disagreements
