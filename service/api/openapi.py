"""The OpenAPI document with the deployment's own limits filled in (the models cannot know settings).

VideoRef's base64 alternative gets `maxLength` = the longest base64 of max_video_bytes, so generated clients
and schema-based testers know the bound the server enforces (service.ingest.sources.from_base64).
"""

from __future__ import annotations

from fastapi import FastAPI

from service.config import Settings
from service.ingest.sources import base64_max_chars


def install(app: FastAPI, settings: Settings) -> None:
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        ref = schema.get("components", {}).get("schemas", {}).get("VideoRef", {})
        for alt in ref.get("oneOf", []):
            if "base64" in alt.get("properties", {}):
                alt["properties"]["base64"]["maxLength"] = base64_max_chars(settings.max_video_bytes)
        return schema

    app.openapi = openapi
