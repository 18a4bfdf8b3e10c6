"""The SDK's async surface served by an Engine in this process: no HTTP, no ASGI round trip.

The CLI's in-process mode uses it, so `aesrm score a.mp4 b.mp4` on a laptop runs the same engine code as the
server and shows the same response models; service errors surface as the SDK's AesRMError (code, status,
message, item), exactly as a server would report them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from service import errors
from service.client.sdk import AesRMError
from service.config import Settings
from service.engine.engine import Engine
from service.explain.schemas import JobAccepted, JobInfo, job_info, job_links
from service.schemas import GroupResponse, ModelInfo, PairResponse


def _as_input(x: Any) -> bytes:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, (str, Path)):
        return Path(x).read_bytes()
    raise TypeError(f"in-process inputs are file paths or bytes, not {type(x).__name__}")


def _sdk_error(exc: errors.ServiceError) -> AesRMError:
    return AesRMError(exc.code, exc.status, exc.message, exc.item, errors.retry_after_s(exc))


@contextlib.contextmanager
def _translated():
    try:
        yield
    except errors.ServiceError as exc:
        raise _sdk_error(exc) from None


class LocalClient:
    """pair / group / model / explain_submit / explain_status / explain_events, like AsyncAesRMClient."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def pair(self, a, b, *, both_orders: bool | None = None) -> PairResponse:
        with _translated():
            return await self.engine.pair(_as_input(a), _as_input(b), both_orders)

    async def group(self, videos: Sequence, *, ids: Sequence[str] | None = None, reference=None,
                    aggregation: str = "bradley_terry", both_orders: bool | None = None) -> GroupResponse:
        with _translated():
            ref = None if reference is None else _as_input(reference)
            return await self.engine.group([_as_input(v) for v in videos], list(ids) if ids else None, ref,
                                           aggregation, both_orders)

    async def model(self) -> ModelInfo:
        return self.engine.model_info()

    async def explain_submit(self, a, b) -> JobAccepted:
        with _translated():
            rec, created = await self.engine.explain(_as_input(a), _as_input(b))
        return JobAccepted(job_id=rec["job_id"], status=rec["status"], reused=not created,
                           links=job_links(rec["job_id"]))

    async def explain_status(self, job_id: str) -> JobInfo:
        with _translated():
            return job_info(await self.engine.explanations.get(job_id))

    async def explain_events(self, job_id: str) -> AsyncIterator[tuple[str, Any]]:
        with _translated():
            async for _, ev in self.engine.explanations.stream(job_id, 0):
                if ev is not None:  # None = keep-alive
                    yield ev["kind"], ev["data"]


@contextlib.asynccontextmanager
async def local_client(settings: Settings | None = None) -> AsyncIterator[LocalClient]:
    """An Engine started in this process (settings from the AESRM_* environment by default)."""
    async with Engine(settings or Settings()) as engine:
        for _ in range(600):  # the embedded model loads in start(); a remote backend may need a moment
            if await engine.ready():
                break
            await asyncio.sleep(0.1)
        yield LocalClient(engine)
