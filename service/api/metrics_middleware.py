"""HTTP edge middleware for what happens around a request: its metrics, and dropping it if the client leaves.

MetricsMiddleware: latency per route template (not the raw path, to keep label cardinality bounded) and the
in-flight gauge. Requests refused before routing (admission 429s) are labelled with the route they were
for, not "unmatched".

CancelOnDisconnect: once a scoring request's body has been read, a client that disconnects cancels the
handler, so its decode and backend work are dropped before inference (counted as
aesrm_requests_dropped_total{reason="client_disconnected"}), as vLLM's `with_cancellation` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, static_paths: frozenset[str] = frozenset()) -> None:
        self.app, self.metrics, self.static_paths = app, metrics, static_paths

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path", "unmatched")
        # refused before routing (admission): the guarded routes have no path parameters, so the path is
        # the template; anything else stays "unmatched" (bounded label values)
        return scope["path"] if scope["path"] in self.static_paths else "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.request_duration.labels(self._route(scope), scope["method"], str(status["code"])).observe(
                time.perf_counter() - started)


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp, metrics: Metrics, prefixes: tuple[str, ...]) -> None:
        self.app, self.metrics, self.prefixes = app, metrics, prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(self.prefixes)):
            return await self.app(scope, receive, send)
        body_read = asyncio.Event()

        async def receive_body() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        async def client_gone() -> None:
            await body_read.wait()  # the handler no longer reads: from here on, only a disconnect can arrive
            while (await receive())["type"] != "http.disconnect":
                pass

        handler = asyncio.ensure_future(self.app(scope, receive_body, send))
        watcher = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not handler.done():  # the client left (or we are being cancelled): drop the work
                handler.cancel()
                if watcher.done():
                    self.metrics.dropped.labels("client_disconnected").inc()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        with contextlib.suppress(asyncio.CancelledError):
            await handler
        if not handler.cancelled():
            handler.result()  # re-raise what the handler raised
