"""Held-out edit FAMILIES: does the proxy generalise to defects it was never trained on?

`aesrm-eval --heldout` renders pairs from photos the recipe never trains on (the test split, or any folder
of photos via `--photos`) with defect kinds that are NOT in `data.RECIPE` (motion blur, downscale, other
codecs, posterisation; gamma, vignette, hue rotation, crop that cuts the subject, keystone; ghosting,
dropped frames, frame shuffle, jump cut, interlace, rolling shutter). Training must never import this
module's families: they stay out so that the table measures generalisation, not memorisation.

Per pair (clean or less-edited side first): accuracy on the edited dimension, overall (mean of the three
dimension logits, as the gateway's default), "off-target strong moves" (a non-edited dimension's
probability leaves [0.2, 0.8]) and how often that strong move favours the worse side, and the expected
calibration error of the edited dimension's probability.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from service.model.network import DIMENSIONS
from service.training.data import _camera  # the same camera model as training
from service.training.data import T, model_input
from service.training.filters import round_trip

HELDOUT_SEED = 20260202
STRONG = math.log(4.0)  # |logit| > log 4  <=>  P outside [0.2, 0.8]


# ---- camera with arbitrary (per-row) sample times: dropped frames, interlace, rolling shutter ----------
def _frames_at(levels: list, cam: dict, times: torch.Tensor) -> torch.Tensor:
    """Float frames [N, 3, h, w] in 0..1; times [N, h] in path units (0..1 spans the clip)."""
    w, h = cam["size"]
    sw, sh = cam["src"]
    src = levels[1] if cam["cw0"] / w > 1.6 else levels[0]
    t = times.double()
    ease = 0.5 - 0.5 * torch.cos(math.pi * t.clamp(0, 1))  # the training camera's eased path; ends held
    c0, c1 = torch.tensor(cam["c0"]), torch.tensor(cam["c1"])
    centre = c0 + (c1 - c0) * ease[..., None]  # [N, h, 2]
    cw = cam["cw0"] + (cam["cw1"] - cam["cw0"]) * ease  # [N, h]
    u = (torch.arange(w, dtype=torch.float64) + 0.5) / w * 2 - 1
    v = (torch.arange(h, dtype=torch.float64) + 0.5) / h * 2 - 1
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    half_w, half_h = (cw / 2)[..., None], (cw / 2 / (w / h))[..., None]
    cr, sr = math.cos(cam["roll"]), math.sin(cam["roll"])
    x = centre[..., 0, None] + cr * uu * half_w - sr * vv * half_h
    y = centre[..., 1, None] + sr * uu * half_w + cr * vv * half_h
    grid = torch.stack([2 * x / sw - 1, 2 * y / sh - 1], dim=-1).float()
    img = torch.from_numpy(src).permute(2, 0, 1)[None].float() / 255
    return F.grid_sample(img.expand(len(grid), -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def _times(cam: dict, frame_t) -> torch.Tensor:
    h = cam["size"][1]
    return torch.as_tensor(frame_t, dtype=torch.float64)[:, None].expand(-1, h).clone()


def _clean_times() -> np.ndarray:
    return np.arange(T) / (T - 1)


# ---- family edits: (levels, cam, s, rng-seed) -> float frames [T, 3, h, w] or uint8 [T, h, w, 3] ------
def _to_u8(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy())


def _codec(frames: np.ndarray, codec: str, s: float) -> np.ndarray:
    if codec == "libvpx-vp9":
        return round_trip(frames, codec, container="matroska", rate=8,
                          options={"crf": f"{int(20 + 43 * s)}", "b": "0", "deadline": "realtime", "cpu-used": "8",
                                   "threads": "1"})
    # mpeg4 / mjpeg: fixed quantiser scale 2 (near clean) .. 31 (coarsest)
    return round_trip(frames, codec, container="matroska", rate=8, options={"threads": "1"},
                      pix_fmt="yuvj420p" if codec == "mjpeg" else "yuv420p", qscale=int(round(2 + 29 * s)))


def _motion_blur(x: torch.Tensor, s: float, seed: int) -> torch.Tensor:
    length = 1 + 20 * s
    ang = np.random.default_rng(seed).uniform(0, math.pi)
    r = int(math.ceil(length / 2))
    k = torch.zeros(2 * r + 1, 2 * r + 1)
    for p in np.linspace(-length / 2, length / 2, 64):
        k[int(round(r + p * math.sin(ang))), int(round(r + p * math.cos(ang)))] += 1
    k = (k / k.sum()).view(1, 1, 2 * r + 1, 2 * r + 1).repeat(3, 1, 1, 1)
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), k, groups=3)


def _downscale(x: torch.Tensor, s: float) -> torch.Tensor:
    h, w = x.shape[2:]
    f = 1 + 7 * s
    small = F.interpolate(x, size=(max(8, round(h / f)), max(8, round(w / f))), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def _posterise(x: torch.Tensor, s: float) -> torch.Tensor:
    levels = 2 ** (8 - 5.5 * s) - 1
    return torch.round(x.clamp(0, 1) * levels) / levels


def _gamma(x: torch.Tensor, s: float, seed: int) -> torch.Tensor:
    d = 1.0 if seed % 2 else -1.0
    return x.clamp(0, 1) ** math.exp(d * 0.9 * s)


def _vignette(x: torch.Tensor, s: float) -> torch.Tensor:
    h, w = x.shape[2:]
    v = torch.linspace(-1, 1, h)[:, None]
    u = torch.linspace(-1, 1, w)[None]
    r2 = (u * u + v * v) / 2
    return x * (1 - 0.85 * s * r2)


def _hue_rotate(x: torch.Tensor, s: float, seed: int) -> torch.Tensor:
    a = (1.0 if seed % 2 else -1.0) * s * math.radians(120)
    m = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    rot = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    full = torch.linalg.inv(m) @ rot @ m
    return torch.einsum("ij,tjhw->tihw", full, x)


def _crop_cut(x: torch.Tensor, s: float, seed: int) -> torch.Tensor:
    """Zoom into a window pushed against one edge: part of the scene (often the subject) is cut off."""
    g = np.random.default_rng(seed)
    scale = 1 - 0.5 * s
    off = g.choice([-1.0, 1.0], 2) * (1 - scale)  # towards a corner
    n, _, h, w = x.shape
    v = torch.linspace(-1, 1, h)[:, None].expand(h, w) * scale + off[1]
    u = torch.linspace(-1, 1, w)[None].expand(h, w) * scale + off[0]
    grid = torch.stack([u, v], -1)[None].expand(n, -1, -1, -1).float()
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _keystone(x: torch.Tensor, s: float, seed: int) -> torch.Tensor:
    """Perspective (keystone): one side of the frame shrinks towards the centre line."""
    g = np.random.default_rng(seed)
    k = 0.4 * s
    n, _, h, w = x.shape
    v = torch.linspace(-1, 1, h)[:, None].expand(h, w)
    u = torch.linspace(-1, 1, w)[None].expand(h, w)
    if g.uniform() < 0.5:
        sgn = float(g.choice([-1.0, 1.0]))
        grid = torch.stack([u * (1 - k * (1 + sgn * v) / 2), v], -1)
    else:
        sgn = float(g.choice([-1.0, 1.0]))
        grid = torch.stack([u, v * (1 - k * (1 + sgn * u) / 2)], -1)
    return F.grid_sample(x, grid[None].expand(n, -1, -1, -1).float(), mode="bilinear",
                         padding_mode="border", align_corners=True)


def _ghost(x: torch.Tensor, s: float) -> torch.Tensor:
    a = 0.65 * s
    out = [x[0]]
    for t in range(1, len(x)):
        out.append((1 - a) * x[t] + a * out[-1])
    return torch.stack(out)


def _dropped_times(s: float, seed: int) -> np.ndarray:
    """Uneven cadence: k of the 7 steps skip ahead (frames dropped), the rest are shorter."""
    k = max(1, int(round(3 * s)))
    g = np.random.default_rng(seed)
    steps = np.ones(T - 1)
    idx = g.permutation(T - 1)
    steps[idx[:k]] = 2.5
    steps[idx[k:]] = (T - 1 - 2.5 * k) / (T - 1 - k)
    return np.concatenate([[0], np.cumsum(steps)]) / (T - 1)


def _shuffle_index(s: float, seed: int) -> np.ndarray:
    k = max(1, int(round(3 * s)))
    g = np.random.default_rng(seed)
    idx = np.arange(T)
    for t in g.permutation(np.arange(1, T - 1, 2))[:k]:
        idx[t], idx[t + 1] = idx[t + 1], idx[t]
    return idx


FAMILIES: dict[str, str] = {  # family -> dimension it degrades
    "gamma": "VA", "vignette": "VA", "hue_rotation": "VA", "crop_cut": "VA", "keystone": "VA",
    "motion_blur": "VF", "downscale": "VF", "mpeg4": "VF", "mjpeg": "VF", "vp9": "VF", "posterise": "VF",
    "ghosting": "VP", "dropped_frames": "VP", "frame_shuffle": "VP", "jump_cut": "VP", "interlace": "VP",
    "rolling_shutter": "VP",
}
GRADED = set(FAMILIES) - {"jump_cut"}  # more strength = worse; jump cut is judged only against clean


def render_family(levels: list, cam: dict, cam2: dict, family: str, s: float, seed: int) -> np.ndarray:
    """One clip with `family` at strength s (0 = clean) -> uint8 [2T, H, W, 3] model input."""
    h = cam["size"][1]
    times = _times(cam, _clean_times())
    if s > 0 and family == "dropped_frames":
        times = _times(cam, _dropped_times(s, seed))
    elif s > 0 and family == "interlace":  # odd lines are the field captured half a step earlier
        times[:, 1::2] -= s * 1.5 / (T - 1)
    elif s > 0 and family == "rolling_shutter":  # rows read out over most of a frame interval
        times += torch.linspace(0, s * 2.0 / (T - 1), h)[None]
    x = _frames_at(levels, cam, times)
    if s > 0 and family == "jump_cut":
        cut = 3 + seed % 3
        x = torch.cat([x[:cut], _frames_at(levels, cam2, _times(cam2, _clean_times()))[cut:]])
    if s > 0:
        x = {"gamma": lambda: _gamma(x, s, seed), "vignette": lambda: _vignette(x, s),
             "hue_rotation": lambda: _hue_rotate(x, s, seed), "crop_cut": lambda: _crop_cut(x, s, seed),
             "keystone": lambda: _keystone(x, s, seed), "motion_blur": lambda: _motion_blur(x, s, seed),
             "downscale": lambda: _downscale(x, s), "posterise": lambda: _posterise(x, s),
             "ghosting": lambda: _ghost(x, s)}.get(family, lambda: x)()
    clip = _to_u8(x)
    if s > 0 and family == "frame_shuffle":
        clip = clip[_shuffle_index(s, seed)]
    if s > 0 and family in ("mpeg4", "mjpeg", "vp9"):
        clip = _codec(clip, {"vp9": "libvpx-vp9"}.get(family, family), s)
    return model_input(clip)


def heldout_groups(sources: list, per_family: int, seed: int = HELDOUT_SEED,
                   families: tuple[str, ...] = tuple(FAMILIES)) -> list:
    """[(clips uint8 [3, 2T, H, W, 3] (data.model_input), family, strengths)]: clean, moderate, strong of
    one family."""
    groups = []
    for fi, fam in enumerate(families):
        for i in range(per_family):
            rng = np.random.default_rng([seed, fi, i])
            src = sources[i % len(sources)]
            cam = _camera(src.levels[0].shape, rng)
            cam2 = _camera(src.levels[0].shape, rng)
            while cam2["size"] != cam["size"]:  # the jump cut's second shot: same frame size
                cam2 = _camera(src.levels[0].shape, rng)
            st = (0.0, float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.75, 1.0)))
            pseed = int(rng.integers(2**31))
            groups.append((np.stack([render_family(src.levels, cam, cam2, fam, s, pseed) for s in st]), fam, st))
    return groups


def photo_sources(folder: str) -> list:
    """Every .jpg/.png under `folder` as a source (e.g. photos reserved for an independent evaluation)."""
    from pathlib import Path
    from types import SimpleNamespace

    from service.training.sources import _decode, _levels

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [SimpleNamespace(id=str(p.relative_to(folder)), levels=_levels(_decode(str(p)))) for p in files]


def pair_indices(family: str) -> list[tuple[int, int]]:
    """The (better, worse) clip pairs scored in a group: clean vs moderate and vs strong, and moderate vs
    strong where more strength is worse (not for a jump cut)."""
    return [(0, 1), (0, 2)] + ([(1, 2)] if family in GRADED else [])


def ece(conf_correct: list[tuple[float, bool]], bins: int = 10) -> float:
    """Expected calibration error over (confidence of the predicted side, was it right)."""
    if not conf_correct:
        return float("nan")
    c = np.array([x[0] for x in conf_correct])
    ok = np.array([x[1] for x in conf_correct], dtype=float)
    edges = np.linspace(0.5, 1.0, bins + 1)
    err = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (c >= lo) & ((c < hi) if hi < 1 else (c <= hi))
        if m.any():
            err += m.mean() * abs(c[m].mean() - ok[m].mean())
    return float(err)


def pair_record(dim_logits: torch.Tensor, edited_dim: str) -> dict:
    """Metrics of one (better, worse) pair from its dimension logits [3] (positive = first side better)."""
    d = dim_logits.double()
    k = DIMENSIONS.index(edited_dim)
    others = [d[j] for j in range(len(DIMENSIONS)) if j != k]
    p = float(torch.sigmoid(d[k]))
    return {"ok": bool(d[k] > 0), "overall_ok": bool(d.mean() > 0),
            "off_strong": any(abs(float(o)) > STRONG for o in others),
            "off_backwards": any(float(o) < -STRONG for o in others),
            "conf": max(p, 1 - p), "max_abs_logit": float(d.abs().max()), "logits": d.tolist()}


def summarise(records: list[dict]) -> dict:
    mean = lambda k: round(float(np.mean([r[k] for r in records])), 4) if records else None  # noqa: E731
    return {"pairs": len(records), "accuracy": mean("ok"), "overall_accuracy": mean("overall_ok"),
            "off_target_strong": mean("off_strong"), "off_target_backwards": mean("off_backwards"),
            "ece": round(ece([(r["conf"], r["ok"]) for r in records]), 4) if records else None,
            "max_abs_logit": round(max(r["max_abs_logit"] for r in records), 2) if records else None,
            # which way each dimension leans on average (positive = towards the less-edited side): an
            # off-target rate says how often a dimension moves, this says by how much and where it goes
            "mean_dimension_logits": dict(zip(DIMENSIONS, np.round(np.mean([r["logits"] for r in records], 0), 3)
                                              .tolist())) if records else None}


@torch.inference_mode()
def evaluate_heldout(model, groups: list) -> dict:
    """Per family, per dimension and overall metrics of held-out-family groups."""
    from service.training.evaluate import embed_groups

    model.eval()
    emb = embed_groups(model, groups)
    per_family: dict[str, list] = {}
    for gi, (_, fam, _) in enumerate(groups):
        for i, j in pair_indices(fam):
            dim, _ = model.heads(emb[gi, i][None], emb[gi, j][None])
            per_family.setdefault(fam, []).append(pair_record(dim[0], FAMILIES[fam]))
    allr = [r for v in per_family.values() for r in v]
    return {"families": {f: summarise(v) for f, v in per_family.items()},
            "dimensions": {d: summarise([r for f, v in per_family.items() if FAMILIES[f] == d for r in v])
                           for d in DIMENSIONS},
            "all": summarise(allr), "groups": len(groups)}


def print_heldout(m: dict, title: str) -> None:
    print(f"\n{title}: {m['groups']} groups, {m['all']['pairs']} pairs")
    hdr = f"{'family':18s} {'dim':4s} {'pairs':>5s} {'acc':>6s} {'overall':>7s} {'off>0.8':>7s} {'offback':>7s} " \
          f"{'ECE':>6s} {'max|l|':>7s}"
    print(hdr)

    def row(name: str, dim: str, r: dict) -> None:
        print(f"{name:18s} {dim:4s} {r['pairs']:5d} {r['accuracy']:6.3f} {r['overall_accuracy']:7.3f} "
              f"{r['off_target_strong']:7.3f} {r['off_target_backwards']:7.3f} {r['ece']:6.3f} "
              f"{r['max_abs_logit']:7.2f}")
    for f, r in m["families"].items():
        row(f, FAMILIES[f], r)
    for d, r in m["dimensions"].items():
        row("ALL " + d, d, r)
    row("ALL", "", m["all"])
