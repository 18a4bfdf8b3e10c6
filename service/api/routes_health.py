"""Liveness, readiness (backend + model loaded), Prometheus metrics, model info."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import errors
from service.security import require_api_key, require_key_for_health, require_key_for_metrics
from service.schemas import ModelInfo

router = APIRouter()


@router.get("/health/live", tags=["health"], dependencies=[Depends(require_key_for_health)])
async def live() -> dict:
    return {"status": "live"}


@router.get("/health/ready", tags=["health"], dependencies=[Depends(require_key_for_health)])
async def ready(request: Request) -> JSONResponse:
    state = request.app.state.aesrm
    ok = await state.ready()
    body = {"status": "ready" if ok else "not_ready", "backend": state.backend.name}
    if ok:
        body["model"] = state.reward.model_info().model_dump()
    return JSONResponse(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "2"})


@router.get("/metrics", tags=["health"], dependencies=[Depends(require_key_for_metrics)])
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.aesrm.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/model", response_model=ModelInfo, tags=["scoring"], dependencies=[Depends(require_api_key)])
async def model(request: Request) -> ModelInfo:
    state = request.app.state.aesrm
    if not await state.ready():
        raise errors.BackendUnavailable("backend not ready")
    return state.reward.model_info()
