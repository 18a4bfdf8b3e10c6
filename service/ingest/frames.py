"""Fit sampled frames to the model input: one resizer (swscale via PyAV) for decoded video and raw tensors.

Frames are letterboxed (aspect kept, centred, black padding) rather than cropped or stretched: crop and
tilt are things the model judges, so the whole picture must reach it undistorted. Training data goes
through this same function, so train and serve see identical pixels.
"""

from __future__ import annotations

import av
import numpy as np


def fit_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    """Largest (w, h) with the source aspect that fits in (width, height); even sizes are not needed."""
    scale = min(width / src_w, height / src_h)
    return max(1, min(width, round(src_w * scale))), max(1, min(height, round(src_h * scale)))


def letterbox(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Place an already-resized [h, w, 3] image in the centre of a black [height, width, 3] canvas."""
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    out = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    out[top : top + h, left : left + w] = rgb
    return out


def new_reformatter():
    """A swscale context cache for the frames of one video (frame.reformat builds a new context per call:
    3-4 ms a frame at small sizes), run on the calling thread (threads=1: callers already run one video
    per thread)."""
    from av.video.reformatter import VideoReformatter

    return VideoReformatter()


def fit_frame(frame: av.VideoFrame, width: int, height: int, rotation: int = 0, reformatter=None) -> np.ndarray:
    """Resize one decoded frame (any pixel format) to the model input as uint8 RGB [H, W, 3], after
    `rotation` quarter turns (resized in stored orientation, then rotated). `reformatter`: one from
    new_reformatter() reused across the frames of a video."""
    src_w, src_h = (frame.height, frame.width) if rotation % 2 else (frame.width, frame.height)
    w, h = fit_size(src_w, src_h, width, height)
    rw, rh = (h, w) if rotation % 2 else (w, h)
    rgb = (reformatter or new_reformatter()).reformat(frame, width=rw, height=rh, format="rgb24",
                                                      interpolation="AREA", threads=1).to_ndarray()
    if rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation))
    return letterbox(rgb, width, height)


def fit_array(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize uint8 RGB frames [T, h, w, 3] to [T, H, W, 3] with the same resampler as decoded video."""
    if frames.shape[1:3] == (height, width):
        return np.ascontiguousarray(frames)
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    reformatter = new_reformatter()
    for i, rgb in enumerate(frames):
        out[i] = fit_frame(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"), width, height,
                           reformatter=reformatter)
    return out


def uniform_indices(count: int, samples: int) -> np.ndarray:
    """Indices of `samples` frames spread uniformly over `count` (centres of equal segments)."""
    if count <= 0:
        raise ValueError("no frames to sample")
    positions = (np.arange(samples) + 0.5) * count / samples
    return np.minimum(positions.astype(np.int64), count - 1)
