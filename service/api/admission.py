"""Admission control: a hard cap on scoring/explanation requests in progress.

Requests beyond `max_in_flight` are refused at the door (429 + Retry-After) before their body is read,
so overload costs microseconds and the latency of admitted requests stays bounded by the cap instead of
growing with the offered load. Inner bounded queues (micro-batcher, decode pool) still protect their own
stages; this one keeps uploads, base64 decoding and waiting coroutines from piling up in front of them.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.body_limits import send_refusal_before_body
from service.metrics import Metrics

GUARDED_PREFIXES = ("/v1/pair", "/v1/group", "/v1/explain")


class AdmissionMiddleware:
    """ASGI middleware; single event loop, so a plain counter is race-free."""

    def __init__(self, app: ASGIApp, max_in_flight: int, max_request_bytes: int, metrics: Metrics | None = None,
                 retry_after_s: int = 1, prefixes: tuple[str, ...] = GUARDED_PREFIXES) -> None:
        self.app, self.limit, self.metrics, self.max_request_bytes = app, max_in_flight, metrics, max_request_bytes
        self.retry_after, self.prefixes = str(max(1, retry_after_s)), prefixes
        self.in_flight = 0
        self.rejected = 0

    def _guarded(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._guarded(scope):
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            self.rejected += 1
            if self.metrics is not None:
                self.metrics.errors.labels("overloaded").inc()
            return await _reject(send_refusal_before_body(scope, send, self.max_request_bytes),
                                 self.retry_after, self.limit)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _reject(send: Send, retry_after: str, limit: int) -> None:
    body = orjson.dumps({"error": {"code": "overloaded",
                                   "message": f"more than max_in_flight={limit} requests in progress"}})
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", retry_after.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def find_admission(app) -> AdmissionMiddleware | None:
    """The AdmissionMiddleware instance inside a built Starlette app (for tests and /metrics)."""
    if getattr(app, "middleware_stack", None) is None:  # Starlette builds it on the first request
        app.middleware_stack = app.build_middleware_stack()
    node = app.middleware_stack
    while node is not None:
        if isinstance(node, AdmissionMiddleware):
            return node
        node = getattr(node, "app", None)
    return None
