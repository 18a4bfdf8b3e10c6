"""The model contract and the scorer-backend Protocol.

Every backend (embedded PyTorch, Triton, a user's AesRM-Base) answers the same question: for pairs of
sampled videos, what are the per-dimension preference logits (positive = A preferred)? The HTTP layer
and the scoring pipeline only ever see this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

DIMENSIONS: tuple[str, ...] = ("VA", "VF", "VP")
"""Visual Aesthetics, Visual Fidelity, Visual Plausibility - the order of the logits axis."""

NOVELTY_THRESHOLD = 1.0
"""Novelty above this: the video is farther from the training distribution than 99% of training clips
(AesRMProxy.novelty is normalised so); verdicts about it are not trusted (service/explain/README.md)."""


@dataclass(frozen=True)
class ModelContract:
    """What a backend's model expects and returns; read from the backend, never duplicated."""

    model_id: str
    model_version: str
    frames: int  # T
    height: int  # H
    width: int  # W
    dimensions: tuple[str, ...] = DIMENSIONS
    criteria: tuple[str, ...] = ()  # fine-grained criterion names, order of criterion logits
    criterion_dimension: tuple[str, ...] = ()  # dimension each criterion belongs to
    checkpoint: str = ""  # which weights produced the scores (file name + sha prefix)
    trained: bool = True  # False: architecture with untrained weights, never a real score
    antisymmetric: bool = False  # True when swapping A and B flips the logits exactly
    novelty: bool = False  # the model returns a per-video out-of-distribution signal (PairLogits.novelty)
    calibrated: bool = False  # logits are temperature-calibrated (proxy >= 2.0.0): sigmoid is a probability

    @property
    def sampling_key(self) -> str:
        """Part of every cache key: results depend on how frames were sampled."""
        return f"T{self.frames}xH{self.height}xW{self.width}"


@dataclass
class BackendTiming:
    """How one score() call spent its time, filled by every backend (cf. TEI's InferMetadata).

    queue_ms: waiting for the backend (micro-batch queue, or a free Triton call slot); inference_ms: the
    forward / the remote inference calls; batch_videos: distinct videos in the forward that served it.
    """

    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_videos: int = 0


@dataclass
class PairLogits:
    """Backend output for P pairs: dimension logits [P, D], optional criterion logits [P, C] and optional
    novelty [P, 2] (side a, side b): each video's distance from the model's training distribution, ~<= 1 in
    distribution (AesRMProxy.novelty). None when the model has no such signal, never a stand-in value."""

    dimension: np.ndarray
    criteria: np.ndarray | None = None
    timing: BackendTiming = field(default_factory=BackendTiming)
    novelty: np.ndarray | None = None


@runtime_checkable
class ScorerBackend(Protocol):
    """A preference model behind the gateway.

    ``score`` takes the distinct videos of a request once ([V, T, H, W, 3] uint8) and the pairs to compare
    as index rows [P, 2] (row = (a, b)); backends that can encode each video once (the embedded proxy) do,
    the others gather frames_a/frames_b per pair.
    """

    name: str
    remote: bool  # the model runs in another process (Triton): its outage must not make the gateway unready

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def contract(self) -> ModelContract: ...

    async def ready(self) -> bool: ...

    async def score(self, videos: np.ndarray, pairs: np.ndarray) -> PairLogits: ...
