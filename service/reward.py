"""Pair and group scoring: fetch inputs, run the pipeline, aggregate into the public response models."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from service import aggregate, errors
from service.config import Settings
from service.contract import ModelContract
from service.ingest.sources import LoadedInput, from_bytes, load_ref
from service.metrics import Metrics
from service.schemas import (DimensionScores, GroupItem, GroupResponse, ItemError, ModelInfo, PairResponse,
                             Timings, VideoRef)
from service.scoring import ScoringPipeline

Input = VideoRef | bytes  # JSON reference or uploaded bytes


class RewardService:
    def __init__(self, settings: Settings, pipeline: ScoringPipeline, metrics: Metrics):
        self.settings, self.pipeline, self.metrics = settings, pipeline, metrics

    def model_info(self) -> ModelInfo:
        c = self.pipeline.backend.contract()
        return ModelInfo(id=c.model_id, version=c.model_version, checkpoint=c.checkpoint, trained=c.trained,
                         backend=self.pipeline.backend.name, frames=c.frames, height=c.height, width=c.width)

    async def fetch(self, item: Input, label) -> LoadedInput:
        if isinstance(item, bytes):
            return from_bytes(item, self.settings.max_video_bytes, item=label)
        if item.url is not None:
            if not self.settings.url_ingest:
                raise errors.UnsupportedSource("url inputs are disabled (set AESRM_URL_INGEST)", item=label)
            from service.ingest.fetch_url import fetch_url

            data = await fetch_url(item.url, self.settings, item=label)
            return from_bytes(data, self.settings.max_video_bytes, origin="url", item=label)
        return await asyncio.to_thread(load_ref, item, self.settings, label)

    async def fetch_all(self, items: list[Input], labels: list) -> list[LoadedInput | errors.ServiceError]:
        t = time.perf_counter()
        got = await asyncio.gather(*(self.fetch(x, lab) for x, lab in zip(items, labels)), return_exceptions=True)
        self.metrics.stage("ingest", time.perf_counter() - t)
        for g in got:
            if isinstance(g, BaseException) and not isinstance(g, errors.ServiceError):
                raise g
        return list(got)

    async def pair(self, a: Input, b: Input, both_orders: bool | None) -> PairResponse:
        started = time.perf_counter()
        both = self.settings.both_orders if both_orders is None else both_orders
        loaded = await self.fetch_all([a, b], ["a", "b"])
        for x in loaded:
            if isinstance(x, errors.ServiceError):
                raise x
        ingest_ms = _ms(started)
        out = await self.pipeline.run(loaded, [(0, 1)], both)
        for side, err in sorted(out.item_errors.items()):
            err.item = "ab"[side]
            raise err
        t = time.perf_counter()
        c = self.pipeline.backend.contract()
        res = out.pairs[(0, 1)]
        dims, disagree = aggregate.debias(res.ab, res.ba)
        ov = float(aggregate.overall(dims, self.settings.dimension_weights))
        crit = None
        if res.crit_ab is not None and c.criteria:
            cl, _ = aggregate.debias(res.crit_ab, res.crit_ba)
            crit = {name: float(aggregate.sigmoid(v)) for name, v in zip(c.criteria, cl)}
        dis = None
        if disagree is not None:
            self.metrics.order_disagreement.observe(float(disagree.max()))
            dis = _scores(c, disagree, float(disagree.max()))
        agg_s = time.perf_counter() - t
        self.metrics.stage("aggregate", agg_s)
        return PairResponse(
            preference=_scores(c, aggregate.sigmoid(dims), float(aggregate.sigmoid(ov))),
            logits=_scores(c, dims, ov), criteria=crit, order_disagreement=dis, both_orders=both,
            cache="hit" if out.hits else "miss", model=self.model_info(),
            timings_ms=Timings(ingest_ms=ingest_ms, aggregate_ms=agg_s * 1000, total_ms=_ms(started),
                               **out.timings))

    async def group(self, videos: list[Input], ids: list[str | None], reference: Input | None,
                    aggregation: str, both_orders: bool | None) -> GroupResponse:
        started = time.perf_counter()
        s = self.settings
        both = s.both_orders if both_orders is None else both_orders
        g = len(videos)
        if g > s.max_group_size or (reference is None and g < 2):
            raise errors.GroupSize(f"group size {g} not in [{1 if reference else 2}, {s.max_group_size}]")
        items = videos + ([reference] if reference is not None else [])
        labels: list = list(range(g)) + (["reference"] if reference is not None else [])
        loaded = await self.fetch_all(items, labels)
        ingest_ms = _ms(started)
        item_errors = {n: x for n, x in enumerate(loaded) if isinstance(x, errors.ServiceError)}
        inputs = [None if isinstance(x, errors.ServiceError) else x for x in loaded]
        if reference is not None and g in item_errors:
            raise item_errors[g]
        valid = [n for n in range(g) if n not in item_errors]
        rows = [(i, g) for i in valid] if reference is not None else [
            (i, j) for k, i in enumerate(valid) for j in valid[k + 1:]]
        out = await self.pipeline.run(inputs, rows, both) if rows else None
        if out is not None:
            if reference is not None and g in out.item_errors:
                raise out.item_errors[g]
            item_errors.update(out.item_errors)
        scored = {k: v for k, v in (out.pairs.items() if out else []) if not (set(k) & set(item_errors))}
        if reference is None and len([n for n in range(g) if n not in item_errors]) < 2:
            raise errors.NotEnoughValid(f"{g - len(item_errors)} of {g} videos could be decoded; need 2")

        t = time.perf_counter()
        results, disagreements = self._aggregate(g, scored, reference is not None, aggregation)
        for n, err in item_errors.items():
            if n < g:
                results[n] = GroupItem(index=n, error=ItemError(code=err.code, message=err.message))
                self.metrics.errors.labels(err.code).inc()
        for n, r in enumerate(results):
            r.id = ids[n]
        agg_s = time.perf_counter() - t
        self.metrics.stage("aggregate", agg_s)
        return GroupResponse(
            results=results, aggregation="reference" if reference is not None else aggregation,
            both_orders=both, pairs_scored=len(scored) * (2 if both else 1),
            order_disagreement_mean=float(np.mean(disagreements)) if disagreements else None,
            order_disagreement_max=float(np.max(disagreements)) if disagreements else None,
            cache_hits=out.hits if out else 0, cache_misses=out.misses if out else 0, model=self.model_info(),
            timings_ms=Timings(ingest_ms=ingest_ms, aggregate_ms=agg_s * 1000, total_ms=_ms(started),
                               **(out.timings if out else {})))

    def _aggregate(self, g: int, scored: dict, reference: bool, aggregation: str):
        c = self.pipeline.backend.contract()
        w = self.settings.dimension_weights
        rows = list(scored)
        dims = np.zeros((len(rows), len(c.dimensions)))
        disagreements: list[float] = []
        for k, row in enumerate(rows):
            d, dis = aggregate.debias(scored[row].ab, scored[row].ba)
            dims[k] = d
            if dis is not None:
                disagreements.append(float(dis.max()))
                self.metrics.order_disagreement.observe(float(dis.max()))
        ov = aggregate.overall(dims, w) if rows else np.zeros(0)
        results = [GroupItem(index=n) for n in range(g)]
        if reference:
            for k, (i, _) in enumerate(rows):
                p = aggregate.sigmoid(dims[k])
                po = float(aggregate.sigmoid(ov[k]))
                results[i].vs_reference = _scores(c, p, po)
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
            results[n].dimensions = _scores(c, [dv[n] for dv in dim_vals], results[n].reward)
        return results, disagreements


def _scores(c: ModelContract, values, overall: float) -> DimensionScores:
    named = dict(zip(c.dimensions, (float(v) for v in values)))
    return DimensionScores(VA=named["VA"], VF=named["VF"], VP=named["VP"], overall=overall)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
