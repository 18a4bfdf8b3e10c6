"""Backends for reliability tests and the local load stack.

`make_backend` returns the real embedded PyTorch backend when its model code/checkpoint is present, else
`StandInBackend`: a deterministic numpy scorer behind the *real* MicroBatcher (same bounded queue, same
inference thread, same timeouts), so admission/fault/load behaviour is exercised on the production path
even before the trained proxy lands. `DelayedBackend` wraps any backend with a fixed delay (slow backend).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import time

import numpy as np

from service.batching import MicroBatcher
from service.config import Settings
from service.contract import ModelContract, PairLogits
from service.metrics import Metrics

log = logging.getLogger(__name__)


def embedded_available() -> bool:
    return importlib.util.find_spec("service.model.checkpoint") is not None


class StandInBackend:
    """Antisymmetric image-statistics scorer (brightness, contrast, sharpness) with a tunable forward time."""

    name = "stand-in"

    def __init__(self, settings: Settings, metrics: Metrics | None = None, work_ms: float = 5.0) -> None:
        self._metrics = metrics or Metrics()
        self._work_s = work_ms / 1000.0
        self._batcher = MicroBatcher(self._forward, max_videos=settings.max_batch_videos,
                                     max_wait_ms=settings.max_batch_wait_ms, queue_size=settings.queue_size,
                                     metrics=self._metrics)
        self._contract = ModelContract(model_id="aesrm-standin", model_version="0", frames=8, height=64,
                                       width=64, checkpoint="stand-in", trained=False, antisymmetric=True)

    async def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    def contract(self) -> ModelContract:
        return self._contract

    async def ready(self) -> bool:
        return self._batcher.running

    async def score(self, videos: np.ndarray, pairs: np.ndarray) -> PairLogits:
        return await self._batcher.submit(videos, pairs)

    def _forward(self, videos: np.ndarray, pairs: np.ndarray) -> PairLogits:
        x = videos.astype(np.float32) / 255.0
        feats = np.stack([x.mean(axis=(1, 2, 3, 4)), x.std(axis=(1, 2, 3, 4)),
                          np.abs(np.diff(x, axis=3)).mean(axis=(1, 2, 3, 4))], axis=1)
        # a model's cost grows with the batch; sleep (GIL released) like a torch/GPU forward, so the decode
        # threads are not starved by a Python busy loop that no real backend would run
        time.sleep(self._work_s * len(videos))
        dim = (feats[pairs[:, 0]] - feats[pairs[:, 1]]) * 10.0
        return PairLogits(dim.astype(np.float32), None)


class DelayedBackend:
    """Delegates to a real backend after `delay_s` (a slow GPU, a congested Triton)."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.name = f"delayed-{inner.name}"
        self.calls = self.cancelled = 0

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def contract(self) -> ModelContract:
        return self.inner.contract()

    async def ready(self) -> bool:
        return await self.inner.ready()

    async def score(self, videos: np.ndarray, pairs: np.ndarray) -> PairLogits:
        self.calls += 1
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await self.inner.score(videos, pairs)


def make_backend(settings: Settings, metrics: Metrics | None = None, work_ms: float = 5.0):
    """The real embedded backend if its model is importable, else the stand-in (logged)."""
    if embedded_available() and not os.environ.get("AESRM_FORCE_STANDIN"):
        from service.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(settings, metrics or Metrics())
    log.warning("service.model.checkpoint not present: using StandInBackend")
    return StandInBackend(settings, metrics, work_ms)


def serve() -> None:
    """`python -m load_tests.standin`: aesrm-serve with make_backend() (stand-in until the model lands)."""
    import uvicorn

    from service.api.app import create_app
    from service.config import get_settings

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    uvicorn.run(create_app(settings, make_backend(settings)), host=settings.host, port=settings.port,
                log_level="warning")


if __name__ == "__main__":
    serve()
