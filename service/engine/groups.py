"""Many GRPO groups in one request: every group's inputs are fetched together and all their pairs go through
ONE pipeline run, so decode dedup, the cache lookup and the backend batch span the whole sampler batch
(Flow-GRPO scores 8 prompts x 8 samples at a time) instead of one forward per prompt.

Failures stay as small as they can: a bad video is an error on that item, a group that cannot be scored
(size out of range, fewer than two decodable videos, unreadable reference) is an error on that group, and
only what breaks every group (backend down, too many videos in total) fails the request.
Engine.group is untouched; this is `Engine.groups`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from service import errors
from service.engine import responses
from service.ingest.fetch import Input
from service.metrics import Metrics
from service.schemas import GroupItem, GroupResult, GroupsResponse, ItemError, Timings

GROUPS_VIDEOS_FACTOR = 8
"""A /v1/groups request carries at most GROUPS_VIDEOS_FACTOR x max_group_size videos in total."""


@dataclass
class GroupInput:
    id: str
    videos: list[Input]
    ids: list[str | None] = field(default_factory=list)
    reference: Input | None = None


def max_videos(settings) -> int:
    return GROUPS_VIDEOS_FACTOR * settings.max_group_size


async def score_groups(engine, groups: list[GroupInput], aggregation: str = "bradley_terry",
                       both_orders: bool | None = None) -> GroupsResponse:
    started = time.perf_counter()
    s = engine.settings
    both = s.both_orders if both_orders is None else both_orders
    total = sum(len(g.videos) + (g.reference is not None) for g in groups)
    if total > max_videos(s):
        raise errors.GroupSize(f"{total} videos in one request > {max_videos(s)} "
                               f"({GROUPS_VIDEOS_FACTOR} x max_group_size)")

    # Lay every group's inputs out in one list: [videos..., reference?] per group.
    items: list[Input] = []
    labels: list = []
    spans: list[tuple[int, int, int | None]] = []  # (first video, count, reference index)
    group_error: dict[int, errors.ServiceError] = {}
    for k, grp in enumerate(groups):
        g = len(grp.videos)
        if g > s.max_group_size or (grp.reference is None and g < 2):
            group_error[k] = errors.GroupSize(
                f"group size {g} not in [{1 if grp.reference is not None else 2}, {s.max_group_size}]")
            spans.append((len(items), 0, None))
            continue
        first = len(items)
        items += grp.videos
        labels += [f"{grp.id}/{n}" for n in range(g)]
        ref = None
        if grp.reference is not None:
            ref = len(items)
            items.append(grp.reference)
            labels.append(f"{grp.id}/reference")
        spans.append((first, g, ref))

    loaded = await engine.fetch_all(items, labels) if items else []
    ingest_ms = _ms(started)
    item_errors = {n: x for n, x in enumerate(loaded) if isinstance(x, errors.ServiceError)}
    inputs = [None if isinstance(x, errors.ServiceError) else x for x in loaded]

    rows: list[tuple[int, int]] = []
    for k, (first, g, ref) in enumerate(spans):
        if k in group_error:
            continue
        if ref is not None and ref in item_errors:
            group_error[k] = item_errors[ref]
            continue
        valid = [first + n for n in range(g) if first + n not in item_errors]
        if ref is None and len(valid) < 2:
            group_error[k] = errors.NotEnoughValid(f"{len(valid)} of {g} videos could be decoded; need 2")
            continue
        rows += [(i, ref) for i in valid] if ref is not None else [
            (i, j) for a, i in enumerate(valid) for j in valid[a + 1:]]
    out = await engine.pipeline.run(inputs, rows, both) if rows else None
    if out is not None:
        item_errors.update(out.item_errors)

    t = time.perf_counter()
    contract, results, pairs_total = engine.backend.contract(), [], 0
    for k, (grp, (first, g, ref)) in enumerate(zip(groups, spans)):
        mode = "reference" if grp.reference is not None else aggregation
        if k not in group_error and ref is not None and ref in item_errors:
            group_error[k] = item_errors[ref]
        local_errors = {n: item_errors[first + n] for n in range(g) if first + n in item_errors}
        if k not in group_error and ref is None and g - len(local_errors) < 2:
            group_error[k] = errors.NotEnoughValid(f"{g - len(local_errors)} of {g} videos could be decoded; need 2")
        if k in group_error:
            err = group_error[k]
            results.append(GroupResult(id=grp.id, aggregation=mode,
                                       error=ItemError(code=err.code, message=err.message)))
            engine.metrics.errors.labels(err.code).inc()
            continue
        local = {_local(i, j, first, ref): v for (i, j), v in (out.pairs.items() if out else [])
                 if _in_group(i, j, first, g, ref) and i not in item_errors and j not in item_errors}
        items_out, disagreements = responses.group_items(contract, g, local, ref is not None, aggregation,
                                                         s.dimension_weights)
        for d in disagreements:
            engine.metrics.order_disagreement.observe(d)
        for n, err in local_errors.items():
            items_out[n] = GroupItem(index=n, error=ItemError(code=err.code, message=err.message))
            engine.metrics.errors.labels(err.code).inc()
        for n, r in enumerate(items_out):
            r.id = grp.ids[n] if n < len(grp.ids) else None
        pairs = len(local) * (2 if both else 1)
        pairs_total += pairs
        res = GroupResult(id=grp.id, results=items_out, aggregation=mode, pairs_scored=pairs,
                          order_disagreement_max=float(np.max(disagreements)) if disagreements else None)
        observe_group(engine.metrics, contract.model_version, res)
        results.append(res)
    agg_s = time.perf_counter() - t
    engine.metrics.stage("aggregate", agg_s)
    return GroupsResponse(
        groups=results, both_orders=both, videos=total, pairs_scored=pairs_total,
        cache_hits=out.hits if out else 0, cache_misses=out.misses if out else 0, model=engine.model_info(),
        timings_ms=Timings(ingest_ms=ingest_ms, aggregate_ms=agg_s * 1000, total_ms=_ms(started),
                           **(out.timings if out else {})))


def observe_group(metrics: Metrics, version: str, res) -> None:
    """Reward, per-dimension value and within-group spread histograms (the RL drift signal).
    `res` is a GroupResult or a GroupResponse (same `results` / `aggregation` fields)."""
    if getattr(res, "error", None) is not None:
        return
    rewards = [r.reward for r in res.results if r.error is None and r.reward is not None]
    for r in res.results:
        if r.error is not None or r.reward is None:
            continue
        metrics.reward.labels(version, res.aggregation).observe(r.reward)
        dims = r.vs_reference if res.aggregation == "reference" else r.dimensions
        if dims is not None:
            for name in ("VA", "VF", "VP"):
                metrics.reward_dimension.labels(version, res.aggregation, name).observe(getattr(dims, name))
    if len(rewards) >= 2:
        metrics.reward_spread.labels(version, res.aggregation).observe(max(rewards) - min(rewards))


def _in_group(i: int, j: int, first: int, g: int, ref: int | None) -> bool:
    inside = lambda v: first <= v < first + g or v == ref  # noqa: E731
    return inside(i) and inside(j)


def _local(i: int, j: int, first: int, ref: int | None) -> tuple[int, int]:
    """Global input indices -> the group's own (candidate index; reference = g as in Engine.group)."""
    g_ref = None if ref is None else ref - first  # the reference sits right after the candidates
    return (i - first if i != ref else g_ref, j - first if j != ref else g_ref)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
