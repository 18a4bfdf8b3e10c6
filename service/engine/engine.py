"""The engine: scoring without HTTP.

`Engine` owns the backend, cache, pipeline and explanation service, and answers `pair`, `group` and
`explain` with the public response models. The HTTP API, the CLI's in-process mode, the bench and the tests
all drive it the same way (as infinity's AsyncEmbeddingEngine is driven)::

    async with Engine(settings) as engine:
        res = await engine.pair(video_a_bytes, video_b_bytes)

start() and close() are idempotent. start() never fails on an unreachable backend (Triton still loading):
it keeps retrying in the background while ready() is False.

Data flows one way: fetch (service.ingest.fetch) -> pipeline (decode, cache, backend; pipeline.py) ->
aggregate (responses.py) -> response models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np

from service import errors
from service.backends import build_backend
from service.cache import build_cache
from service.config import Settings, get_settings
from service.contract import ScorerBackend
from service.engine import responses
from service.engine.groups import GroupInput, observe_group, score_groups
from service.engine.pipeline import ScoringPipeline
from service.ingest import fetch
from service.ingest.fetch import Input
from service.ingest.sources import LoadedInput
from service.lifecycle import stop_tasks
from service.metrics import Metrics
from service.schemas import GroupItem, GroupResponse, GroupsResponse, ItemError, ModelInfo, PairResponse, Timings

log = logging.getLogger("service")


class Engine:
    def __init__(self, settings: Settings | None = None, backend: ScorerBackend | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings or get_settings()
        self.metrics = metrics or Metrics()
        self.backend = backend or build_backend(self.settings, self.metrics)
        self.cache = build_cache(self.settings, self.metrics)
        self.pipeline = ScoringPipeline(self.settings, self.backend, self.cache, self.metrics)
        from service.explain.worker import ExplainService  # slow path: own queue, workers and job store

        self.explanations = ExplainService(self.settings, self.backend, self.cache, self.metrics)
        self.backend_started = False
        self._started = self._closed = False
        self._starter: asyncio.Task | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> Engine:
        if self._started:
            return self
        self._started = True
        try:
            await self.backend.start()
            self.backend_started = True
        except Exception as exc:  # noqa: BLE001 - any start failure means "not ready", not "crash"
            log.warning("backend %s not started: %s; retrying in background", self.backend.name, exc)
            self._starter = asyncio.create_task(self._retry_start())
        self.explanations.start()
        return self

    async def _retry_start(self) -> None:
        delay = 1.0
        while not self.backend_started:
            await asyncio.sleep(delay)
            try:
                await self.backend.start()
                self.backend_started = True
                log.info("backend %s started", self.backend.name)
            except Exception as exc:  # noqa: BLE001
                log.warning("backend start retry failed: %s", exc)
                delay = min(delay * 2, 15.0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await stop_tasks([self._starter])
        with contextlib.suppress(Exception):
            await self.explanations.close()
        with contextlib.suppress(Exception):
            await self.backend.close()
        await self.cache.close()
        self.pipeline.close()

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def ready(self) -> bool:
        ok = self.backend_started and await self.backend.ready()
        self.metrics.backend_ready.set(1 if ok else 0)
        return ok

    def model_info(self) -> ModelInfo:
        c = self.backend.contract()
        return ModelInfo(id=c.model_id, version=c.model_version, checkpoint=c.checkpoint, trained=c.trained,
                         backend=self.backend.name, runtime=getattr(self.backend, "runtime", ""),  # embedded only
                         frames=c.frames, height=c.height, width=c.width,
                         views=[v.describe() for v in c.views])

    # ---- fetch -----------------------------------------------------------------------------------
    async def fetch_all(self, items: list[Input], labels: list) -> list[LoadedInput | errors.ServiceError]:
        return await fetch.fetch_all(items, labels, self.settings, self.metrics)

    async def fetch_pair(self, a: Input, b: Input) -> tuple[LoadedInput, LoadedInput]:
        """Both sides or the first side's error (a pair has no per-item results)."""
        loaded = await self.fetch_all([a, b], ["a", "b"])
        for x in loaded:
            if isinstance(x, errors.ServiceError):
                raise x
        return loaded[0], loaded[1]

    # ---- scoring ---------------------------------------------------------------------------------
    async def pair(self, a: Input, b: Input, both_orders: bool | None = None) -> PairResponse:
        """P(A preferred over B) per dimension, overall and per criterion."""
        started = time.perf_counter()
        both = self.settings.both_orders if both_orders is None else both_orders
        loaded = list(await self.fetch_pair(a, b))
        ingest_ms = _ms(started)
        out = await self.pipeline.run(loaded, [(0, 1)], both, labels=["a", "b"])
        if out.item_errors:
            raise out.item_errors[min(out.item_errors)]
        t = time.perf_counter()
        fields, worst = responses.pair_fields(self.backend.contract(), out.pairs[(0, 1)],
                                              self.settings.dimension_weights)
        if worst is not None:
            self.metrics.order_disagreement.observe(worst)
        agg_s = time.perf_counter() - t
        self.metrics.stage("aggregate", agg_s)
        return PairResponse(**fields, both_orders=both, cache="hit" if out.hits else "miss",
                            model=self.model_info(),
                            timings_ms=Timings(ingest_ms=ingest_ms, aggregate_ms=agg_s * 1000,
                                               total_ms=_ms(started), **out.timings))

    async def group(self, videos: list[Input], ids: list[str | None] | None = None, reference: Input | None = None,
                    aggregation: str = "bradley_terry", both_orders: bool | None = None) -> GroupResponse:
        """Per-candidate rewards: all pairs aggregated (Bradley-Terry / win rate), or each vs `reference`.
        A candidate that cannot be read or decoded gets an error entry; the rest are still scored."""
        started = time.perf_counter()
        s = self.settings
        both = s.both_orders if both_orders is None else both_orders
        g = len(videos)
        ids = ids if ids is not None else [None] * g
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
        out = await self.pipeline.run(inputs, rows, both, labels=labels) if rows else None
        if out is not None:
            if reference is not None and g in out.item_errors:
                raise out.item_errors[g]
            item_errors.update(out.item_errors)
        scored = {k: v for k, v in (out.pairs.items() if out else []) if not (set(k) & set(item_errors))}
        if reference is None and len([n for n in range(g) if n not in item_errors]) < 2:
            raise errors.NotEnoughValid(f"{g - len(item_errors)} of {g} videos could be decoded; need 2")

        t = time.perf_counter()
        results, disagreements = responses.group_items(self.backend.contract(), g, scored, reference is not None,
                                                       aggregation, s.dimension_weights)
        for d in disagreements:
            self.metrics.order_disagreement.observe(d)
        for n, err in item_errors.items():
            if n < g:
                results[n] = GroupItem(index=n, error=ItemError(code=err.code, message=err.message))
                self.metrics.errors.labels(err.code).inc()
        for n, r in enumerate(results):
            r.id = ids[n]
        agg_s = time.perf_counter() - t
        self.metrics.stage("aggregate", agg_s)
        return observed(self.metrics, GroupResponse(
            results=results, aggregation="reference" if reference is not None else aggregation,
            both_orders=both, pairs_scored=len(scored) * (2 if both else 1),
            order_disagreement_mean=float(np.mean(disagreements)) if disagreements else None,
            order_disagreement_max=float(np.max(disagreements)) if disagreements else None,
            cache_hits=out.hits if out else 0, cache_misses=out.misses if out else 0, model=self.model_info(),
            timings_ms=Timings(ingest_ms=ingest_ms, aggregate_ms=agg_s * 1000, total_ms=_ms(started),
                               **(out.timings if out else {}))))

    # ---- explanations (slow path) ----------------------------------------------------------------
    async def explain(self, a: Input, b: Input, ids: tuple[str | None, str | None] = (None, None)
                      ) -> tuple[dict, bool]:
        """Queue an explanation job for A vs B; returns (job record, created). Inputs pass the same
        fetch limits as the fast path; poll / stream / cancel through `self.explanations`."""
        la, lb = await self.fetch_pair(a, b)
        meta = {"a": {"digest": la.digest, "id": ids[0]}, "b": {"digest": lb.digest, "id": ids[1]}}
        return await self.explanations.submit(la, lb, meta)

    # ---- many groups per call (GRPO batches; service/engine/groups.py) ------------------------------
    async def groups(self, groups: list[GroupInput], aggregation: str = "bradley_terry",
                     both_orders: bool | None = None) -> GroupsResponse:
        """Several prompt groups scored in one pipeline run (one batch across groups); errors per item
        or per group, see service/engine/groups.py."""
        return await score_groups(self, groups, aggregation, both_orders)


def observed(metrics: Metrics, res: GroupResponse) -> GroupResponse:
    observe_group(metrics, res.model.version, res)
    return res


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
