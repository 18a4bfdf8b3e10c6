"""Every error leaves the HTTP service through here, so codes, headers and the error counter stay consistent.

ServiceError -> its status and code (Retry-After on 429/503/504, WWW-Authenticate on 401); schema errors ->
422 invalid_request with details; Starlette's 404/405 -> not_found / method_not_allowed (405 keeps its Allow
header); body limits (service.api.body_limits) -> request_too_large / request_timeout; other HTTPExceptions ->
http_error; anything else -> 500 internal (a bug: never the answer to bad input).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import ServiceError, retry_after_s


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout", 413: "request_too_large"}


def _allowed(request: Request) -> str | None:
    """The methods documented for this path in the app's OpenAPI paths, where the most specific template
    wins (`/v1/explain/upload`: POST, not also `/v1/explain/{job_id}`'s GET, DELETE). Starlette's own Allow
    names only the first matching route's methods. None for paths outside the schema."""
    parts = request.scope["path"].rstrip("/").split("/")
    best: tuple[int, list[str]] | None = None
    for template, ops in request.app.openapi().get("paths", {}).items():
        pattern = template.rstrip("/").split("/")
        if len(pattern) != len(parts) or any(p != q and not p.startswith("{") for p, q in zip(pattern, parts)):
            continue
        params = sum(p.startswith("{") for p in pattern)
        if best is None or params < best[0]:
            best = (params, [m for m in _METHODS if m.lower() in ops])
    return ", ".join(best[1]) if best else None


def error_response(exc: ServiceError) -> JSONResponse:
    headers = {}
    retry = retry_after_s(exc)
    if retry is not None:
        headers["Retry-After"] = str(max(1, round(retry)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="aesrm"'
    return JSONResponse({"error": exc.payload()}, status_code=exc.status, headers=headers)


def install_handlers(app: FastAPI, on_error: Callable[[str], None] | None = None) -> None:
    def note(code: str) -> None:
        if on_error is not None:
            on_error(code)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        note(exc.code)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        note("invalid_request")
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        body = {"error": {"code": "invalid_request", "message": "request does not match schema", "details": details}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _HTTP_CODES.get(exc.status_code, "http_error")
        note(code)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request) or headers.get("Allow", "")  # RFC 9110: required on 405
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code,
                            headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        note("internal")
        return JSONResponse({"error": {"code": "internal", "message": type(exc).__name__}}, status_code=500)
