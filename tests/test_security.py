"""API keys (sha256-configured bearer keys) and per-key Redis rate limits, including Redis failure."""

from __future__ import annotations

import re
import time

import redis

from service.api.security import RateLimiter, check_key, hash_key
from tests.conftest import RedisServer, running_app, test_settings

KEY, OTHER = "k-live-3f9c2a", "k-other-77aa01"
HASHES = [hash_key(KEY), hash_key(OTHER).upper()]  # digests are matched case-insensitively


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def settings(**kw):
    base = dict(allow_untrained=True, api_key_hashes=HASHES)
    base.update(kw)
    return test_settings(**base)


def test_check_key_matches_only_configured_digests():
    assert check_key(KEY, HASHES) == HASHES[0]
    assert check_key(OTHER, HASHES) == HASHES[1]
    for bad in ("", None, KEY + " ", KEY.upper(), HASHES[0]):  # the digest itself is not a key
        assert check_key(bad, HASHES) is None


async def test_scoring_routes_need_a_valid_bearer_key(clips):
    s = settings()
    async with running_app(s, None) as (client, _):
        files = lambda: {"a": ("a.mp4", clips["clean"]), "b": ("b.mp4", clips["noisy"])}  # noqa: E731
        for headers in ({}, auth("wrong"), {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer"},
                        {"Authorization": KEY}):
            r = await client.post("/v1/pair/upload", files=files(), headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert (await client.post("/v1/pair/upload", files=files(), headers=auth(KEY))).status_code == 200
        assert (await client.get("/v1/model", headers=auth(OTHER))).status_code == 200
        # health and metrics stay open unless configured
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


async def test_every_v1_route_is_protected(clips):
    """Generic guard: any /v1 route (scoring, model info, explanations once mounted) refuses anonymous calls."""
    s = settings()
    async with running_app(s, None) as (client, app):
        paths = {p: ops for p, ops in app.openapi()["paths"].items() if p.startswith("/v1")}
        assert len(paths) >= 5
        for template, ops in paths.items():
            path = re.sub(r"\{[^}]+\}", "x", template)
            for method in ops:
                r = await client.request(method.upper(), path, json={})
                assert r.status_code == 401, (method, path, r.status_code)
        print(f"\n{len(paths)} /v1 routes refuse anonymous calls: {sorted(paths)}")


async def test_health_and_metrics_auth_is_configurable():
    s = settings(auth_health=True, auth_metrics=True)
    async with running_app(s, None) as (client, _):
        for path in ("/health/live", "/health/ready", "/metrics"):
            assert (await client.get(path)).status_code == 401
            assert (await client.get(path, headers=auth(KEY))).status_code == 200


async def test_auth_off_when_no_hashes_configured(clips):
    s = test_settings(allow_untrained=True)
    async with running_app(s, None) as (client, _):
        assert (await client.get("/v1/model")).status_code == 200


async def test_per_key_rate_limit_in_redis(redis_url):
    s = settings(redis_url=redis_url, rate_limit_per_minute=3)
    async with running_app(s, None) as (client, app):
        codes = [(await client.get("/v1/model", headers=auth(KEY))).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = await client.get("/v1/model", headers=auth(KEY))
        assert r.json()["error"]["code"] == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 60
        assert (await client.get("/v1/model", headers=auth(OTHER))).status_code == 200  # own budget
        assert (await client.get("/v1/model", headers=auth("nope"))).status_code == 401  # auth first
        assert app.state.rate_limiter.fallbacks == 0  # decided in Redis
        keys = redis.Redis.from_url(redis_url).keys("aesrm:rl:*")
        assert len(keys) >= 2 and not any(KEY.encode() in k for k in keys)  # keys never stored in clear


async def test_rate_limit_is_shared_across_replicas_through_redis(redis_url):
    s = settings(redis_url=redis_url, rate_limit_per_minute=4)
    key = "k-shared-" + str(time.time_ns())
    s.api_key_hashes = [hash_key(key)]
    async with running_app(s, None) as (c1, _), running_app(s, None) as (c2, _):
        codes = [(await c.get("/v1/model", headers=auth(key))).status_code for c in (c1, c2, c1, c2, c1, c2)]
    assert codes == [200, 200, 200, 200, 429, 429]


async def test_rate_limit_fails_open_to_a_local_window_when_redis_dies():
    """Decision: Redis down -> keep serving (auth still enforced) with a per-process window of the same
    limit; no 5xx, no per-request Redis timeout after the first failure."""
    server = RedisServer().start()
    s = settings(redis_url=server.url, rate_limit_per_minute=5, redis_retry_after_s=30)
    async with running_app(s, None) as (client, app):
        assert (await client.get("/v1/model", headers=auth(KEY))).status_code == 200  # counted in Redis
        server.stop()
        codes = [(await client.get("/v1/model", headers=auth(KEY))).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2, codes  # local window: still limited, never 5xx
        assert app.state.rate_limiter.fallbacks == 7
        assert app.state.rate_limiter.redis_calls == 2  # one before, one failed: then bypassed, no per-request timeout
        assert (await client.get("/v1/model")).status_code == 401


async def test_rate_limiter_recovers_when_redis_returns():
    server = RedisServer().start()
    now = [0.0]
    limiter = RateLimiter(100, server.url, timeout_s=0.2, retry_after_s=0.3, clock=lambda: now[0])
    try:
        assert (await limiter.hit("a"))[0] and limiter.fallbacks == 0
        server.stop()
        assert (await limiter.hit("a"))[0] and limiter.fallbacks == 1
        server.start()
        now[0] += 0.35  # past the bypass window
        assert (await limiter.hit("a"))[0]
        assert limiter.fallbacks == 1  # back on Redis
    finally:
        await limiter.close()
        server.stop()
