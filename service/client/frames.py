"""Client-side preparation of generated videos: sample the model's T frames and fit them to its H x W
before anything leaves the worker, so a GRPO worker uploads T small frames (.npy uint8, ~0.4 MB at
8 x 128 x 128) instead of a full clip (an 81-frame 480p float clip is ~97 MB as uint8 .npy, 4x that as float).

The server does exactly the same to a raw tensor it receives (uniform frame indices, aspect-preserving
letterbox), so an input prepared here is not touched again. A model that also looks at native-resolution
detail (GET /v1/model `views` beyond "frames:letterbox", e.g. proxy 2.2.0's fragments) gets every view made
here with the server's own functions (service.ingest.views) and uploaded as one uncompressed .npz, 0.4 MB a
view: resizing first would destroy what the fragments are for, and T native 480p frames are 9.6 MB.
Resampling:
* PyAV importable (the server extra): the server's own swscale AREA resampler -> identical pixels,
  identical rewards.
* base install (httpx + pydantic + numpy only): exact area averaging in numpy. swscale's AREA filter is
  not bit-identical to it: pixels differ by at most a few levels (mean < 1 level), and rewards agree to
  the tolerance that tests/test_grpo_client.py checks (RESAMPLE_TOLERANCE).

Accepted: numpy arrays or torch tensors (any device; only the T sampled frames are copied to the host),
uint8 or float in [0, 1] or [-1, 1], layouts THWC, TCHW, CTHW (auto-detected when only one axis has 3
channels, else pass `layout`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

LAYOUTS = ("THWC", "TCHW", "CTHW")
Layout = Literal["THWC", "TCHW", "CTHW"]
ValueRange = Literal["auto", "0,1", "-1,1"]
RESAMPLE_TOLERANCE = 0.05
"""Largest |reward difference| (win-rate / probability scale) allowed between the numpy and swscale paths."""


@dataclass(frozen=True)
class Contract:
    """The model input the server publishes at GET /v1/model."""

    frames: int
    height: int
    width: int
    views: tuple[str, ...] = ("frames:letterbox",)

    @classmethod
    def of(cls, info: Any) -> "Contract":
        views = tuple(getattr(info, "views", None) or ("frames:letterbox",))
        return cls(int(info.frames), int(info.height), int(info.width), views)

    @property
    def whole_frames_only(self) -> bool:
        """True when the model sees only the letterboxed frame: resizing on the worker loses nothing."""
        return all(v.split(":")[1:2] == ["letterbox"] for v in self.views)


def uniform_indices(count: int, samples: int) -> np.ndarray:
    """Same indices as the server's service.ingest.frames.uniform_indices (centres of equal segments)."""
    if count <= 0:
        raise ValueError("no frames to sample")
    positions = (np.arange(samples) + 0.5) * count / samples
    return np.minimum(positions.astype(np.int64), count - 1)


def fit_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    """Same as the server: the largest (w, h) with the source aspect inside (width, height)."""
    scale = min(width / src_w, height / src_h)
    return max(1, min(width, round(src_w * scale))), max(1, min(height, round(src_h * scale)))


def detect_layout(shape: tuple[int, ...]) -> Layout:
    if len(shape) != 4:
        raise ValueError(f"a video is 4-D (THWC, TCHW or CTHW), got shape {tuple(shape)}")
    found = [lay for lay in LAYOUTS if shape[lay.index("C")] == 3]
    if len(found) != 1:
        raise ValueError(f"cannot tell the layout of shape {tuple(shape)}: pass layout= one of {LAYOUTS}")
    return found[0]  # type: ignore[return-value]


def prepare(video: Any, contract: Contract, *, layout: Layout | None = None, value_range: ValueRange = "auto",
            resampler: Literal["auto", "swscale", "numpy"] = "auto") -> np.ndarray | dict[str, np.ndarray]:
    """One video -> uint8 [T, H, W, 3] at the model's input size (what the server would feed the model), or
    {view name: [T, H, W, 3]} for a model with more views than the whole frame (Contract.whole_frames_only).
    npy_bytes() turns either into the upload."""
    shape = tuple(int(s) for s in video.shape)
    lay = layout or detect_layout(shape)
    if lay not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    t_axis = lay.index("T")
    idx = uniform_indices(shape[t_axis], contract.frames)
    order = [lay.index(c) for c in "THWC"]
    picked = _take(video, idx, t_axis)  # only T frames leave the device
    if _is_torch(picked):
        frames = _to_numpy(picked.permute(*order))
    else:
        frames = np.ascontiguousarray(np.transpose(picked, order))
    if frames.shape[-1] != 3:
        raise ValueError(f"expected 3 channels in layout {lay}, got shape {shape}")
    frames = to_uint8(frames, value_range)
    if not contract.whole_frames_only:
        return _views(frames, contract, resampler)
    return fit(frames, contract.width, contract.height, resampler)


def _views(frames: np.ndarray, contract: Contract, resampler: str) -> dict[str, np.ndarray] | np.ndarray:
    """Every view of the model from the T sampled frames; the frames themselves (the server then makes the
    views) only when a frame is smaller than a fragments mosaic and PyAV is missing to enlarge it."""
    from service.contract import FRAGMENTS, parse_views
    from service.ingest.views import fragment_mosaic

    shape = (contract.frames, contract.height, contract.width)
    specs = parse_views(",".join(contract.views), {v.split(":")[0]: shape for v in contract.views})
    out = {}
    for s in specs:
        if s.kind == FRAGMENTS:
            try:
                out[s.name] = np.stack([fragment_mosaic(f, s) for f in frames])
            except ImportError:  # a small frame to enlarge, no PyAV here
                return np.ascontiguousarray(frames)
        else:
            out[s.name] = fit(frames, s.width, s.height, resampler)
    return out


def to_uint8(frames: np.ndarray, value_range: ValueRange = "auto") -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames must be uint8 or float, got {frames.dtype}")
    # Frame by frame in one reused float32 buffer, every step in place: the whole-clip version made a new
    # 38 MB temporary per step of a 480p clip (52 of the 78 ms prepare() took; now ~20). Same float32
    # arithmetic, same pixels; float32 rounding is monotonic, so the converted range is the range converted.
    with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf: refused just below
        lo, hi = (float(np.float32(v)) for v in (frames.min(), frames.max()))  # NaN propagates, inf shows
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("frames contain NaN or inf")
    shift = value_range == "-1,1" or (value_range == "auto" and lo < 0.0)
    out = np.empty(frames.shape, np.uint8)
    x = np.empty(frames.shape[1:], np.float32)  # one frame's buffer, reused
    for i, frame in enumerate(frames):
        np.copyto(x, frame, casting="unsafe")  # float64 -> float32 rounds as astype does
        if shift:
            x += 1.0
            x *= 0.5
        x *= 255.0
        np.rint(x, out=x)
        np.maximum(x, 0, out=x)  # np.clip is 2x slower than the two bounds
        np.minimum(x, 255, out=x)
        out[i] = x  # whole numbers in 0..255 by now: the cast is exact
    return out


def fit(frames: np.ndarray, width: int, height: int, resampler: str = "auto") -> np.ndarray:
    """uint8 [T, h, w, 3] -> [T, height, width, 3]: aspect kept, centred on black (as the server)."""
    if frames.shape[1:3] == (height, width):
        return np.ascontiguousarray(frames)
    if resampler in ("auto", "swscale"):
        try:
            from service.ingest.frames import fit_array  # the server's resampler, needs PyAV
        except ImportError:
            if resampler == "swscale":
                raise
        else:
            return fit_array(np.ascontiguousarray(frames), width, height)
    w, h = fit_size(frames.shape[2], frames.shape[1], width, height)
    wy, wx = _area_weights(frames.shape[1], h), _area_weights(frames.shape[2], w)
    t, sh, sw, _ = frames.shape
    rows = np.matmul(wy, frames.astype(np.float32).reshape(t, sh, sw * 3)).reshape(t, h, sw, 3)
    small = np.matmul(rows.transpose(0, 1, 3, 2), wx.T).transpose(0, 1, 3, 2)  # [t, h, w, 3]
    out = np.zeros((len(frames), height, width, 3), dtype=np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    out[:, top:top + h, left:left + w] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return out


def npy_bytes(prepared: np.ndarray | dict[str, np.ndarray]) -> bytes:
    """The upload of a prepare() result: .npy frames, or an uncompressed .npz with one .npy per view (the
    server refuses compressed members)."""
    buf = io.BytesIO()
    if isinstance(prepared, dict):
        np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in prepared.items()})
    else:
        np.save(buf, np.ascontiguousarray(prepared), allow_pickle=False)
    return buf.getvalue()


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights: each output pixel averages the input interval it covers (exact overlaps)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _take(video: Any, idx: np.ndarray, axis: int) -> Any:
    if _is_torch(video):  # plain slices: index_select is slow on CPU for bfloat16
        import torch

        return torch.stack([video.select(axis, int(i)) for i in idx], dim=axis)
    return np.take(np.asarray(video), idx, axis=axis)


def _to_numpy(x: Any) -> np.ndarray:
    """A C-contiguous numpy copy of a (possibly permuted) tensor; bfloat16/float16 become float32. One
    copy_ converts and lays out in a single pass (a .contiguous() then .float() took 3x as long)."""
    if _is_torch(x):
        import torch

        x = x.detach().cpu()
        out = torch.empty(x.shape, dtype=torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype)
        return out.copy_(x).numpy()  # bfloat16 has no numpy twin
    return np.asarray(x)
