"""Application factory: wires settings -> metrics -> backend -> cache -> pipeline -> routes.

The HTTP layer sees only the ScorerBackend Protocol (built by service.backends.build_backend), so the
same app serves the embedded model on a laptop and Triton in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service import __version__, errors, security
from service.admission import AdmissionMiddleware
from service.backends import build_backend
from service.cache import build_cache
from service.config import Settings, get_settings
from service.contract import ScorerBackend
from service.lifecycle import stop_tasks
from service.metrics import Metrics
from service.reward import RewardService
from service.scoring import ScoringPipeline

log = logging.getLogger("service")


class MetricsMiddleware:
    """Latency per route template (not raw path, to keep label cardinality bounded) and in-flight gauge."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.request_duration.labels(path, scope["method"], str(status["code"])).observe(
                time.perf_counter() - started)


class AppState:
    """Everything a route needs, built once per app."""

    def __init__(self, settings: Settings, backend: ScorerBackend, metrics: Metrics) -> None:
        self.settings, self.backend, self.metrics = settings, backend, metrics
        self.cache = build_cache(settings, metrics)
        self.pipeline = ScoringPipeline(settings, backend, self.cache, metrics)
        self.reward = RewardService(settings, self.pipeline, metrics)
        from service.explain import ExplainService  # slow explanation path: own queue, workers, job store

        self.explain = ExplainService(settings, backend, self.cache, metrics)
        self.backend_started = False
        self._starter: asyncio.Task | None = None

    async def start_backend(self) -> None:
        """Start the backend; if it is not reachable yet (Triton still loading), keep trying in the
        background while /health/ready says 503."""
        try:
            await self.backend.start()
            self.backend_started = True
        except Exception as exc:  # noqa: BLE001 - any start failure means "not ready", not "crash"
            log.warning("backend %s not started: %s; retrying in background", self.backend.name, exc)
            self._starter = asyncio.create_task(self._retry_start())

    async def _retry_start(self) -> None:
        delay = 1.0
        while not self.backend_started:
            await asyncio.sleep(delay)
            try:
                await self.backend.start()
                self.backend_started = True
                log.info("backend %s started", self.backend.name)
            except Exception as exc:  # noqa: BLE001
                log.warning("backend start retry failed: %s", exc)
                delay = min(delay * 2, 15.0)

    async def ready(self) -> bool:
        ok = self.backend_started and await self.backend.ready()
        self.metrics.backend_ready.set(1 if ok else 0)
        return ok

    async def close(self) -> None:
        await stop_tasks([self._starter])
        with contextlib.suppress(Exception):
            await self.explain.close()
        with contextlib.suppress(Exception):
            await self.backend.close()
        await self.cache.close()
        self.pipeline.close()


def create_app(settings: Settings | None = None, backend: ScorerBackend | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()
    backend = backend or build_backend(settings, metrics)
    state = AppState(settings, backend, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start_backend()
        state.explain.start()
        yield
        await state.close()
        await security.close_limiter(app)

    app = FastAPI(title="AesRM reward service", version=__version__, lifespan=lifespan,
                  description="Pairwise video preference scoring (VA / VF / VP) for GRPO rewards and ranking.")
    app.state.aesrm = state
    errors.install_handlers(app, on_error=lambda code: metrics.errors.labels(code).inc())
    from service.api import routes_explain, routes_health, routes_score, routes_web

    app.include_router(routes_score.router)
    app.include_router(routes_explain.router)
    app.include_router(routes_health.router)
    app.include_router(routes_web.router)
    app.add_middleware(AdmissionMiddleware, max_in_flight=settings.max_in_flight, metrics=metrics)
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
