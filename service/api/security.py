"""API-key auth and per-key rate limits, decided from the request line and headers alone.

`AuthMiddleware` runs outside admission and before any body byte is read: an unauthenticated or
rate-limited request is answered (401 / 429) without reading its body and without taking a scoring slot,
so anonymous slow uploads cannot occupy capacity. The route dependencies below only confirm that the
middleware ran (and do the same check themselves if an app was built without it).

Keys are configured only as sha256 hex digests (`api_key_hashes`), so a leaked config does not leak keys;
the presented key is hashed and compared with every configured digest in constant time (no early exit).

Rate limit: a fixed 60 s window per key in Redis (one atomic Lua INCR+EXPIRE round trip). Decision on
Redis failure: fail OPEN to an in-process window with the same limit. Scoring must survive a Redis outage
(the cache already degrades the same way) and auth is still enforced; the only loss is that the limit is
per replica instead of global until Redis is back. After a failure Redis is skipped for
`redis_retry_after_s`, so a dead Redis costs no latency per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service import errors
from service.api.body_limits import send_refusal_before_body
from service.api.error_handlers import error_response
from service.api.state import app_settings
from service.config import Settings
from service.metrics import Metrics

log = logging.getLogger(__name__)
WINDOW_S = 60
AUTH_SCOPE_KEY = "aesrm.identity"  # set by AuthMiddleware once a request passed auth and its rate limit

# KEYS[1] = window key; ARGV[1] = window seconds. Returns {count, ttl_ms}.
_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1] * 1000) end
return {n, redis.call('PTTL', KEYS[1])}
"""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_key(presented: str | None, hashes: list[str]) -> str | None:
    """The matching digest, or None. Every digest is compared, each in constant time."""
    if not presented:
        return None
    digest = hash_key(presented).encode()
    match = None
    for h in hashes:
        if hmac.compare_digest(digest, h.strip().lower().encode()):
            match = h
    return match


def bearer(request: Request | Headers) -> str | None:
    headers = request.headers if isinstance(request, Request) else request
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class RateLimiter:
    """Fixed-window counter per identity: Redis when reachable, local window while it is not."""

    def __init__(self, limit: int, redis_url: str | None, timeout_s: float = 0.25, retry_after_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.limit, self.timeout, self.retry_after = limit, timeout_s, retry_after_s
        self._redis = aioredis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s) \
            if redis_url else None
        self._script = self._redis.register_script(_LUA) if self._redis else None
        self._local: dict[tuple[str, int], int] = {}
        self._down_until = 0.0
        self.fallbacks = 0  # decisions taken locally because Redis failed (observability/tests)
        self.redis_calls = 0  # decisions asked of Redis (a Redis outage costs one timeout, then bypass)

    async def hit(self, identity: str) -> tuple[bool, float]:
        """(allowed, seconds until the window resets)."""
        now = time.time()
        window = int(now // WINDOW_S)
        reset = (window + 1) * WINDOW_S - now
        if self._script is not None and self._clock() >= self._down_until:
            self.redis_calls += 1
            try:
                n, ttl_ms = await asyncio.wait_for(
                    self._script(keys=[f"aesrm:rl:{identity}:{window}"], args=[WINDOW_S]), self.timeout * 2)
                return int(n) <= self.limit, max(0.001, int(ttl_ms) / 1000) if int(ttl_ms) > 0 else reset
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                log.warning("rate limiter: Redis failed (%s); local window for %.1fs", type(exc).__name__,
                            self.retry_after)
                self._down_until = self._clock() + self.retry_after
        self.fallbacks += 1
        if len(self._local) > 100_000:  # old windows only; bounded memory under many identities
            self._local = {k: v for k, v in self._local.items() if k[1] == window}
        n = self._local.get((identity, window), 0) + 1
        self._local[(identity, window)] = n
        return n <= self.limit, reset

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _limiter(app, settings: Settings) -> RateLimiter | None:
    """One limiter per app (created on first use; closed by the app's lifespan)."""
    if settings.rate_limit_per_minute <= 0:
        return None
    limiter = getattr(app.state, "rate_limiter", None)
    if limiter is None:
        limiter = RateLimiter(settings.rate_limit_per_minute, settings.redis_url, settings.redis_timeout_s,
                              settings.redis_retry_after_s)
        app.state.rate_limiter = limiter
    return limiter


def limiter_for(request: Request) -> RateLimiter | None:
    return _limiter(request.app, app_settings(request))


def authenticate(headers: Headers, settings: Settings) -> str | None:
    """Identity for rate limiting: the key's digest prefix; None when auth is off. Raises Unauthorized."""
    if not settings.api_key_hashes:
        return None
    match = check_key(bearer(headers), settings.api_key_hashes)
    if match is None:
        raise errors.Unauthorized("missing or unknown API key (Authorization: Bearer <key>)")
    return match[:16]


async def rate_limit(app, settings: Settings, identity: str) -> None:
    limiter = _limiter(app, settings)
    if limiter is None:
        return
    allowed, reset_s = await limiter.hit(identity)
    if not allowed:
        raise errors.RateLimited(f"more than {limiter.limit} requests/minute for this key", retry_after_s=reset_s)


def _needs_key(path: str, settings: Settings) -> bool:
    return (path == "/v1" or path.startswith("/v1/") or (settings.auth_health and path.startswith("/health/"))
            or (settings.auth_metrics and path == "/metrics"))


async def _check(app, settings: Settings, path: str, headers: Headers, client) -> str:
    identity = authenticate(headers, settings)
    if path.startswith("/v1"):  # scoring/explanation/model: the per-key (or per-address) rate limit
        await rate_limit(app, settings, identity or "ip:" + (client[0] if client else "unknown"))
    return identity or ""


class AuthMiddleware:
    """Auth and rate limit from headers only, outside admission: refused requests never read a body byte."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics | None = None) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _needs_key(scope["path"], self.settings):
            return await self.app(scope, receive, send)
        try:
            scope[AUTH_SCOPE_KEY] = await _check(scope["app"], self.settings, scope["path"], Headers(scope=scope),
                                                 scope.get("client"))
        except errors.ServiceError as exc:
            if self.metrics is not None:
                self.metrics.errors.labels(exc.code).inc()
            return await error_response(exc)(scope, receive,
                                              send_refusal_before_body(scope, send, self.settings.max_request_bytes))
        await self.app(scope, receive, send)


# Declares the bearer scheme in OpenAPI (clients and schema-based testers see it); never refuses by itself.
BEARER = HTTPBearer(auto_error=False, description="An API key, when AESRM_API_KEY_HASHES is set.")


async def require_api_key(request: Request,
                          _: HTTPAuthorizationCredentials | None = Security(BEARER)) -> None:
    """Scoring/explanation routes: decided by AuthMiddleware; checked here only if the app lacks it."""
    if AUTH_SCOPE_KEY not in request.scope:
        await _check(request.app, app_settings(request), "/v1", request.headers,
                     (request.client.host,) if request.client else None)


async def require_key_for_health(request: Request) -> None:
    if app_settings(request).auth_health and AUTH_SCOPE_KEY not in request.scope:
        authenticate(request.headers, app_settings(request))


async def require_key_for_metrics(request: Request) -> None:
    if app_settings(request).auth_metrics and AUTH_SCOPE_KEY not in request.scope:
        authenticate(request.headers, app_settings(request))


async def close_limiter(app) -> None:
    limiter = getattr(app.state, "rate_limiter", None)
    if limiter is not None:
        await limiter.close()
