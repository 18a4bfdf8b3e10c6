"""The product-team web page: `/` (the page) and `/static/<file>` (its JS/CSS), served from service/web.

Why a fixed allow-list instead of StaticFiles: the page is three files with no build step, and serving only
those names (from package data) rules out path tricks and keeps the routes visible in /docs.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service import errors

router = APIRouter(tags=["web"])
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_NO_CACHE = {"Cache-Control": "no-cache"}  # small files; always revalidate so a deploy shows at once


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_NO_CACHE)


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    if name not in _STATIC:
        raise errors.PathNotFound(f"no static file {name!r}")
    return FileResponse(WEB_DIR / name, media_type=_STATIC[name], headers=_NO_CACHE)
