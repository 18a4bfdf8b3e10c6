"""HTTP edge: the app factory wraps one Engine (service.engine) in routers, security, admission and metrics.

The HTTP layer sees only the Engine and, through it, the ScorerBackend Protocol (built by
service.backends.build_backend), so the same app serves the embedded model on a laptop and Triton in
production.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI

from service import __version__
from service.api import error_handlers, openapi, security
from service.api.admission import AdmissionMiddleware
from service.api.body_limits import BodyGuardMiddleware
from service.api.metrics_middleware import CancelOnDisconnect, MetricsMiddleware
from service.config import Settings, get_settings
from service.contract import ScorerBackend
from service.engine.engine import Engine

log = logging.getLogger("service")


def create_app(settings: Settings | None = None, backend: ScorerBackend | None = None,
               engine: Engine | None = None) -> FastAPI:
    """An app around `engine` (or a new Engine built from settings/backend), started and closed by its lifespan."""
    engine = engine or Engine(settings or get_settings(), backend)
    metrics = engine.metrics

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        yield
        await engine.close()
        await security.close_limiter(app)

    app = FastAPI(title="AesRM reward service", version=__version__, lifespan=lifespan,
                  description="Pairwise video preference scoring (VA / VF / VP) for GRPO rewards and ranking.",
                  docs_url=None, redoc_url=None)  # /docs from local assets: service/api/routes_docs.py
    app.state.engine = engine
    error_handlers.install_handlers(app, on_error=lambda code: metrics.errors.labels(code).inc())
    from service.api import routes_docs, routes_explain, routes_groups, routes_health, routes_score, routes_web

    for module in (routes_score, routes_groups, routes_explain, routes_health, routes_web, routes_docs):
        app.include_router(module.router)
    # outermost last: metrics -> auth (headers only) -> body size/deadline -> admission -> cancel on
    # disconnect -> routes
    app.add_middleware(CancelOnDisconnect, metrics=metrics, prefixes=("/v1/pair", "/v1/group"))
    app.add_middleware(AdmissionMiddleware, max_in_flight=engine.settings.max_in_flight,
                       max_request_bytes=engine.settings.max_request_bytes, metrics=metrics)
    app.add_middleware(BodyGuardMiddleware, max_bytes=engine.settings.max_request_bytes,
                       timeout_s=engine.settings.body_timeout_s, metrics=metrics)
    app.add_middleware(security.AuthMiddleware, settings=engine.settings, metrics=metrics)
    openapi.install(app, engine.settings)
    static_paths = frozenset(p for p in app.openapi()["paths"] if "{" not in p)
    app.add_middleware(MetricsMiddleware, metrics=metrics, static_paths=static_paths)
    return app


def main() -> None:
    import uvicorn

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
