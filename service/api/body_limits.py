"""Request-body guard: a size limit enforced while the body streams in, and a deadline for receiving it.

Why not Starlette's RequestBodyLimitMiddleware (FastAPI `max_body_size`): it answers in plain text without
our error code, and it turns any earlier answer (401, 429) into a plain 413 when Content-Length is too
large. Here a declared Content-Length above `max_request_bytes` is refused before a byte is read; a body
without one (chunked) is counted as it arrives and refused at the first chunk past the limit, so the
process never holds more than one limit's worth of a refused body. The deadline (`body_timeout_s`) bounds
how long an admitted request may take to send its body, so slow uploads cannot hold scoring slots. A refused
body's answer says `Connection: close`: uvicorn then closes the connection once the answer is sent, instead
of keeping it alive and reading (and discarding) the rest of a 300 MB body for as long as the client sends.
Errors raised from `receive` are HTTPExceptions because FastAPI re-raises those from body parsing (any
other exception becomes a 400); error_handlers maps them to `request_too_large` / `request_timeout`.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors
from service.api.error_handlers import error_response
from service.metrics import Metrics


class BodyRefused(HTTPException):
    """Raised from `receive`; `code` is the machine-readable error code the handler reports."""

    def __init__(self, error: type[errors.ServiceError], message: str) -> None:
        super().__init__(status_code=error.status, detail=message)
        self.code = error.code


class BodyGuardMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, metrics: Metrics | None = None) -> None:
        self.app, self.max_bytes, self.timeout_s, self.metrics = app, max_bytes, timeout_s, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_bytes):
            exc = (errors.RequestTooLarge(f"Content-Length {declared[:20]} > max_request_bytes={self.max_bytes}")
                   if declared.strip().isdigit() else errors.InvalidRequest("malformed Content-Length"))
            if self.metrics is not None:
                self.metrics.errors.labels(exc.code).inc()
            return await error_response(exc)(scope, receive, closing(send))  # nothing of the body is read

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received, done, refused = 0, False, False

        async def guarded_receive() -> Message:
            nonlocal received, done, refused
            if done:  # body complete: later receives only wait for a disconnect (SSE), no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused = True
                raise BodyRefused(errors.RequestTimeout,
                                  f"request body not received within body_timeout_s={self.timeout_s}") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise BodyRefused(errors.RequestTooLarge,
                                      f"request body exceeds max_request_bytes={self.max_bytes}")
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        async def guarded_send(message: Message) -> None:
            await (closing(send) if refused else send)(message)

        await self.app(scope, guarded_receive, guarded_send)


def closing(send: Send) -> Send:
    """`send` with `Connection: close` added to the response head: the body is not read to its end."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return wrapped


def send_refusal_before_body(scope: Scope, send: Send, max_bytes: int) -> Send:
    """The `send` for an answer given before any body byte is read (401, 429 from headers alone).

    uvicorn keeps such a connection alive by reading and discarding the unread body. That is right for a
    body of at most `max_bytes` (the client gets its answer cleanly and keeps its connection) but not for
    one declared larger, or chunked with no declared size: the server would read an anonymous client's
    300 MB for nothing, as long as it sends. Those answers say `Connection: close` instead."""
    headers = Headers(scope=scope)
    declared = headers.get("content-length")
    unbounded = "transfer-encoding" in headers or (
        declared is not None and (not declared.strip().isdigit() or int(declared) > max_bytes))
    return closing(send) if unbounded else send
