"""Explanation routes (slow path): submit -> 202 + job id; poll; Server-Sent Events; cancel.

Jobs run on the explanation service's own queue and workers (service/explain/worker.py); nothing here
blocks a fast reward route. State lives in the job store (Redis when configured), so any replica answers.
"""

from __future__ import annotations

import re

import orjson
from fastapi import APIRouter, Depends, File, Header, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import errors
from service.api.security import require_api_key
from service.api.state import get_engine
from service.api.uploads import read_upload
from service.engine.engine import Engine
from service.explain.jobs import CURSOR_PATTERN, JOB_ID_PATTERN, MAX_EVENT_INDEX
from service.explain.schemas import ExplainRequest, JobAccepted, JobInfo, job_info, job_links
from service.schemas import ErrorResponse

router = APIRouter(prefix="/v1/explain", tags=["explanations"], dependencies=[Depends(require_api_key)])
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 408, 409, 413, 422, 429, 503)}
JobId = Path(..., pattern=JOB_ID_PATTERN, description="The job id from POST /v1/explain (32 hex digits); "
                                                       "malformed -> 422, unknown or expired -> 404.")


async def _submit(engine: Engine, a, b, ids: tuple[str | None, str | None]) -> JSONResponse:
    rec, created = await engine.explain(a, b, ids)
    body = JobAccepted(job_id=rec["job_id"], status=rec["status"], reused=not created, links=job_links(rec["job_id"]))
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.links.self})


@router.post("", status_code=202, response_model=JobAccepted, responses=_ERRORS)
async def submit_explanation(body: ExplainRequest, engine: Engine = Depends(get_engine)) -> JSONResponse:
    """Queue an explanation of A vs B (base64 / allowed paths / URLs). Identical requests reuse the live job
    or its cached result (`reused: true`). 429 + Retry-After when the explanation queue is full."""
    return await _submit(engine, body.a, body.b, (body.a.id, body.b.id))


@router.post("/upload", status_code=202, response_model=JobAccepted, responses=_ERRORS)
async def submit_explanation_upload(a: UploadFile = File(...), b: UploadFile = File(...),
                                    engine: Engine = Depends(get_engine)) -> JSONResponse:
    """Same as POST /v1/explain with the two videos uploaded as multipart parts `a` and `b`."""
    limit = engine.settings.max_video_bytes
    return await _submit(engine, await read_upload(a, limit, "a"), await read_upload(b, limit, "b"),
                         (a.filename, b.filename))


@router.api_route("/upload", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def _upload_other_methods() -> None:
    """`/upload` is a resource of its own (POST only), not a job id for the `/{job_id}` routes below."""
    raise StarletteHTTPException(405)


def _resume_from(after: int | None, last_event_id: str) -> int:
    """Index of the first event to send: after `?after=`, else after `Last-Event-ID`, else from 0."""
    if after is not None:
        return after + 1
    if not last_event_id:
        return 0
    if not re.fullmatch(CURSOR_PATTERN, last_event_id.strip()):  # the Header pattern already says so
        raise errors.InvalidRequest(f"Last-Event-ID must be an event id in [-1, {MAX_EVENT_INDEX}]")
    return int(last_event_id) + 1


@router.get("/{job_id}", response_model=JobInfo, responses=_ERRORS)
async def get_explanation(job_id: str = JobId, engine: Engine = Depends(get_engine)) -> JobInfo:
    """Status (queued/running/succeeded/failed/cancelled) and, once succeeded, the result.
    404 job_not_found for unknown ids and for jobs past their TTL (the message says which)."""
    return job_info(await engine.explanations.get(job_id))


@router.delete("/{job_id}", response_model=JobInfo, responses=_ERRORS)
async def cancel_explanation(job_id: str = JobId, engine: Engine = Depends(get_engine)) -> JobInfo:
    """Cancel a queued or running job (idempotent on a cancelled one); 409 if it already finished."""
    return job_info(await engine.explanations.cancel(job_id))


@router.get("/{job_id}/events", responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS})
async def explanation_events(request: Request, job_id: str = JobId,
                             after: int | None = Query(None, ge=-1, le=MAX_EVENT_INDEX),
                             last_event_id: str = Header("", pattern=CURSOR_PATTERN),
                             engine: Engine = Depends(get_engine)) -> StreamingResponse:
    """Server-Sent Events, in order: `status` (queued, running), `progress` {stage, fraction}, `text` {chunk
    per criterion}, then `result` (the full result) or `error`, then `end` {status}. Each event has an
    `id`; reconnect with `Last-Event-ID` (or `?after=`) to resume without repeats. A cursor that is not
    an event id (-1 .. 999999999) is a 422."""
    stream = engine.explanations.stream(job_id, _resume_from(after, last_event_id))
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
