"""Score cache: Redis (redis-py asyncio + hiredis) or an in-process LRU when no Redis URL is configured.

Keys are canonical in pair order: (A, B) and (B, A) share one entry holding the logits of the canonical
order ("fwd": lo vs hi) and, when it was asked, of the reversed order ("rev": hi vs lo). A request in
either order is answered from it, flipping signs where needed. A model with a novelty signal also stores
"nov" ([novelty of lo, novelty of hi]); its entries without it count as misses (engine/pipeline._from_entry),
so a cache hit carries the same novelty a miss would. If Redis fails, scoring goes on without
the cache (counted as errors, then bypasses) and redis-py reconnects on a later call.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.contract import ModelContract
from service.metrics import Metrics


def pair_key(contract: ModelContract, digest_a: str, digest_b: str) -> tuple[str, bool]:
    """Cache key for the pair and whether (a, b) is the reverse of the canonical order."""
    lo, hi = sorted((digest_a, digest_b))
    model = f"{contract.model_id}:{contract.model_version}:{contract.checkpoint}"
    return f"aesrm:pair:v1:{model}:{contract.sampling_key}:{lo}:{hi}", digest_a != lo


class ScoreCache(Protocol):
    async def get_many(self, keys: list[str]) -> list[dict | None]: ...

    async def set_many(self, entries: dict[str, dict]) -> None: ...

    async def close(self) -> None: ...


class LRUCache:
    """In-process fallback; per-replica, so only for single-process use or tests."""

    def __init__(self, size: int, ttl_s: float, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._size, self._ttl, self._metrics, self._clock = size, ttl_s, metrics, clock

    async def get_many(self, keys: list[str]) -> list[dict | None]:
        now, out = self._clock(), []
        for key in keys:
            hit = self._data.get(key)
            if hit and hit[0] > now:
                self._data.move_to_end(key)
                out.append(hit[1])
            else:
                out.append(None)
        _count(self._metrics, out)
        return out

    async def set_many(self, entries: dict[str, dict]) -> None:
        expires = self._clock() + self._ttl
        for key, value in entries.items():
            self._data[key] = (expires, value)
            self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    def __init__(self, url: str, ttl_s: int, timeout_s: float, retry_after_s: float, metrics: Metrics):
        self._client = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30)
        self._ttl, self._timeout, self._retry_after = ttl_s, timeout_s, retry_after_s
        self._metrics = metrics
        self._down_until = 0.0

    def _bypassing(self, n: int) -> bool:
        if time.monotonic() < self._down_until:
            self._metrics.cache_requests.labels("bypass").inc(n)
            return True
        return False

    def _failed(self, n: int) -> None:
        self._metrics.cache_requests.labels("error").inc(n)
        self._down_until = time.monotonic() + self._retry_after

    async def get_many(self, keys: list[str]) -> list[dict | None]:
        if not keys:
            return []
        if self._bypassing(len(keys)):
            return [None] * len(keys)
        try:
            raw = await asyncio.wait_for(self._client.mget(keys), self._timeout * 2)
        except (RedisError, OSError, asyncio.TimeoutError):
            self._failed(len(keys))
            return [None] * len(keys)
        out = [orjson.loads(v) if v else None for v in raw]
        _count(self._metrics, out)
        return out

    async def set_many(self, entries: dict[str, dict]) -> None:
        if not entries or self._bypassing(0):
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, value in entries.items():
                pipe.set(key, orjson.dumps(value), ex=self._ttl)
            await asyncio.wait_for(pipe.execute(), self._timeout * 2)
        except (RedisError, OSError, asyncio.TimeoutError):
            self._failed(len(entries))  # counted: an outage first seen on a write must show on dashboards

    async def close(self) -> None:
        await self._client.aclose()


def _count(metrics: Metrics, values: list) -> None:
    hits = sum(v is not None for v in values)
    if hits:
        metrics.cache_requests.labels("hit").inc(hits)
    if len(values) - hits:
        metrics.cache_requests.labels("miss").inc(len(values) - hits)


def build_cache(settings, metrics: Metrics) -> ScoreCache:
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_s,
                          settings.redis_retry_after_s, metrics)
    return LRUCache(settings.lru_size, settings.cache_ttl_s, metrics)
