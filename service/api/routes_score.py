"""Reward routes: pairwise and group scoring, as JSON (base64 / paths / URLs) or multipart uploads."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service import errors
from service.api.security import require_api_key
from service.api.state import get_engine
from service.api.uploads import read_upload
from service.engine.engine import Engine
from service.schemas import ErrorResponse, GroupOptions, GroupRequest, GroupResponse, PairRequest, PairResponse

router = APIRouter(prefix="/v1", tags=["scoring"], dependencies=[Depends(require_api_key)])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 408, 413, 422, 429, 502, 503, 504)}


async def _json_body(request: Request, model: type[BaseModel]):
    """Validate the raw body bytes straight into `model` (pydantic-core parses the JSON): a cache hit on two
    480p videos otherwise spends most of its time in json.loads building a dict that is then re-validated."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None


def _json(res: BaseModel) -> Response:
    """Serialize the engine's already-typed response once (pydantic-core), without FastAPI validating it
    again against `response_model` (which stays declared for the OpenAPI schema)."""
    return Response(res.model_dump_json(), media_type="application/json")


def _body_doc(model: type[BaseModel]) -> dict:
    """OpenAPI request body for a route that parses its body itself (definitions inlined)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(x):
        if isinstance(x, dict):
            ref = x.get("$ref", "")
            return inline(defs[ref.rsplit("/", 1)[-1]]) if ref.startswith("#/$defs/") else {
                k: inline(v) for k, v in x.items()}
        return [inline(v) for v in x] if isinstance(x, list) else x

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


@router.post("/pair", response_model=PairResponse, responses=_ERRORS, openapi_extra=_body_doc(PairRequest))
async def score_pair(request: Request, engine: Engine = Depends(get_engine)) -> Response:
    """P(A preferred over B) per dimension for two videos given as base64 or allowed paths."""
    body = await _json_body(request, PairRequest)
    return _json(await engine.pair(body.a, body.b, body.both_orders))


@router.post("/pair/upload", response_model=PairResponse, responses=_ERRORS)
async def score_pair_upload(a: UploadFile = File(...), b: UploadFile = File(...),
                            both_orders: bool | None = Form(None),
                            engine: Engine = Depends(get_engine)) -> Response:
    """Same as /v1/pair with the two files uploaded as multipart parts `a` and `b`."""
    limit = engine.settings.max_video_bytes
    return _json(await engine.pair(await read_upload(a, limit, "a"), await read_upload(b, limit, "b"), both_orders))


@router.post("/group", response_model=GroupResponse, responses=_ERRORS, openapi_extra=_body_doc(GroupRequest))
async def score_group(request: Request, engine: Engine = Depends(get_engine)) -> Response:
    """Per-video rewards for a GRPO group: all pairs (both orders by default), aggregated by
    Bradley-Terry or win-rate; or each candidate against `reference`. Bad items get an error entry."""
    body = await _json_body(request, GroupRequest)
    return _json(await engine.group(body.videos, [v.id for v in body.videos], body.reference,
                                    body.aggregation, body.both_orders))


@router.post("/group/upload", response_model=GroupResponse, responses=_ERRORS)
async def score_group_upload(videos: list[UploadFile] = File(..., min_length=1),
                             reference: UploadFile | None = File(None),
                             options: str = Form("{}", description="GroupOptions as JSON"),
                             engine: Engine = Depends(get_engine)) -> Response:
    """Same as /v1/group with the candidates uploaded as repeated `videos` parts."""
    try:
        opts = GroupOptions.model_validate(json.loads(options))
    except (ValueError, TypeError) as exc:
        raise errors.InvalidRequest(f"options: {str(exc)[:300]}") from exc
    settings = engine.settings
    if len(videos) > settings.max_group_size:
        raise errors.GroupSize(f"group size {len(videos)} > max_group_size={settings.max_group_size}")
    items = [await read_upload(v, settings.max_video_bytes, n) for n, v in enumerate(videos)]
    ref = await read_upload(reference, settings.max_video_bytes, "reference") if reference is not None else None
    return _json(await engine.group(items, [v.filename for v in videos], ref, opts.aggregation, opts.both_orders))
