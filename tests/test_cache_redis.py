"""Cache behaviour against a real redis-server: canonical keys, TTL, and scoring through a Redis outage."""

from __future__ import annotations

import asyncio
import time

import redis as redis_sync

from service.cache import LRUCache, RedisCache, pair_key
from service.contract import ModelContract
from service.metrics import Metrics
from tests.conftest import RedisServer, metric_value, running_app, test_settings

CONTRACT = ModelContract("m", "1", 8, 128, 128, checkpoint="ck@abc")


def test_pair_key_is_order_free_and_versioned():
    k1, f1 = pair_key(CONTRACT, "aa", "bb")
    k2, f2 = pair_key(CONTRACT, "bb", "aa")
    assert k1 == k2 and (f1, f2) == (False, True)
    other = ModelContract("m", "2", 8, 128, 128, checkpoint="ck@abc")
    assert pair_key(other, "aa", "bb")[0] != k1
    resampled = ModelContract("m", "1", 16, 128, 128, checkpoint="ck@abc")
    assert pair_key(resampled, "aa", "bb")[0] != k1


async def test_redis_cache_roundtrip_and_ttl(redis_url):
    cache = RedisCache(redis_url, ttl_s=1, timeout_s=0.5, retry_after_s=0.1, metrics=Metrics())
    key = f"test:{time.time()}"
    await cache.set_many({key: {"fwd": [1.0, 2.0, 3.0]}})
    assert await cache.get_many([key, key + "x"]) == [{"fwd": [1.0, 2.0, 3.0]}, None]
    ttl = redis_sync.Redis.from_url(redis_url).ttl(key)
    assert 0 < ttl <= 1
    await cache.close()


async def test_scoring_survives_redis_outage_and_reconnects(clips):
    server = RedisServer().start()
    settings = test_settings(redis_url=server.url, redis_retry_after_s=0.2, redis_timeout_s=0.2)
    files = {"a": ("a.mp4", clips["clean"]), "b": ("b.mp4", clips["dark"])}
    try:
        async with running_app(settings) as (client, _):
            r = await client.post("/v1/pair/upload", files=files)
            assert r.status_code == 200 and r.json()["cache"] == "miss"
            assert (await client.post("/v1/pair/upload", files=files)).json()["cache"] == "hit"

            server.stop()  # Redis goes away: scoring must go on, uncached
            for _ in range(3):
                r = await client.post("/v1/pair/upload", files=files)
                assert r.status_code == 200 and r.json()["cache"] == "miss"
            text = (await client.get("/metrics")).text
            assert metric_value(text, "aesrm_cache_requests_total", result="error") >= 1
            assert metric_value(text, "aesrm_cache_requests_total", result="bypass") >= 1

            server.start()  # same port, empty: the client reconnects by itself
            await asyncio.sleep(0.3)
            statuses = []
            for _ in range(3):
                r = await client.post("/v1/pair/upload", files=files)
                assert r.status_code == 200
                statuses.append(r.json()["cache"])
            assert statuses[-1] == "hit", statuses  # written again after reconnect, then served
    finally:
        server.stop()


async def test_in_process_lru_when_no_redis(clips):
    files = {"a": ("a.mp4", clips["other"]), "b": ("b.mp4", clips["noisy"])}
    async with running_app(test_settings(redis_url=None)) as (client, _):
        assert (await client.post("/v1/pair/upload", files=files)).json()["cache"] == "miss"
        assert (await client.post("/v1/pair/upload", files=files)).json()["cache"] == "hit"


async def test_in_process_lru_forgets_entries_after_their_ttl_by_its_clock():
    now = [100.0]
    cache = LRUCache(10, ttl_s=60, metrics=Metrics(), clock=lambda: now[0])
    await cache.set_many({"k": {"fwd": [1.0]}})
    assert await cache.get_many(["k"]) == [{"fwd": [1.0]}]
    now[0] += 59.9
    assert await cache.get_many(["k"]) == [{"fwd": [1.0]}]
    now[0] += 0.2
    assert await cache.get_many(["k"]) == [None]
