"""Liveness, readiness (this gateway can take traffic), Prometheus metrics, model info."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import errors
from service.api.security import require_api_key, require_key_for_health, require_key_for_metrics
from service.api.state import get_engine
from service.engine.engine import Engine
from service.schemas import ErrorResponse, ModelInfo

router = APIRouter()


@router.get("/health/live", tags=["health"], dependencies=[Depends(require_key_for_health)])
async def live() -> dict:
    return {"status": "live"}


def backend_is_remote(engine: Engine) -> bool:
    """The model runs in another process (Triton). Its outage is answered per request with 503 + Retry-After
    and shown by aesrm_backend_ready; it must not make the gateway unready, or every replica leaves its
    Service at once and clients get connection errors instead."""
    return bool(getattr(engine.backend, "remote", False))


@router.get("/health/ready", tags=["health"], dependencies=[Depends(require_key_for_health)])
async def ready(engine: Engine = Depends(get_engine)) -> JSONResponse:
    """Can this gateway take traffic? An in-process model must be loaded; a remote backend's (Triton's) state
    is reported in `backend_ready` and aesrm_backend_ready but does not make the gateway unready."""
    backend_ok = await engine.ready()
    ok = backend_ok or backend_is_remote(engine)
    body = {"status": "ready" if ok else "not_ready", "backend": engine.backend.name, "backend_ready": backend_ok}
    if backend_ok:
        body["model"] = engine.model_info().model_dump()
    return JSONResponse(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "2"})


@router.get("/metrics", tags=["health"], dependencies=[Depends(require_key_for_metrics)])
async def metrics(engine: Engine = Depends(get_engine)) -> Response:
    await engine.ready()  # aesrm_backend_ready as of this scrape, probes or not
    return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/model", response_model=ModelInfo, tags=["scoring"], dependencies=[Depends(require_api_key)],
            responses={code: {"model": ErrorResponse} for code in (401, 429, 503)})
async def model(engine: Engine = Depends(get_engine)) -> ModelInfo:
    if not await engine.ready():
        raise errors.BackendUnavailable("backend not ready")
    return engine.model_info()
