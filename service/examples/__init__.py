"""Example media: three real photographs and a renderer that turns them into real encoded clips.

The photos are 640-px downscales of wallpapers from Debian's plasma-workspace-wallpapers 4:5.27.5-2
(GPL-2+): BytheWater, ColorfulCups, Path. Clips are made with a smooth virtual camera pan/zoom and encoded
with PyAV, so the demo, the tests and the bench all feed the service real H.264/VP9/AV1 files.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

PHOTOS = ("bythewater", "colorfulcups", "path")
HERE = Path(__file__).parent


def photo(name: str = "bythewater") -> np.ndarray:
    """A shipped photo as uint8 RGB [H, W, 3]."""
    with av.open(str(HERE / f"{name}.jpg")) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def pan_frames(image: np.ndarray, frames: int, width: int, height: int, zoom: float = 1.25) -> np.ndarray:
    """A smooth left-to-right pan with slow zoom over `image`: [frames, height, width, 3] uint8."""
    ih, iw = image.shape[:2]
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    src = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    for k in range(frames):
        t = k / max(1, frames - 1)
        scale = zoom - 0.15 * t  # crop size relative to output aspect
        cw = min(iw, int(iw / scale))
        ch = min(ih, int(cw * height / width))
        x = int((iw - cw) * t)
        y = (ih - ch) // 2
        crop = image[y:y + ch, x:x + cw]
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24")
        out[k] = f.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    del src
    return out


def degrade(frames: np.ndarray, kind: str, strength: float = 1.0, seed: int = 0) -> np.ndarray:
    """Visible, graded damage for examples and tests: 'noise', 'blur', 'dark', 'flicker'."""
    rng = np.random.default_rng(seed)
    x = frames.astype(np.float32)
    if kind == "noise":
        x += rng.normal(0, 40 * strength, x.shape)
    elif kind == "blur":
        k = max(1, int(6 * strength))
        for axis in (1, 2):
            x = sum(np.roll(x, s, axis=axis) for s in range(-k, k + 1)) / (2 * k + 1)
    elif kind == "dark":
        x *= max(0.05, 1 - 0.8 * strength)
    elif kind == "flicker":
        x *= (1 + 0.6 * strength * (rng.random(len(x)) - 0.5))[:, None, None, None]
    else:
        raise ValueError(kind)
    return np.clip(x, 0, 255).astype(np.uint8)


_FORMATS = {"h264": ("mp4", "libx264"), "vp9": ("webm", "libvpx-vp9"), "av1": ("mkv", "libsvtav1"),
            "mpeg4": ("avi", "mpeg4")}


def encode(frames: np.ndarray, codec: str = "h264", fps: int = 24, gop: int | None = None,
           rotation: int | None = None, pts_jitter: bool = False, pix_fmt: str = "yuv420p",
           options: dict[str, str] | None = None, encoder: str | None = None, fmt: str | None = None) -> bytes:
    """Encode RGB frames to a real container in memory. `pts_jitter` makes the frame rate variable;
    `options` replaces the encoder's defaults (e.g. libx264 `veryfast` for B-frames, as generators encode);
    `encoder` / `fmt` name any FFmpeg encoder and container instead of `codec`'s pair (libx265 in mp4,
    mpeg4 in MPEG-TS, ...). The one encoder of the repo's examples, tests and benchmarks."""
    fmt, encoder = fmt or _FORMATS[codec][0], encoder or _FORMATS[codec][1]
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska" if fmt == "mkv" else fmt) as out:
        stream = out.add_stream(encoder, rate=fps)
        h, w = frames.shape[1:3]
        even = pix_fmt == "yuv420p"  # 4:2:0 needs even sizes; 4:4:4 keeps odd ones
        stream.width, stream.height = (w - w % 2, h - h % 2) if even else (w, h)
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, fps * 10)
        if gop:
            stream.codec_context.gop_size = gop
        if encoder == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "20"}
        elif encoder == "libvpx-vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b:v": "0"}
        elif encoder == "libsvtav1":
            stream.options = {"preset": "12", "crf": "35"}
        if options is not None:
            stream.options = options
        if rotation is not None:
            stream.set_display_rotation(rotation)
        rng = np.random.default_rng(0)
        pts = 0
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: stream.height, : stream.width]),
                                               format="rgb24")
            frame.pts = pts
            frame.time_base = stream.codec_context.time_base
            pts += 10 if not pts_jitter else int(rng.integers(4, 25))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def example_pair(frames: int = 48, width: int = 320, height: int = 180) -> tuple[bytes, bytes]:
    """(clean, degraded) H.264 clips of the same real photo: a pair any sane reward model should order."""
    clean = pan_frames(photo("bythewater"), frames, width, height)
    return encode(clean), encode(degrade(clean, "noise", 0.8))
