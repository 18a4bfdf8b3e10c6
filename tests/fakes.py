"""Small test doubles for the scorer backend, behind the real MicroBatcher.

`FakeBackend` scores with image statistics (antisymmetric by construction) and a configurable forward time,
for tests that need to control how slow inference is (timeouts, cancellation, backpressure) or that test
the pipeline without the model. `DelayedBackend` wraps any backend with a delay (a slow or congested GPU).
Everything else in the tests runs the real embedded model.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from service.backends.batching import MicroBatcher
from service.config import Settings
from service.contract import ModelContract, PairLogits
from service.metrics import Metrics


class FakeBackend:
    name = "fake"
    remote = False

    def __init__(self, settings: Settings, metrics: Metrics | None = None, work_ms: float = 5.0) -> None:
        self._work_s = work_ms / 1000.0
        self.forwards = 0
        self._batcher = MicroBatcher(self._forward, max_videos=settings.max_batch_videos,
                                     max_wait_ms=settings.max_batch_wait_ms, queue_size=settings.queue_size,
                                     metrics=metrics or Metrics())
        self._contract = ModelContract(model_id="aesrm-fake", model_version="0", frames=8, height=64,
                                       width=64, checkpoint="fake", trained=False, antisymmetric=True)

    async def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    def contract(self) -> ModelContract:
        return self._contract

    async def ready(self) -> bool:
        return self._batcher.running

    async def score(self, videos: dict[str, np.ndarray], pairs: np.ndarray) -> PairLogits:
        return await self._batcher.submit(videos, pairs)

    def _forward(self, videos: dict[str, np.ndarray], pairs: np.ndarray) -> PairLogits:
        self.forwards += 1
        x = videos["frames"].astype(np.float32) / 255.0
        feats = np.stack([x.mean(axis=(1, 2, 3, 4)), x.std(axis=(1, 2, 3, 4)),
                          np.abs(np.diff(x, axis=3)).mean(axis=(1, 2, 3, 4))], axis=1)
        time.sleep(self._work_s * len(x))  # releases the GIL, like a torch/GPU forward
        return PairLogits(((feats[pairs[:, 0]] - feats[pairs[:, 1]]) * 10.0).astype(np.float32), None)


class DelayedBackend:
    """Delegates to `inner` after `delay_s`; counts calls and cancellations."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.name, self.remote = f"delayed-{inner.name}", inner.remote
        self.calls = self.cancelled = 0

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def contract(self) -> ModelContract:
        return self.inner.contract()

    async def ready(self) -> bool:
        return await self.inner.ready()

    async def score(self, videos: dict[str, np.ndarray], pairs: np.ndarray) -> PairLogits:
        self.calls += 1
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await self.inner.score(videos, pairs)
