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
from service.api import error_handlers, security
from service.api.admission import AdmissionMiddleware
from service.api.metrics_middleware import MetricsMiddleware
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
                  description="Pairwise video preference scoring (VA / VF / VP) for GRPO rewards and ranking.")
    app.state.engine = engine
    error_handlers.install_handlers(app, on_error=lambda code: metrics.errors.labels(code).inc())
    from service.api import routes_explain, routes_health, routes_score, routes_web

    for module in (routes_score, routes_explain, routes_health, routes_web):
        app.include_router(module.router)
    from service.api import routes_groups  # many GRPO groups per call

    app.include_router(routes_groups.router)
    app.add_middleware(AdmissionMiddleware, max_in_flight=engine.settings.max_in_flight, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def main() -> None:
    import uvicorn

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
