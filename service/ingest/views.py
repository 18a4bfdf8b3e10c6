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


def _patch_origins(h: int, w: int, spec: ViewSpec) -> list[tuple[int, int]]:
    """Top-left corner of the centre patch of every grid cell (row-major) in an h x w frame."""
    g, ph, pw = spec.grid, spec.height // spec.grid, spec.width // spec.grid
    rows = [i * h // g + ((i + 1) * h // g - i * h // g - ph) // 2 for i in range(g)]
    cols = [j * w // g + ((j + 1) * w // g - j * w // g - pw) // 2 for j in range(g)]
    return [(y0, x0) for y0 in rows for x0 in cols]


def fragment_mosaic(rgb: np.ndarray, spec: ViewSpec, reformatter=None) -> np.ndarray:
    """uint8 [h, w, 3] at native resolution -> [H, W, 3] mosaic of the centre patch of every grid cell.
    `reformatter` (service.ingest.frames.new_reformatter, reused across a clip) enlarges a small frame."""
    g, ph, pw = spec.grid, spec.height // spec.grid, spec.width // spec.grid
    h, w = rgb.shape[:2]
    if h < spec.height or w < spec.width:  # too small for native patches: enlarge to just fit the mosaic
        import av

        from service.ingest.frames import new_reformatter

        # the other side grows by the same factor, but never past MAX_ENLARGED_SIDE: a 1 x 100,000 strip
        # (within max_pixels) would otherwise become 128 x 12,800,000
        scale = max(spec.height / h, spec.width / w)
        nw = max(spec.width, min(round(w * scale), MAX_ENLARGED_SIDE))
        nh = max(spec.height, min(round(h * scale), MAX_ENLARGED_SIDE))
        rgb = (reformatter or new_reformatter()).reformat(
            av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"), width=nw, height=nh,
            interpolation="BILINEAR", threads=1).to_ndarray()
        h, w = nh, nw
    out = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
    for k, (y0, x0) in enumerate(_patch_origins(h, w, spec)):
        i, j = divmod(k, g)
        out[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw] = rgb[y0:y0 + ph, x0:x0 + pw]
    return out


# 4:2:0 formats whose patches are cut before the RGB conversion (_yuv420_mosaic)
_YUV420 = {"yuv420p", "yuvj420p"}
_MARGIN = 4  # luma rows/columns of slack around each patch, so the cut starts on a chroma sample


def _plane(frame: av.VideoFrame, index: int, height: int, width: int) -> np.ndarray:
    """A writable numpy view of one plane (no copy; rows padded to line_size in memory)."""
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


def _yuv420_mosaic(frame: av.VideoFrame, spec: ViewSpec, reformatter) -> np.ndarray | None:
    """The fragments of a 4:2:0 frame, cut from its Y/U/V planes before the RGB conversion: 16 small
    patches are converted instead of the whole frame (0.09 vs 0.27 ms for a 480p frame). Each patch is cut
    with a margin that starts on an even row and column, so every luma sample keeps the chroma sample it
    has in the whole frame, and swscale's unscaled 4:2:0 -> RGB conversion gives the same pixels as
    converting the whole frame and cutting after (tests/test_views.py checks this on real H.264 and MJPEG).
    None when the frame is smaller than the mosaic (fragment_mosaic enlarges it first), or has an odd size
    (swscale converts a frame of odd height by another path, off by one level from this one): the caller
    converts the whole frame."""
    g, ph, pw = spec.grid, spec.height // spec.grid, spec.width // spec.grid
    h, w = frame.height, frame.width
    P, Q = ph + _MARGIN, pw + _MARGIN
    if h < max(P, spec.height) or w < max(Q, spec.width) or h % 2 or w % 2:
        return None
    cuts = []
    for y0, x0 in _patch_origins(h, w, spec):
        ye, xe = min(y0 & ~1, (h - P) & ~1), min(x0 & ~1, (w - Q) & ~1)
        if y0 - ye + ph > P or x0 - xe + pw > Q:
            return None
        cuts.append((ye, xe, y0 - ye, x0 - xe))
    src = [_plane(frame, 0, h, w), _plane(frame, 1, (h + 1) // 2, (w + 1) // 2),
           _plane(frame, 2, (h + 1) // 2, (w + 1) // 2)]
    import av

    tile = av.VideoFrame(g * Q, g * P, frame.format.name)
    dst = [_plane(tile, 0, g * P, g * Q), _plane(tile, 1, g * P // 2, g * Q // 2),
           _plane(tile, 2, g * P // 2, g * Q // 2)]
    for k, (ye, xe, _, _) in enumerate(cuts):
        i, j = divmod(k, g)
        dst[0][i * P:(i + 1) * P, j * Q:(j + 1) * Q] = src[0][ye:ye + P, xe:xe + Q]
        for c in (1, 2):
            dst[c][i * P // 2:(i + 1) * P // 2, j * Q // 2:(j + 1) * Q // 2] = \
                src[c][ye // 2:(ye + P) // 2, xe // 2:(xe + Q) // 2]
    tile.colorspace, tile.color_range = frame.colorspace, frame.color_range
    rgb = reformatter.reformat(tile, format="rgb24", threads=1).to_ndarray()
    out = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
    for k, (_, _, dy, dx) in enumerate(cuts):
        i, j = divmod(k, g)
        out[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw] = rgb[i * P + dy:i * P + dy + ph, j * Q + dx:j * Q + dx + pw]
    return out


def render_frame(frame: av.VideoFrame, spec: ViewSpec, rotation: int = 0, reformatter=None) -> np.ndarray:
    """One decoded frame (any pixel format) -> the view's [H, W, 3]; `rotation` = quarter turns to apply.
    `reformatter`: service.ingest.frames.new_reformatter(), reused across the frames of one video."""
    from service.ingest.frames import fit_frame, new_reformatter

    reformatter = reformatter or new_reformatter()
    if spec.kind == LETTERBOX:
        return fit_frame(frame, spec.width, spec.height, rotation, reformatter)
    if not rotation and frame.format.name in _YUV420:
        mosaic = _yuv420_mosaic(frame, spec, reformatter)
        if mosaic is not None:
            return mosaic
    rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    if rotation:
        rgb = np.rot90(rgb, k=rotation)
    return fragment_mosaic(rgb, spec, reformatter)


def render_frames(frames: list[av.VideoFrame], specs: tuple[ViewSpec, ...], rotation: int = 0
                  ) -> dict[str, np.ndarray]:
    """Sampled decoded frames -> {view name: uint8 [T, H, W, 3]}."""
    from service.ingest.frames import new_reformatter

    reformatter = new_reformatter()
    return {s.name: np.stack([render_frame(f, s, rotation, reformatter) for f in frames]) for s in specs}


def render_array(frames: np.ndarray, specs: tuple[ViewSpec, ...]) -> dict[str, np.ndarray]:
    """Sampled uint8 RGB frames [T, h, w, 3] (raw tensors, training clips) -> {view name: [T, H, W, 3]}."""
    from service.ingest.frames import fit_array, new_reformatter

    out = {}
    for s in specs:
        if s.kind == LETTERBOX:
            out[s.name] = fit_array(np.ascontiguousarray(frames), s.width, s.height)
        else:
            reformatter = new_reformatter()  # used only if the frames must be enlarged
            out[s.name] = np.stack([fragment_mosaic(f, s, reformatter) for f in frames])
    return out
