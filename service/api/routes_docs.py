"""`/docs` (Swagger UI) served entirely from this package, so the page works offline / air-gapped.

FastAPI's default page loads Swagger UI's JS and CSS from a CDN and its favicon from fastapi.tiangolo.com:
without internet it is blank. The assets are swagger-ui-dist (the Swagger UI project's own npm build),
vendored unmodified in service/web/swagger/ (version and checksums in VERSION.txt). ReDoc is switched off in
the app factory: it has the same CDN problem and /docs covers it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from service import errors

router = APIRouter(include_in_schema=False)
SWAGGER_DIR = Path(__file__).resolve().parent.parent / "web" / "swagger"
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8"}


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url, title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js", swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
        swagger_favicon_url="data:,",  # no favicon request at all (the default points at fastapi.tiangolo.com)
        swagger_ui_parameters={"validatorUrl": None})  # never ask swagger.io's online validator


@router.get("/docs/assets/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise errors.PathNotFound(f"no docs asset {name!r}")
    # versioned, unmodified upstream files: cache for a day
    return FileResponse(SWAGGER_DIR / name, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})
