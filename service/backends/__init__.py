"""Scorer backends. `build_backend` is the only place that knows which one is active."""

from __future__ import annotations

from service.config import Settings
from service.contract import ScorerBackend
from service.metrics import Metrics


def build_backend(settings: Settings, metrics: Metrics) -> ScorerBackend:
    if settings.backend == "triton":
        from service.backends.triton import TritonBackend

        return TritonBackend(settings, metrics)
    from service.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(settings, metrics)
