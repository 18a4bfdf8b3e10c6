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


def fit_frame(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """Resize one decoded frame (any pixel format) to the model input as uint8 RGB [H, W, 3]."""
    w, h = fit_size(frame.width, frame.height, width, height)
    small = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA")
    return letterbox(small.to_ndarray(), width, height)


def fit_array(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize uint8 RGB frames [T, h, w, 3] to [T, H, W, 3] with the same resampler as decoded video."""
    if frames.shape[1:3] == (height, width):
        return np.ascontiguousarray(frames)
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i, rgb in enumerate(frames):
        out[i] = fit_frame(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"), width, height)
    return out


def uniform_indices(count: int, samples: int) -> np.ndarray:
    """Indices of `samples` frames spread uniformly over `count` (centres of equal segments)."""
    if count <= 0:
        raise ValueError("no frames to sample")
    positions = (np.arange(samples) + 0.5) * count / samples
    return np.minimum(positions.astype(np.int64), count - 1)
