"""The pixel operations the recipe's edits are made of: blur kernels, the luma, the recipe 11 ramp, a real codec
round trip, the unsharp mask, partial freezes. Pure functions of their inputs and the recipe constants; which
one an edit uses, and how strong, is decided in service.training.data (variant, finish)."""

from __future__ import annotations

import io
import math

import av
import numpy as np
import torch
import torch.nn.functional as F

from service.training.recipes import RECIPE_V4, RECIPE_V8, T


def gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def aniso_blur(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Recipe 4: an elongated Gaussian (major axis `sigma` px, minor 0.1-0.4 of it, random angle), a smooth
    directional softness (not the uniform line kernel of the held-out motion blur)."""
    g = np.random.default_rng([int(seed), 4])
    ang, ratio = g.uniform(0, math.pi), g.uniform(*RECIPE_V4["aniso_ratio"])
    s1, s2 = sigma, max(0.3, sigma * ratio)
    r = max(1, int(math.ceil(3 * s1)))
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    u, v = xx * math.cos(ang) + yy * math.sin(ang), -xx * math.sin(ang) + yy * math.cos(ang)
    k = torch.exp(-0.5 * ((u / s1) ** 2 + (v / s2) ** 2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), k.expand(c, 1, -1, -1).contiguous(), groups=c)


def disc_blur(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Defocus: a uniform disc kernel (anti-aliased edge) of the given radius in pixels."""
    r = int(math.ceil(radius))
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    k = (radius + 0.5 - (xx * xx + yy * yy).sqrt()).clamp(0, 1)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), k.expand(c, 1, -1, -1).contiguous(), groups=c)


def luma(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def ramp(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Recipe 11: 0 on one edge of the frame, 1 on the opposite one, linear in a direction drawn from the seed."""
    _, _, h, w = x.shape
    a = np.random.default_rng([seed, 11]).uniform(0, 2 * math.pi)
    c, s = math.cos(a), math.sin(a)
    t = torch.linspace(-1, 1, w)[None] * c + torch.linspace(-1, 1, h)[:, None] * s
    return (t / (abs(c) + abs(s)) + 1) / 2


def round_trip(frames: np.ndarray, codec: str, *, container: str, rate: int, options: dict,
               pix_fmt: str = "yuv420p", qscale: int = 0) -> np.ndarray:
    """Encode uint8 frames [T, h, w, 3] with a real codec and decode them again: the codec's own artifacts.
    `qscale` > 0 fixes the quantiser scale (qmin = qmax) for the codecs that have one."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as c:
        st = c.add_stream(codec, rate=rate)
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if qscale:
            st.codec_context.qmin = st.codec_context.qmax = int(qscale)
        st.options = options
        for f in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    buf.seek(0)
    with av.open(buf) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])[:len(frames)]


def compress(frames: np.ndarray, crf: float, mpeg2_q: int = 0, hevc: bool = False) -> np.ndarray:
    """Real H.264 round trip (libx264, yuv420p) at the given CRF: blocking, ringing, smearing. With
    `mpeg2_q` (recipe 4), MPEG-2 at that fixed quantiser scale (2..31) instead and crf is unused; with `hevc`
    (recipe 6), libx265 at the CRF."""
    if mpeg2_q:  # MPEG-2 needs a legal frame rate
        return round_trip(frames, "mpeg2video", container="matroska", rate=24, options={"threads": "1"},
                          qscale=mpeg2_q)
    if hevc:
        return round_trip(frames, "libx265", container="matroska", rate=8,
                          options={"crf": f"{crf:.1f}", "preset": "ultrafast",
                                   "x265-params": "log-level=none:pools=none:frame-threads=1"})
    return round_trip(frames, "libx264", container="mp4", rate=8,
                      options={"crf": f"{crf:.1f}", "preset": "ultrafast", "tune": "zerolatency", "threads": "1"})


def unsharp(x: torch.Tensor, s: float, seed: int, part: dict, tag: int) -> torch.Tensor:
    """An unsharp mask (recipes 9 and 10): amount s * part's amount at a per-pattern sigma: halos, crunchy texture."""
    sigma = float(np.random.default_rng([int(seed), tag]).uniform(*part["oversharpen_sigma"]))
    return x + s * part["oversharpen_amount"] * (x - gauss_blur(x, sigma))


def partial_freeze(clip: np.ndarray, frozen: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """Recipe 8: in each frozen frame only PART of the picture is late and keeps what the previous frame
    showed: the rows below a tear line ("tear") or scattered macroblocks ("stale_blocks"). The region of
    frame t is drawn whether or not t is frozen, so a stronger edit freezes a superset of a weaker one's."""
    _, h, w, _ = clip.shape
    g = np.random.default_rng([int(seed), 8])
    out = clip.copy()
    b = RECIPE_V8["stale_block"]
    for t in range(1, T):
        if kind == "tear":
            mask = np.arange(h) >= int(g.uniform(*RECIPE_V8["tear_rows"]) * h)
            region = np.broadcast_to(mask[:, None], (h, w))
        else:
            blocks = g.random((-(-h // b), -(-w // b))) < RECIPE_V8["stale_p"]
            region = np.kron(blocks, np.ones((b, b), dtype=bool))[:h, :w].astype(bool)
        if t in frozen:
            out[t][region] = out[t - 1][region]
    return out
