"""Python SDK for the AesRM gateway (httpx, sync and async), aimed at GRPO workers and tools.

Why it exists: workers should not hand-roll multipart bodies, base64, retries and error parsing. Inputs
are bytes (a container file or .npy), a local ``Path`` (read and uploaded), a uint8 [T,H,W,3]
``numpy.ndarray`` (sent as raw .npy, skipping encode/decode), or an explicit ``ServerPath`` / ``VideoURL``
the *server* resolves. Results are the service's own pydantic models (``service.schemas``); a bad item
in a group is an ``error`` field on that item, a failed request raises ``AesRMError``. Only transient
failures (connection errors, 429 overloaded, 503, 504) are retried, with backoff honouring Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import httpx
import numpy as np

from service.explain.schemas import TERMINAL as TERMINAL_JOB
from service.explain.schemas import JobAccepted, JobInfo
from service.schemas import GroupResponse, ModelInfo, PairResponse

__all__ = ["AesRMClient", "AsyncAesRMClient", "AesRMError", "ServerPath", "VideoURL", "VideoInput",
           "RetryPolicy", "TRANSIENT_STATUS"]

TRANSIENT_STATUS = frozenset({503, 504})
"""Statuses always retried; 429 is retried only for code ``overloaded`` (capacity, not a quota)."""


@dataclass(frozen=True)
class ServerPath:
    """A path the server reads itself (must lie under its AESRM_ALLOWED_ROOTS); nothing is uploaded."""

    path: str


@dataclass(frozen=True)
class VideoURL:
    """An http(s) URL the server fetches (needs AESRM_URL_INGEST on the server)."""

    url: str


VideoInput = Union[bytes, bytearray, memoryview, Path, np.ndarray, dict, ServerPath, VideoURL]
"""dict: {view name: uint8 [T, H, W, 3]}, the views service.client.frames.prepare makes for a multi-view model."""


class AesRMError(Exception):
    """A whole request failed: service error code, HTTP status (0 = no response), message."""

    def __init__(self, code: str, status: int, message: str, item: str | int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code} ({status}): {message}" + (f" [item {item}]" if item is not None else ""))
        self.code, self.status, self.message, self.item, self.retry_after = code, status, message, item, retry_after

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status in TRANSIENT_STATUS or (
            self.status == 429 and self.code == "overloaded")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of transient failures: exponential backoff with jitter, or Retry-After if given."""

    attempts: int = 4  # total tries, including the first
    backoff_s: float = 0.25
    max_backoff_s: float = 10.0

    def delay(self, attempt: int, err: AesRMError) -> float:
        if err.retry_after is not None:
            return min(err.retry_after, self.max_backoff_s)
        return min(self.backoff_s * 2 ** attempt, self.max_backoff_s) * (0.5 + random.random() / 2)


# ---------------------------------------------------------------- request building (shared, pure)

def _npy_bytes(frames: np.ndarray) -> bytes:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(frames), allow_pickle=False)
    return buf.getvalue()


def _payload(x: VideoInput, n: int | str) -> tuple[str, bytes] | ServerPath | VideoURL:
    """(filename, bytes) for anything we upload; ServerPath/VideoURL are passed through."""
    if isinstance(x, (ServerPath, VideoURL)):
        return x
    if isinstance(x, str):
        raise TypeError("a str is ambiguous: pass pathlib.Path(...) to upload a local file or "
                        "ServerPath(...) for a server-side path")
    if isinstance(x, Path):
        return x.name, x.read_bytes()
    if isinstance(x, np.ndarray):
        return f"{n}.npy", _npy_bytes(x)
    if isinstance(x, dict):  # prepared views: one uncompressed .npz
        from service.client.frames import npy_bytes

        bad = {k: (v.dtype, v.shape) for k, v in x.items() if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3}
        if bad:
            raise ValueError(f"every view must be uint8 [T,H,W,3], got {bad}")
        return f"{n}.npz", npy_bytes(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return f"{n}.bin", bytes(x)
    raise TypeError(f"unsupported video input {type(x).__name__}")


def _ref(p, ident: str | None) -> dict:
    if isinstance(p, ServerPath):
        ref = {"path": p.path}
    elif isinstance(p, VideoURL):
        ref = {"url": p.url}
    else:
        ref = {"base64": base64.b64encode(p[1]).decode()}
    if ident is not None:
        ref["id"] = ident
    return ref


def _uploadable(payloads) -> bool:
    return all(isinstance(p, tuple) for p in payloads)


def _pair_req(a: VideoInput, b: VideoInput, both_orders: bool | None) -> dict:
    pa, pb = _payload(a, "a"), _payload(b, "b")
    if _uploadable([pa, pb]):
        data = {} if both_orders is None else {"both_orders": str(bool(both_orders)).lower()}
        return {"url": "/v1/pair/upload", "files": [("a", pa), ("b", pb)], "data": data}
    return {"url": "/v1/pair", "json": {"a": _ref(pa, None), "b": _ref(pb, None), "both_orders": both_orders}}


def _group_req(videos: Sequence[VideoInput], ids: Sequence[str] | None, reference: VideoInput | None,
               aggregation: str, both_orders: bool | None) -> dict:
    if ids is not None and len(ids) != len(videos):
        raise ValueError("ids must have one entry per video")
    ps = [_payload(v, n) for n, v in enumerate(videos)]
    if ids is not None:  # the upload route echoes the filename as the id
        ps = [(str(i), p[1]) if isinstance(p, tuple) else p for i, p in zip(ids, ps)]
    ref = _payload(reference, "reference") if reference is not None else None
    opts = {"aggregation": aggregation, "both_orders": both_orders}
    if _uploadable(ps + ([ref] if ref is not None else [])):
        files = [("videos", p) for p in ps] + ([("reference", ref)] if ref is not None else [])
        return {"url": "/v1/group/upload", "files": files, "data": {"options": json.dumps(opts)}}
    body = {"videos": [_ref(p, (ids[n] if ids is not None else (p[0] if isinstance(p, tuple) else None)))
                       for n, p in enumerate(ps)],
            "reference": _ref(ref, None) if ref is not None else None, **opts}
    return {"url": "/v1/group", "json": body}


def _explain_req(a: VideoInput, b: VideoInput) -> dict:
    pa, pb = _payload(a, "a"), _payload(b, "b")
    if _uploadable([pa, pb]):
        return {"url": "/v1/explain/upload", "files": [("a", pa), ("b", pb)]}
    return {"url": "/v1/explain", "json": {"a": _ref(pa, None), "b": _ref(pb, None)}}


def _raise_for(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    try:
        body = r.json().get("error", {})
    except (ValueError, AttributeError):
        body = {}
    retry = r.headers.get("Retry-After")
    try:
        retry_s = float(retry) if retry is not None else None
    except ValueError:
        retry_s = None
    raise AesRMError(body.get("code", f"http_{r.status_code}"), r.status_code,
                     body.get("message", r.text[:300]), body.get("item"), retry_s)


def _transport_error(exc: httpx.TransportError) -> AesRMError:
    return AesRMError("connection_error", 0, f"{type(exc).__name__}: {exc}")


class _SSE:
    """Incremental server-sent-events parser: feed lines, get (event, data) with JSON data decoded."""

    def __init__(self) -> None:
        self.event, self.data = "message", []

    def feed(self, line: str) -> tuple[str, Any] | None:
        if line == "":
            out = None
            if self.data:
                raw = "\n".join(self.data)
                try:
                    out = (self.event, json.loads(raw))
                except ValueError:
                    out = (self.event, raw)
            self.event, self.data = "message", []
            return out
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        return None  # comments (":") and other fields are ignored


def _headers(api_key: str | None) -> dict:
    h = {"User-Agent": "aesrm-sdk/0.1"}
    if api_key:
        h["Authorization"] = f"Bearer {api_key}"
    return h


Aggregation = Literal["bradley_terry", "win_rate"]


# ---------------------------------------------------------------- sync client

class AesRMClient:
    """Blocking client. ``with AesRMClient("http://host:8000") as c: c.pair(a, b).preference.overall``."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy = RetryPolicy(),
                 transport: httpx.BaseTransport | None = None) -> None:
        self.retry = retry
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> "AesRMClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, url: str, **kw) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            try:
                r = self._http.request(method, url, **kw)
                _raise_for(r)
                return r
            except httpx.TransportError as exc:
                err = _transport_error(exc)
            except AesRMError as exc:
                err = exc
            if not err.transient or attempt + 1 >= self.retry.attempts:
                raise err
            time.sleep(self.retry.delay(attempt, err))
        raise AssertionError("unreachable")

    def pair(self, a: VideoInput, b: VideoInput, *, both_orders: bool | None = None) -> PairResponse:
        """P(A preferred over B) per dimension, plus logits, criteria and timings."""
        req = _pair_req(a, b, both_orders)
        return PairResponse.model_validate(self._call("POST", req.pop("url"), **req).json())

    def group(self, videos: Sequence[VideoInput], *, ids: Sequence[str] | None = None,
              reference: VideoInput | None = None, aggregation: Aggregation = "bradley_terry",
              both_orders: bool | None = None) -> GroupResponse:
        """One reward per video (``results[i].reward``); a bad video gets ``results[i].error``."""
        req = _group_req(videos, ids, reference, aggregation, both_orders)
        return GroupResponse.model_validate(self._call("POST", req.pop("url"), **req).json())

    def model(self) -> ModelInfo:
        return ModelInfo.model_validate(self._call("GET", "/v1/model").json())

    def ready(self) -> bool:
        """True when the server can score now: gateway ready and its backend (e.g. Triton) ready too."""
        try:
            return _scoring_ready(self._http.get("/health/ready"))
        except httpx.TransportError:
            return False

    def explain_submit(self, a: VideoInput, b: VideoInput) -> JobAccepted:
        """Queue an explanation job (identical requests may reuse a job: ``reused``)."""
        req = _explain_req(a, b)
        return JobAccepted.model_validate(self._call("POST", req.pop("url"), **req).json())

    def explain_status(self, job_id: str) -> JobInfo:
        """Job status; ``result`` (an ``ExplainResult``) once ``status == "succeeded"``."""
        return JobInfo.model_validate(self._call("GET", f"/v1/explain/{job_id}").json())

    def explain_cancel(self, job_id: str) -> None:
        self._call("DELETE", f"/v1/explain/{job_id}")

    def explain_events(self, job_id: str) -> Iterator[tuple[str, Any]]:
        """Follow the job's server-sent events as (event, data) until the stream ends."""
        with self._http.stream("GET", f"/v1/explain/{job_id}/events",
                               headers={"Accept": "text/event-stream"}) as r:
            if r.status_code >= 400:
                r.read()
                _raise_for(r)
            sse = _SSE()
            for line in r.iter_lines():
                if (ev := sse.feed(line)) is not None:
                    yield ev

    def explain(self, a: VideoInput, b: VideoInput, *, timeout: float = 300.0, poll_s: float = 0.5) -> JobInfo:
        """Submit and poll until the job is terminal (succeeded/failed/cancelled/expired)."""
        job_id = self.explain_submit(a, b).job_id
        deadline = time.monotonic() + timeout
        while (job := self.explain_status(job_id)).status not in TERMINAL_JOB:
            if time.monotonic() > deadline:
                raise AesRMError("client_timeout", 0, f"explanation {job_id} not done in {timeout}s")
            time.sleep(poll_s)
        return job


# ---------------------------------------------------------------- async client

class AsyncAesRMClient:
    """asyncio client with the same methods as ``AesRMClient`` (awaitable)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy = RetryPolicy(),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.retry = retry
        self._http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout,
                                       transport=transport)

    async def __aenter__(self) -> "AsyncAesRMClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, url: str, **kw) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            try:
                r = await self._http.request(method, url, **kw)
                _raise_for(r)
                return r
            except httpx.TransportError as exc:
                err = _transport_error(exc)
            except AesRMError as exc:
                err = exc
            if not err.transient or attempt + 1 >= self.retry.attempts:
                raise err
            await asyncio.sleep(self.retry.delay(attempt, err))
        raise AssertionError("unreachable")

    async def pair(self, a: VideoInput, b: VideoInput, *, both_orders: bool | None = None) -> PairResponse:
        req = _pair_req(a, b, both_orders)
        return PairResponse.model_validate((await self._call("POST", req.pop("url"), **req)).json())

    async def group(self, videos: Sequence[VideoInput], *, ids: Sequence[str] | None = None,
                    reference: VideoInput | None = None, aggregation: Aggregation = "bradley_terry",
                    both_orders: bool | None = None) -> GroupResponse:
        req = _group_req(videos, ids, reference, aggregation, both_orders)
        return GroupResponse.model_validate((await self._call("POST", req.pop("url"), **req)).json())

    async def model(self) -> ModelInfo:
        return ModelInfo.model_validate((await self._call("GET", "/v1/model")).json())

    async def ready(self) -> bool:
        """True when the server can score now: gateway ready and its backend (e.g. Triton) ready too."""
        try:
            return _scoring_ready(await self._http.get("/health/ready"))
        except httpx.TransportError:
            return False

    async def explain_submit(self, a: VideoInput, b: VideoInput) -> JobAccepted:
        req = _explain_req(a, b)
        return JobAccepted.model_validate((await self._call("POST", req.pop("url"), **req)).json())

    async def explain_status(self, job_id: str) -> JobInfo:
        return JobInfo.model_validate((await self._call("GET", f"/v1/explain/{job_id}")).json())

    async def explain_cancel(self, job_id: str) -> None:
        await self._call("DELETE", f"/v1/explain/{job_id}")

    async def explain_events(self, job_id: str) -> AsyncIterator[tuple[str, Any]]:
        async with self._http.stream("GET", f"/v1/explain/{job_id}/events",
                                     headers={"Accept": "text/event-stream"}) as r:
            if r.status_code >= 400:
                await r.aread()
                _raise_for(r)
            sse = _SSE()
            async for line in r.aiter_lines():
                if (ev := sse.feed(line)) is not None:
                    yield ev

    async def explain(self, a: VideoInput, b: VideoInput, *, timeout: float = 300.0,
                      poll_s: float = 0.5) -> JobInfo:
        job_id = (await self.explain_submit(a, b)).job_id
        deadline = time.monotonic() + timeout
        while (job := await self.explain_status(job_id)).status not in TERMINAL_JOB:
            if time.monotonic() > deadline:
                raise AesRMError("client_timeout", 0, f"explanation {job_id} not done in {timeout}s")
            await asyncio.sleep(poll_s)
        return job


def _scoring_ready(r: httpx.Response) -> bool:
    """/health/ready is 200 while a gateway can take traffic even if its remote backend is down (it then
    answers 503 per request); `backend_ready` in the body says whether scoring would succeed now."""
    if r.status_code != 200:
        return False
    try:
        return bool(r.json().get("backend_ready", True))
    except ValueError:
        return True
