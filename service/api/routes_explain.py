"""Explanation routes (slow path): submit -> 202 + job id; poll; Server-Sent Events; cancel.

Jobs run on the explanation service's own queue and workers (service/explain/worker.py); nothing here
blocks a fast reward route. State lives in the job store (Redis when configured), so any replica answers.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, File, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from service import errors
from service.api.routes_score import _read
from service.explain.schemas import ExplainRequest, JobAccepted, JobInfo, JobLinks
from service.schemas import ErrorResponse
from service.security import require_api_key

router = APIRouter(prefix="/v1/explain", tags=["explanations"], dependencies=[Depends(require_api_key)])
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)}


def _svc(request: Request):
    return request.app.state.aesrm.explain


def _links(job_id: str) -> JobLinks:
    base = f"/v1/explain/{job_id}"
    return JobLinks(self=base, events=f"{base}/events", cancel=base)


async def _submit(request: Request, a, b, ids: tuple[str | None, str | None]) -> JSONResponse:
    state = request.app.state.aesrm
    loaded = await state.reward.fetch_all([a, b], ["a", "b"])  # same validation/limits as the fast path
    for x in loaded:
        if isinstance(x, errors.ServiceError):
            raise x
    meta = {"a": {"digest": loaded[0].digest, "id": ids[0]}, "b": {"digest": loaded[1].digest, "id": ids[1]}}
    rec, created = await state.explain.submit(loaded[0], loaded[1], meta)
    body = JobAccepted(job_id=rec["job_id"], status=rec["status"], reused=not created, links=_links(rec["job_id"]))
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.links.self})


@router.post("", status_code=202, response_model=JobAccepted, responses=_ERRORS)
async def submit_explanation(body: ExplainRequest, request: Request) -> JSONResponse:
    """Queue an explanation of A vs B (base64 / allowed paths / URLs). Identical requests reuse the live job
    or its cached result (`reused: true`). 429 + Retry-After when the explanation queue is full."""
    return await _submit(request, body.a, body.b, (body.a.id, body.b.id))


@router.post("/upload", status_code=202, response_model=JobAccepted, responses=_ERRORS)
async def submit_explanation_upload(request: Request, a: UploadFile = File(...),
                                    b: UploadFile = File(...)) -> JSONResponse:
    """Same as POST /v1/explain with the two videos uploaded as multipart parts `a` and `b`."""
    limit = request.app.state.aesrm.settings.max_video_bytes
    return await _submit(request, await _read(a, limit, "a"), await _read(b, limit, "b"), (a.filename, b.filename))


def _info(rec: dict) -> JobInfo:
    fields = {k: rec.get(k) for k in ("job_id", "status", "created_at", "updated_at", "started_at", "finished_at",
                                      "expires_at", "error", "result")}
    return JobInfo(**fields, links=_links(rec["job_id"]))


@router.get("/{job_id}", response_model=JobInfo, responses=_ERRORS)
async def get_explanation(job_id: str, request: Request) -> JobInfo:
    """Status (queued/running/succeeded/failed/cancelled) and, once succeeded, the result.
    404 job_not_found for unknown ids and for jobs past their TTL (the message says which)."""
    return _info(await _svc(request).get(job_id))


@router.delete("/{job_id}", response_model=JobInfo, responses=_ERRORS)
async def cancel_explanation(job_id: str, request: Request) -> JobInfo:
    """Cancel a queued or running job (idempotent on a cancelled one); 409 if it already finished."""
    return _info(await _svc(request).cancel(job_id))


@router.get("/{job_id}/events", responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS})
async def explanation_events(job_id: str, request: Request, after: int | None = Query(None, ge=-1),
                             last_event_id: str | None = Header(None)) -> StreamingResponse:
    """Server-Sent Events, in order: `status` (queued, running), `progress` {stage, fraction}, `text` {chunk
    per criterion}, then `result` (the full result) or `error`, then `end` {status}. Each event has an
    `id`; reconnect with `Last-Event-ID` (or `?after=`) to resume without repeats."""
    start = 0
    resume = after if after is not None else (int(last_event_id) if (last_event_id or "").isdigit() else None)
    if resume is not None:
        start = resume + 1
    svc = _svc(request)
    stream = svc.stream(job_id, start)
    first = await anext(stream, None)  # raises 404 now, before headers are sent

    async def body():
        item = first
        while item is not None:
            if await request.is_disconnected():
                return
            idx, ev = item
            if ev is None:
                yield b": keep-alive\n\n"
            else:
                yield b"id: %d\nevent: %s\ndata: %s\n\n" % (idx, ev["kind"].encode(), orjson.dumps(ev["data"]))
            item = await anext(stream, None)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
