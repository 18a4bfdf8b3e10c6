"""Embedded backend: the trained proxy model in-process (CPU), behind the micro-batcher; its encoder runs on
ONNX Runtime or PyTorch (service.backends.encoder_runtime), the heads in PyTorch.

Each distinct video of a batch is encoded once; the antisymmetric heads then score every requested pair
from the embeddings, so a GRPO group of G videos costs G encoder passes, not G*(G-1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from service import errors
from service.backends.batching import MicroBatcher
from service.config import Settings
from service.contract import DIMENSIONS, ModelContract, PairLogits
from service.metrics import Metrics

if TYPE_CHECKING:
    from service.backends.encoder_runtime import VideoEncoder

log = logging.getLogger(__name__)


class EmbeddedBackend:
    name = "embedded"
    remote = False

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings, self._metrics = settings, metrics
        self._model = None
        self._encoder: VideoEncoder | None = None
        self._contract: ModelContract | None = None
        self._batcher = MicroBatcher(self._forward, max_videos=settings.max_batch_videos,
                                     max_wait_ms=settings.max_batch_wait_ms, queue_size=settings.queue_size,
                                     metrics=metrics, thread_nice=settings.worker_nice)

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        from service.backends.encoder_runtime import build_encoder

        # built on the inference thread, whose (lowered) priority ONNX Runtime's pool threads inherit
        self._encoder = await self._batcher.call(build_encoder, self._model, self._settings.embedded_runtime,
                                                 self._settings.torch_threads)
        self._batcher.start()

    def _load(self) -> None:
        import torch

        from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy, untrained_proxy

        torch.set_num_threads(self._settings.torch_threads)
        path = self._settings.checkpoint or DEFAULT_CHECKPOINT
        try:
            model, manifest = load_proxy(path)
        except FileNotFoundError:
            if not self._settings.allow_untrained:
                raise
            log.warning("no checkpoint at %s: serving an UNTRAINED proxy (allow_untrained=true)", path)
            model, manifest = untrained_proxy(seed=0)
        self._model = model
        self._contract = contract_from_manifest(manifest)
        log.info("embedded backend: %s %s (%s)", self._contract.model_id, self._contract.model_version,
                 self._contract.checkpoint)

    def _forward(self, videos: Mapping[str, np.ndarray], pairs: np.ndarray) -> PairLogits:
        import torch

        emb = self._encoder(videos)
        with torch.inference_mode():
            idx = torch.from_numpy(pairs.astype(np.int64))
            dim, crit = self._model.heads(emb[idx[:, 0]], emb[idx[:, 1]])
            nov = self._model.novelty(emb)[idx].float().numpy() if self._model.has_novelty else None
        return PairLogits(dim.float().numpy(), crit.float().numpy(), novelty=nov)

    async def close(self) -> None:
        await self._batcher.close()

    @property
    def runtime(self) -> str:
        """"onnxruntime" or "torch": what runs the encoder (service.backends.encoder_runtime)."""
        return self._encoder.name if self._encoder else ""

    def contract(self) -> ModelContract:
        if self._contract is None:
            raise errors.BackendUnavailable("model not loaded yet")
        return self._contract

    async def ready(self) -> bool:
        return self._encoder is not None and self._batcher.running

    async def score(self, videos: Mapping[str, np.ndarray], pairs: np.ndarray) -> PairLogits:
        return await self._batcher.submit(videos, pairs)


def contract_from_manifest(manifest: dict) -> ModelContract:
    """The contract of a proxy checkpoint; its views come from the architecture the manifest records."""
    from service.model.checkpoint import manifest_views

    sha = str(manifest.get("checkpoint_sha256", ""))[:12]
    name = manifest.get("checkpoint_file", manifest.get("model_id", "proxy"))
    return ModelContract(
        model_id=manifest["model_id"], model_version=str(manifest["version"]),
        frames=int(manifest["frames"]), height=int(manifest["height"]), width=int(manifest["width"]),
        dimensions=tuple(manifest.get("dimensions", DIMENSIONS)),
        criteria=tuple(manifest.get("criteria", ())),
        criterion_dimension=tuple(manifest.get("criterion_dimension", ())),
        checkpoint=f"{name}@{sha}" if sha else "untrained-random-init",
        trained=bool(manifest.get("trained", False)), antisymmetric=True,
        novelty=bool(manifest.get("novelty", False)), calibrated=bool(manifest.get("calibrated", False)),
        views=manifest_views(manifest) if "config" in manifest else ())
