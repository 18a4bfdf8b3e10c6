"""AesRM client SDK: ``AesRMClient`` / ``AsyncAesRMClient`` over HTTP, or ``in_process()`` on the embedded
default model without a server (same client, httpx ASGI transport, the app's lifespan run around it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from service.client.sdk import (TRANSIENT_STATUS, AesRMClient, AesRMError, AsyncAesRMClient, RetryPolicy,
                                ServerPath, VideoInput, VideoURL)

__all__ = ["AesRMClient", "AsyncAesRMClient", "AesRMError", "ServerPath", "VideoURL", "VideoInput",
           "RetryPolicy", "TRANSIENT_STATUS", "in_process"]


@contextlib.asynccontextmanager
async def in_process(settings=None, *, timeout: float = 300.0) -> AsyncIterator[AsyncAesRMClient]:
    """An ``AsyncAesRMClient`` talking to an app built in this process (settings from env by default)."""
    import httpx

    from service.api.app import create_app
    from service.config import Settings

    app = create_app(settings or Settings())  # fresh from env, not the process-wide cached settings
    async with app.router.lifespan_context(app):
        async with AsyncAesRMClient("http://in-process", timeout=timeout,
                                    transport=httpx.ASGITransport(app=app)) as client:
            yield client
