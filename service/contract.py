"""The model contract and the scorer-backend Protocol.

Every backend (embedded PyTorch, Triton, a user's AesRM-Base) answers the same question: for pairs of
sampled videos, what are the per-dimension preference logits (positive = A preferred)? The HTTP layer
and the scoring pipeline only ever see this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

import numpy as np

DIMENSIONS: tuple[str, ...] = ("VA", "VF", "VP")
"""Visual Aesthetics, Visual Fidelity, Visual Plausibility - the order of the logits axis."""

LETTERBOX, FRAGMENTS = "letterbox", "fragments"
KINDS = (LETTERBOX, FRAGMENTS)


@dataclass(frozen=True)
class ViewSpec:
    """One model input per side: tensors ``<name>_a`` / ``<name>_b`` of uint8 [T, H, W, 3]."""

    name: str
    kind: str
    frames: int
    height: int
    width: int
    grid: int = 0  # fragments: grid x grid patches of (height // grid) x (width // grid) native pixels

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"view {self.name}: unknown kind {self.kind!r} (known: {', '.join(KINDS)})")
        if min(self.frames, self.height, self.width) <= 0:
            raise ValueError(f"view {self.name}: sizes must be positive")
        if self.kind == FRAGMENTS and (self.grid <= 0 or self.height % self.grid or self.width % self.grid):
            raise ValueError(f"view {self.name}: fragments need a grid dividing {self.height}x{self.width}")

    @property
    def key(self) -> str:
        """Part of the cache key: results depend on how every view was made."""
        base = f"T{self.frames}xH{self.height}xW{self.width}"
        return base if self.kind == LETTERBOX else f"{self.name}:{self.kind}{self.grid}:{base}"

    def describe(self) -> str:
        """The `views` parameter form (manifest, Triton config): ``name:kind`` or ``name:fragments:grid``."""
        return f"{self.name}:{self.kind}" + (f":{self.grid}" if self.kind == FRAGMENTS else "")


def parse_views(text: str, shapes: dict[str, tuple[int, int, int]]) -> tuple[ViewSpec, ...]:
    """Views from the `views` parameter ("frames:letterbox,fragments:fragments:4") and each view's input
    shape (T, H, W) read from the model's own tensors. ValueError on anything inconsistent."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, kind, *rest = part.split(":") + [""]
        if name not in shapes:
            raise ValueError(f"view {name!r} has no input tensors {name}_a / {name}_b")
        grid = int(rest[0]) if kind == FRAGMENTS and rest and rest[0] else 0
        out.append(ViewSpec(name, kind, *shapes[name], grid=grid))
    if not out:
        raise ValueError("no views declared")
    return tuple(out)


def describe_views(views: tuple[ViewSpec, ...]) -> str:
    return ",".join(v.describe() for v in views)


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
    views: tuple[ViewSpec, ...] = ()  # what the gateway renders per video; () = the single "frames" view

    def __post_init__(self) -> None:
        """`frames`/`height`/`width` describe the whole-frame ("frames", letterbox) view every model has;
        other views (fragments) come on top of it with the same T x H x W (so GET /v1/model's view names
        are all a client needs to prepare them)."""
        main = ViewSpec("frames", LETTERBOX, self.frames, self.height, self.width)
        if not self.views:
            object.__setattr__(self, "views", (main,))
        names = [v.name for v in self.views]
        if main not in self.views or len(set(names)) != len(names):
            raise ValueError(f"views {describe_views(self.views)}: need one letterbox view 'frames' of "
                             f"{self.frames}x{self.height}x{self.width} and distinct names")
        if any((v.frames, v.height, v.width) != (self.frames, self.height, self.width) for v in self.views):
            raise ValueError(f"every view is {self.frames}x{self.height}x{self.width}, like the whole-frame view")

    @property
    def sampling_key(self) -> str:
        """Part of every cache key: results depend on how frames were sampled and every view made."""
        return "+".join(v.key for v in self.views)


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

    ``score`` takes the distinct videos of a request once, as {view name: uint8 [V, T, H, W, 3]} for every
    view of the contract, and the pairs to compare as index rows [P, 2] (row = (a, b)); backends that can
    encode each video once (the embedded proxy) do, the others gather <view>_a / <view>_b per pair.
    """

    name: str
    remote: bool  # the model runs in another process (Triton): its outage must not make the gateway unready

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def contract(self) -> ModelContract: ...

    async def ready(self) -> bool: ...

    async def score(self, videos: Mapping[str, np.ndarray], pairs: np.ndarray) -> PairLogits: ...
