"""Fetch stage: turn each request input (uploaded bytes, base64, allowed path, URL) into a LoadedInput.

Limits and policy (size, allowed roots, URL guard) are applied here, the same for the fast reward path and
the explanation path. A bad item comes back as its ServiceError (not raised) so a group can report it per
item. Any other exception while reading one item is logged (it is a bug to fix) and also becomes that
item's 422: one odd input must never cost the whole group.
"""

from __future__ import annotations

import asyncio
import logging
import time

from service import errors
from service.config import Settings
from service.ingest.sources import LoadedInput, from_base64, from_bytes, load_ref
from service.metrics import Metrics
from service.schemas import VideoRef

log = logging.getLogger(__name__)
Input = VideoRef | bytes  # JSON reference or uploaded bytes
# base64 up to this size is decoded and hashed on the event loop (well under a millisecond): a thread hop
# per video would cost more than the work on a cache hit. Larger payloads and file paths go to a thread.
INLINE_BASE64_CHARS = 1 << 20


def _inline(item: Input) -> bool:
    """Read on the event loop without awaiting: uploaded bytes and small base64 (hashing them costs less
    than a task switch or a thread hop would)."""
    return isinstance(item, bytes) or (item.url is None and item.base64 is not None
                                       and len(item.base64) <= INLINE_BASE64_CHARS)


def _load_inline(item: Input, settings: Settings, label: str | int) -> LoadedInput:
    if isinstance(item, bytes):
        return from_bytes(item, settings.max_video_bytes, item=label)
    return from_base64(item.base64, settings.max_video_bytes, item=label)


async def _fetch_slow(item: VideoRef, settings: Settings, label: str | int) -> LoadedInput:
    """A URL, an allowed path or large base64: awaited (network) or read on a thread."""
    if item.url is not None:
        if not settings.url_ingest:
            raise errors.UnsupportedSource("url inputs are disabled (set AESRM_URL_INGEST)", item=label)
        from service.ingest.fetch_url import fetch_url  # only when URL ingest is on

        data = await fetch_url(item.url, settings, item=label)
        return from_bytes(data, settings.max_video_bytes, item=label)
    return await asyncio.to_thread(load_ref, item, settings, label)


def _settled(fn, *args) -> LoadedInput | Exception:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - sorted out per item by fetch_all, like gather's results
        return exc


async def fetch_all(items: list[Input], labels: list, settings: Settings,
                    metrics: Metrics) -> list[LoadedInput | errors.ServiceError]:
    """All inputs (the slow ones concurrently); per-item ServiceErrors are returned in place of the input."""
    t = time.perf_counter()
    # inline inputs are read in place (the cache-hit path of a base64 pair awaits nothing here: two gather
    # tasks cost more loop turns than the reading); paths and URLs run concurrently
    inline = [_inline(x) for x in items]
    got: list = [_settled(_load_inline, x, settings, lab) if ok else None for x, lab, ok in zip(items, labels, inline)]
    slow = [k for k, ok in enumerate(inline) if not ok]
    if slow:
        done = await asyncio.gather(*(_fetch_slow(items[k], settings, labels[k]) for k in slow),
                                    return_exceptions=True)
        for k, g in zip(slow, done):
            got[k] = g
    metrics.stage("ingest", time.perf_counter() - t)
    out: list[LoadedInput | errors.ServiceError] = []
    for g, label in zip(got, labels):
        if isinstance(g, BaseException) and not isinstance(g, Exception):
            raise g  # cancellation, interpreter exit
        if isinstance(g, Exception) and not isinstance(g, errors.ServiceError):
            log.error("reading input %s failed unexpectedly", label, exc_info=g)
            g = errors.InvalidRequest(f"input could not be read: {type(g).__name__}", item=label)
        out.append(g)
    return out
