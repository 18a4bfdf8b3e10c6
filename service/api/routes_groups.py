"""Many GRPO groups per call: POST /v1/groups (JSON) and /v1/groups/upload (multipart).

A trainer's sampler batch (e.g. 8 prompts x 8 samples) goes in one request and is scored in one pipeline
run; the answer has one result per group, with per-group and per-item errors (service/engine/groups.py).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, File, Form, UploadFile

from service import errors
from service.api.security import require_api_key
from service.api.state import get_engine
from service.api.uploads import read_upload
from service.engine.engine import Engine
from service.engine.groups import GroupInput, max_videos
from service.schemas import ErrorResponse, GroupsManifest, GroupsRequest, GroupsResponse

router = APIRouter(prefix="/v1", tags=["scoring"], dependencies=[Depends(require_api_key)])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 408, 413, 422, 429, 502, 503, 504)}


@router.post("/groups", response_model=GroupsResponse, responses=_ERRORS)
async def score_groups(body: GroupsRequest, engine: Engine = Depends(get_engine)) -> GroupsResponse:
    """Per-video rewards for several prompt groups at once (each group as in /v1/group). A group that
    cannot be scored gets `error`; its neighbours are still scored."""
    groups = [GroupInput(g.id, list(g.videos), [v.id for v in g.videos], g.reference) for g in body.groups]
    return await engine.groups(groups, body.aggregation, body.both_orders)


@router.post("/groups/upload", response_model=GroupsResponse, responses=_ERRORS)
async def score_groups_upload(videos: list[UploadFile] = File(...),
                              manifest: str = Form(..., description="GroupsManifest as JSON"),
                              engine: Engine = Depends(get_engine)) -> GroupsResponse:
    """/v1/groups with the videos uploaded as repeated `videos` parts: for each manifest group in order,
    its `count` candidates, then its reference part when `reference` is true."""
    try:
        spec = GroupsManifest.model_validate(json.loads(manifest))
    except (ValueError, TypeError) as exc:
        raise errors.InvalidRequest(f"manifest: {str(exc)[:300]}") from exc
    want = sum(g.count + g.reference for g in spec.groups)
    if want != len(videos):
        raise errors.InvalidRequest(f"manifest announces {want} parts, request has {len(videos)}")
    limit = max_videos(engine.settings)
    if want > limit:
        raise errors.GroupSize(f"{want} videos in one request > {limit}")
    groups, pos, size = [], 0, engine.settings.max_video_bytes
    for g in spec.groups:
        parts = videos[pos:pos + g.count]
        data = [await read_upload(v, size, f"{g.id}/{n}") for n, v in enumerate(parts)]
        pos += g.count
        ref = None
        if g.reference:
            ref = await read_upload(videos[pos], size, f"{g.id}/reference")
            pos += 1
        groups.append(GroupInput(g.id, data, [v.filename for v in parts], ref))
    return await engine.groups(groups, spec.aggregation, spec.both_orders)
