"""The views a model asks for: what each sampled frame becomes before it reaches the model.

A model declares its input views in its contract (checkpoint manifest / Triton model config); the gateway
renders exactly those from the sampled frames, so a model that needs more than one look at a video gets it
without model-specific gateway code. Two kinds exist (after FAST-VQA / DOVER):

* ``letterbox``: the whole frame fitted into H x W (aspect kept, black bars; service.ingest.frames). The
  aesthetic view: layout, tone, colour, motion of the whole picture.
* ``fragments``: a grid x grid mosaic of patches cut at NATIVE resolution, one from the centre of each grid
  cell, at the same positions in every frame (FAST-VQA's "grid mini-patch sampling"). The technical view:
  noise, blocking and blur survive, which a 128-px downscale averages away. A frame smaller than the
  mosaic is first enlarged (bilinear) so that every patch exists.

Every path goes through these functions: decoded video (service.ingest.decode), raw tensors
(service.ingest.sources), client-side preparation and the training data, so train and serve see the same
pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from service.contract import LETTERBOX, ViewSpec

if TYPE_CHECKING:
    import av

# PyAV (swscale) is imported only where a resampler is needed: the fragment crop itself is numpy, so the
# base-install client (service.client.frames, no PyAV) cuts fragments with this same function.


MAX_ENLARGED_SIDE = 2048


def fragment_mosaic(rgb: np.ndarray, spec: ViewSpec) -> np.ndarray:
    """uint8 [h, w, 3] at native resolution -> [H, W, 3] mosaic of the centre patch of every grid cell."""
    g, ph, pw = spec.grid, spec.height // spec.grid, spec.width // spec.grid
    h, w = rgb.shape[:2]
    if h < spec.height or w < spec.width:  # too small for native patches: enlarge to just fit the mosaic
        import av

        # the other side grows by the same factor, but never past MAX_ENLARGED_SIDE: a 1 x 100,000 strip
        # (within max_pixels) would otherwise become 128 x 12,800,000
        scale = max(spec.height / h, spec.width / w)
        nw = max(spec.width, min(round(w * scale), MAX_ENLARGED_SIDE))
        nh = max(spec.height, min(round(h * scale), MAX_ENLARGED_SIDE))
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
            width=nw, height=nh, interpolation="BILINEAR").to_ndarray()
        h, w = nh, nw
    out = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
    for i in range(g):
        y0 = i * h // g + ((i + 1) * h // g - i * h // g - ph) // 2
        for j in range(g):
            x0 = j * w // g + ((j + 1) * w // g - j * w // g - pw) // 2
            out[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw] = rgb[y0:y0 + ph, x0:x0 + pw]
    return out


def render_frame(frame: av.VideoFrame, spec: ViewSpec, rotation: int = 0) -> np.ndarray:
    """One decoded frame (any pixel format) -> the view's [H, W, 3]; `rotation` = quarter turns to apply."""
    if spec.kind == LETTERBOX:
        from service.ingest.frames import fit_size, letterbox

        src_w, src_h = (frame.height, frame.width) if rotation % 2 else (frame.width, frame.height)
        w, h = fit_size(src_w, src_h, spec.width, spec.height)
        rw, rh = (h, w) if rotation % 2 else (w, h)  # resize in stored orientation, then rotate
        rgb = frame.reformat(width=rw, height=rh, format="rgb24", interpolation="AREA").to_ndarray()
        if rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation))
        return letterbox(rgb, spec.width, spec.height)
    rgb = frame.to_ndarray(format="rgb24")
    if rotation:
        rgb = np.rot90(rgb, k=rotation)
    return fragment_mosaic(rgb, spec)


def render_frames(frames: list[av.VideoFrame], specs: tuple[ViewSpec, ...], rotation: int = 0
                  ) -> dict[str, np.ndarray]:
    """Sampled decoded frames -> {view name: uint8 [T, H, W, 3]}."""
    return {s.name: np.stack([render_frame(f, s, rotation) for f in frames]) for s in specs}


def render_array(frames: np.ndarray, specs: tuple[ViewSpec, ...]) -> dict[str, np.ndarray]:
    """Sampled uint8 RGB frames [T, h, w, 3] (raw tensors, training clips) -> {view name: [T, H, W, 3]}."""
    from service.ingest.frames import fit_array

    out = {}
    for s in specs:
        if s.kind == LETTERBOX:
            out[s.name] = fit_array(np.ascontiguousarray(frames), s.width, s.height)
        else:
            out[s.name] = np.stack([fragment_mosaic(f, s) for f in frames])
    return out
