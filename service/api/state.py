"""Typed accessors for what the app holds, for route handlers and dependencies (`Depends(get_engine)`).

The app holds exactly one thing, the Engine; everything else (settings, metrics, explanations) hangs off it.
"""

from __future__ import annotations

from fastapi import Request

from service.config import Settings
from service.engine.engine import Engine


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def app_settings(request: Request) -> Settings:
    return request.app.state.engine.settings
