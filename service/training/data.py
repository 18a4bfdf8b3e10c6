"""Edit-induced preference pairs (RED-Aes style) from real photos turned into short camera-motion clips.

A clip is a smooth virtual camera (pan, zoom, sub-pixel, bilinear from a pyramid level so it does not
alias) over a real photo, rendered at a typical generator resolution (~256x144..320x240, several aspect
ratios) and then brought to the model input with `service.ingest.views`, exactly as served video is. A
training clip is its views stacked along time: [T whole frames (letterbox), T fragment mosaics] (`VIEWS`;
AesRMProxy.encode_packed splits them, and a model without the fragments view reads the first T only).
A group renders the SAME clip three times with one criterion's edit at increasing strengths
(the random pattern of the edit - noise field, shake path, warp field - is shared), so the only
difference between any two of them is "more of this defect"; the less-edited side is preferred. Sometimes a
nuisance edit of another criterion is applied equally to both sides, so the model learns relative
judgments rather than absolute looks.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from service.ingest.views import render_array
from service.model.criteria import CRITERIA, CRITERION_DIMENSION  # noqa: F401 - re-exported for training code
from service.training import filters, recipes
from service.training.recipes import (CLIP_SIZES, EXTRA_FAMILIES, RECIPE, RECIPE_V4, RECIPE_V5, RECIPE_V6,
                                      RECIPE_V7, RECIPE_V9, RECIPE_V10, RECIPE_V11, VIEWS, VP_CRITERIA, T)

# what the training code has always imported from here (recipes.py holds them now)
recipe, recipe_flags, use_recipe_of = recipes.recipe, recipes.recipe_flags, recipes.use_recipe_of
MAX_ROLL = math.radians(15.0)  # rotation margin reserved in every camera path (tilt + shake fit inside)


def _exposure_stops() -> float:
    return RECIPE_V5["exposure_stops"] if EXTRA_FAMILIES["recipe5"] else RECIPE["exposure_stops"]


def model_input(clip: np.ndarray) -> np.ndarray:
    """Camera-resolution uint8 clip [T, h, w, 3] -> every view stacked along time [T * len(VIEWS), H, W, 3]."""
    views = render_array(np.ascontiguousarray(clip), VIEWS)
    return np.concatenate([views[v.name] for v in VIEWS])
GEOMETRIC = ("composition_tilt", "motion_jitter", "structural_warping")


V1_ONLY = {"on": False}  # True: only the recipe-1 families (the 1.x test set, for comparisons)


def variant(criterion: str, seed: int) -> str:
    """Which defect family of `criterion` an edit with this pattern seed uses (shared across a group)."""
    if V1_ONLY["on"]:
        return "default"
    names = recipes.families_of(criterion) or RECIPE["variants"].get(criterion, ["default"])
    return names[int(seed) % len(names)]


def _camera(src_shape, rng: np.random.Generator, fast: bool = False) -> dict:
    """A smooth camera path (centre, crop width, base roll) that stays inside the photo at MAX_ROLL.

    fast: a pan of up to a whole crop width and a zoom of up to ±35 % over the clip, the motion between 8
    frames sampled from seconds of generated video (recipe 3; the slow default stays for the held-out
    harness, whose groups must not change)."""
    w, h = CLIP_SIZES[rng.integers(len(CLIP_SIZES))]
    sh, sw = src_shape[:2]
    a = w / h
    c, s = math.cos(MAX_ROLL), math.sin(MAX_ROLL)
    cw_max = min(sw / (c + s / a), sh / (s + c / a)) / 1.12  # room for zoom and shake
    cw0 = cw_max * rng.uniform(0.45, 0.85)
    zoom = rng.uniform(-0.35, 0.35) if fast else rng.uniform(-0.15, 0.15)
    cw1 = min(cw_max, cw0 * (1 + zoom))
    cwm = max(cw0, cw1) * 1.12
    bw, bh = cwm * (c + s / a), cwm * (s + c / a)
    lo, hi = np.array([bw / 2, bh / 2]), np.array([sw - bw / 2, sh - bh / 2])
    c0 = rng.uniform(lo, np.maximum(lo, hi))
    move = rng.normal(0, 1, 2) * cw0 * (rng.uniform(0.25, 1.0) if fast else rng.uniform(0.06, 0.25))
    c1 = np.clip(c0 + move, lo, np.maximum(lo, hi))
    return {"size": (w, h), "c0": c0, "c1": c1, "cw0": cw0, "cw1": cw1, "src": (sw, sh),
            "roll": rng.normal(0, math.radians(0.5))}


def _grid(cam: dict, edits: dict) -> torch.Tensor:
    """Sampling grid [T, h, w, 2] (normalised source coords) for the camera plus geometric edits."""
    w, h = cam["size"]
    sw, sh = cam["src"]
    t = torch.linspace(0, 1, T, dtype=torch.float64)
    ease = 0.5 - 0.5 * torch.cos(math.pi * t)
    centre = torch.tensor(cam["c0"]) + (torch.tensor(cam["c1"] - cam["c0"]))[None] * ease[:, None]
    cw = cam["cw0"] + (cam["cw1"] - cam["cw0"]) * ease
    roll = torch.full((T,), cam["roll"], dtype=torch.float64)
    lens = None
    if "composition_tilt" in edits:
        s, seed, d = edits["composition_tilt"]
        if variant("composition_tilt", seed) == "lens":  # recipe 7: barrel (d < 0) or pincushion (d > 0)
            lens = d * s * RECIPE_V7["lens_k"]
        else:
            roll = roll + d * s * math.radians(RECIPE["tilt_deg"])
    if "motion_jitter" in edits:
        s, seed, _ = edits["motion_jitter"]
        g = np.random.default_rng(seed)
        if variant("motion_jitter", seed) == "zoom_pulse":  # the lens breathes / zoom wobbles
            cw = cw * torch.exp(torch.from_numpy(g.normal(0, 1, T)) * s * RECIPE["zoom_pulse"])
        else:
            centre = centre + torch.from_numpy(g.normal(0, 1, (T, 2))) * s * RECIPE["jitter"] * cw[:, None]
            roll = roll + torch.from_numpy(g.normal(0, 1, T)) * s * math.radians(1.5)
    u = (torch.arange(w, dtype=torch.float64) + 0.5) / w * 2 - 1
    v = (torch.arange(h, dtype=torch.float64) + 0.5) / h * 2 - 1
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    uu, vv = uu[None].expand(T, h, w), vv[None].expand(T, h, w)
    if lens is not None:  # radial distortion about the frame centre, r = 1 at the corner
        a = w / h
        r2 = (uu * uu * a * a + vv * vv) / (a * a + 1)
        f = (1 + lens * r2) / (1 + max(lens, 0.0))  # pincushion keeps its corners inside the crop
        uu, vv = uu * f, vv * f
    if "structural_warping" in edits:
        s, seed, _ = edits["structural_warping"]
        g = np.random.default_rng(seed)
        n, amp = (9, 0.6) if variant("structural_warping", seed) == "ripple" else (5, 1.0)
        f1, f2 = (torch.from_numpy(g.normal(0, 1, (1, 2, n, n))) for _ in range(2))
        ph = 2 * math.pi * (t + g.uniform())
        field = torch.cos(ph)[:, None, None, None] * f1 + torch.sin(ph)[:, None, None, None] * f2
        field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True) * s * RECIPE["warp"] * amp
        uu, vv = uu + field[:, 0], vv + field[:, 1]
    half_w, half_h = (cw / 2)[:, None, None], (cw / 2 / (w / h))[:, None, None]
    cr, sr = torch.cos(roll)[:, None, None], torch.sin(roll)[:, None, None]
    x = centre[:, 0, None, None] + cr * uu * half_w - sr * vv * half_h
    y = centre[:, 1, None, None] + sr * uu * half_w + cr * vv * half_h
    return torch.stack([2 * x / sw - 1, 2 * y / sh - 1], dim=-1).float()


def _photometric(x: torch.Tensor, edits: dict) -> torch.Tensor:
    """Global colour/tone edits on float frames [T, 3, h, w] in 0..1."""
    if "exposure" in edits:
        s, seed, d = edits["exposure"]
        kind = variant("exposure", seed)
        if kind == "offset":  # lifted / crushed: a brightness offset, clipped
            x = (x + d * s * RECIPE["offset"]).clamp(0, 1)
        else:
            stops = d * s * (RECIPE_V11["uneven_stops"] * filters.ramp(x, seed) if kind == "uneven" else _exposure_stops())
            x = (x.clamp(0, 1) ** 2.2 * 2 ** stops).clamp(0, 1) ** (1 / 2.2)
    if "contrast" in edits:
        s, seed, d = edits["contrast"]
        if variant("contrast", seed) == "tone_curve":  # S-curve (harsh) or inverse S (muddy midtones)
            y = x.clamp(0, 1)
            x = y + d * s * (y * y * (3 - 2 * y) - y) * 2.0
        else:
            m = filters.luma(x).mean()
            f = 1 - RECIPE["contrast_low"] * s if d < 0 else 1 + RECIPE["contrast_high"] * s
            x = m + (x - m) * f
    if "color_cast" in edits:
        s, seed, _ = edits["color_cast"]
        g = np.random.default_rng(seed)
        v = g.normal(0, 1, 3)
        v = v - v.mean()
        v = v / (np.linalg.norm(v) + 1e-8)
        if variant("color_cast", seed) == "tint":  # additive: shadows take the colour
            x = x + torch.from_numpy(RECIPE["tint"] * s * v).float().view(1, 3, 1, 1)
        else:
            x = x * torch.from_numpy(np.exp(RECIPE["cast"] * s * v)).float().view(1, 3, 1, 1)
    if "saturation" in edits:
        s, _, d = edits["saturation"]
        y = filters.luma(x)
        f = 1 - RECIPE["sat_low"] * s if d < 0 else 1 + RECIPE["sat_high"] * s
        x = y + (x - y) * f
    if "temporal_flicker" in edits:
        s, seed, _ = edits["temporal_flicker"]
        g = np.random.default_rng(seed)
        kind = variant("temporal_flicker", seed)
        if kind == "periodic":  # mains-frequency-like beat: a sinusoidal gain
            n = np.repeat(1.5 * np.sin(2 * math.pi * (g.uniform(0.2, 0.5) * np.arange(T) + g.uniform()))[:, None], 3, 1)
        else:
            n = g.normal(0, 1, (T, 1)) + 0.3 * g.normal(0, 1, (T, 3))
        gain = torch.from_numpy(np.exp(RECIPE["flicker"] * s * n)).float().view(T, 3, 1, 1)
        if kind == "regional":  # only part of the frame flickers (a light source, an auto-exposure zone)
            _, _, h, w = x.shape
            ramp = torch.from_numpy(g.normal(0, 1, (1, 1, 2, 2))).float()
            ramp = F.interpolate(ramp, size=(h, w), mode="bilinear", align_corners=True).sigmoid()
            gain = 1 + (gain - 1) * ramp * 1.6
        x = x * gain
    return x


def camera_frames(levels: list, cam: dict, edits: dict) -> torch.Tensor:
    """Float frames [T, 3, h, w] in 0..1: the camera path over the photo plus the geometric edits."""
    w, _ = cam["size"]
    src = levels[1] if cam["cw0"] / w > 1.6 else levels[0]  # pyramid level: no aliasing in the crop
    img = torch.from_numpy(src).permute(2, 0, 1)[None].float() / 255
    grid = _grid(cam, {k: v for k, v in edits.items() if k in GEOMETRIC and v[0] > 0})
    return F.grid_sample(img.expand(T, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def finish(x: torch.Tensor, edits: dict) -> np.ndarray:
    """Apply the non-geometric edits to camera frames and bring them to the model input (model_input)."""
    _, _, h, w = x.shape
    x = _photometric(x, {k: v for k, v in edits.items() if v[0] > 0})
    if edits.get("sharpness", (0,))[0] > 0:
        s, seed, _ = edits["sharpness"]
        kind = variant("sharpness", seed)
        if kind == "defocus_disc":
            if s * RECIPE["disc_radius"] > 0.5:
                x = filters.disc_blur(x, s * RECIPE["disc_radius"])
        elif kind == "anisotropic":
            if s * RECIPE_V4["aniso_sigma"] > 0.3:
                x = filters.aniso_blur(x, s * RECIPE_V4["aniso_sigma"], seed)
        elif kind == "oversharpen":  # recipe 9: an unsharp mask, the halos of a sharpening pass
            x = filters.unsharp(x, s, seed, RECIPE_V9, 9)
        elif s * RECIPE["blur_sigma"] > 0.15:
            x = filters.gauss_blur(x, s * RECIPE["blur_sigma"])
    if edits.get("noise", (0,))[0] > 0:
        s, seed, _ = edits["noise"]
        g = torch.Generator().manual_seed(int(seed))
        kind = variant("noise", seed)
        if kind == "oversharpen":  # recipe 10: the same unsharp mask, counted as an artifact
            x = filters.unsharp(x, s, seed, RECIPE_V10, 10)
        elif kind == "impulse":  # dead / hot pixels, salt and pepper
            u = torch.rand(T, 1, h, w, generator=g)
            hot = (torch.rand(T, 1, h, w, generator=g) < 0.5).float()
            x = torch.where(u < s * RECIPE["impulse"], hot.expand_as(x), x)
        else:
            n = 0.7 * torch.randn(T, 1, h, w, generator=g) + 0.5 * torch.randn(T, 3, h, w, generator=g)
            if kind == "shot":  # photon noise: grows with the signal
                n = n * x.clamp(0, 1).sqrt() * (RECIPE["shot_sigma"] / RECIPE["noise_sigma"])
            x = x + n * s * _noise_sigma()
    clip = (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if edits.get("frame_stutter", (0,))[0] > 0:
        s, seed, _ = edits["frame_stutter"]
        k = min(T - 1, int(round(s * RECIPE["stutter_max"])))
        frozen = np.random.default_rng(seed).permutation(np.arange(1, T))[:k]  # nested: more s ⊇ fewer
        kind = variant("frame_stutter", seed)
        if kind != "default":
            clip = filters.partial_freeze(clip, frozen, kind, seed)
        else:
            idx = np.arange(T)
            for t in range(1, T):
                if t in frozen:
                    idx[t] = idx[t - 1]
            clip = clip[idx]
    if edits.get("compression_artifacts", (0,))[0] > 0:
        s, seed, _ = edits["compression_artifacts"]
        kind = variant("compression_artifacts", seed)
        lo, hi = RECIPE_V6["hevc_crf"] if kind == "hevc" else RECIPE["crf"]
        qlo, qhi = RECIPE_V4["mpeg2_q"]
        q = int(round(qlo + s * (qhi - qlo))) if kind == "mpeg2" else 0
        clip = filters.compress(np.ascontiguousarray(clip), lo + s * (hi - lo), mpeg2_q=q, hevc=kind == "hevc")
    if "delivery" in edits:  # the same delivery encode for every clip of the group (not an edit)
        clip = filters.compress(np.ascontiguousarray(clip), edits["delivery"][0])
    return model_input(clip)


def _noise_sigma() -> float:
    return RECIPE["noise_sigma"] if V1_ONLY["on"] else RECIPE["recipe_v3"]["noise_sigma"]


def render(levels: list, cam: dict, edits: dict) -> np.ndarray:
    """One clip with edits {criterion: (strength 0..1, pattern seed, direction ±1)} -> uint8 [2T, H, W, 3]."""
    return finish(camera_frames(levels, cam, edits), edits)


def _strengths(rng: np.random.Generator) -> tuple[float, float, float]:
    """Three increasing strengths of one edit (often starting at 0 = unedited), pairwise gaps >= min_gap."""
    gap = RECIPE["min_gap"]
    s0 = 0.0 if rng.uniform() < RECIPE["p_pristine"] else float(rng.uniform(0.0, 0.35))
    s1 = float(rng.uniform(s0 + gap, 1.0 - gap))
    return s0, s1, float(rng.uniform(s1 + gap, 1.0))


def nuisance_edits(c: int, rng: np.random.Generator) -> dict:
    """Edits of OTHER criteria applied equally to every clip of a group of criterion c: sometimes one of any
    criterion (recipe 3), and with recipe 5 on, for half the VA / VF groups, one plausibility defect."""
    base = {}
    if rng.uniform() < RECIPE["p_nuisance"]:
        o = int(rng.integers(len(CRITERIA) - 1))
        o = o + (o >= c)
        base[CRITERIA[o]] = (float(rng.uniform(0.05, RECIPE["nuisance_max"])), int(rng.integers(2**31)),
                             float(rng.choice([-1.0, 1.0])))
    if EXTRA_FAMILIES["recipe5"] and CRITERION_DIMENSION[c] != "VP" \
            and rng.uniform() < RECIPE_V5["p_temporal_nuisance"]:
        o = VP_CRITERIA[int(rng.integers(len(VP_CRITERIA)))]
        base[CRITERIA[o]] = (float(rng.uniform(0.05, RECIPE_V5["temporal_nuisance_max"])),
                             int(rng.integers(2**31)), float(rng.choice([-1.0, 1.0])))
    return base


def sample_group(sources: list, rng: np.random.Generator, criterion: int | None = None,
                 strengths: tuple[float, ...] | None = None):
    """One clip rendered at increasing strengths of one criterion's edit.

    Returns (clips uint8 [K, 2T, H, W, 3] (views along time, model_input), criterion index, strengths).
    Every (i < j) is a preference pair with i the better side: K clips give K(K-1)/2 pairs, so encoding
    cost per pair drops.
    """
    for _ in range(8):
        c = int(rng.integers(len(CRITERIA))) if criterion is None else criterion
        src = sources[int(rng.integers(len(sources)))]
        v3 = RECIPE["recipe_v3"]
        fast = not V1_ONLY["on"] and rng.uniform() < v3["p_fast"]
        cam = _camera(src.levels[0].shape, rng, fast=fast)
        st = strengths if strengths is not None else _strengths(rng)
        seed, d = int(rng.integers(2**31)), float(rng.choice([-1.0, 1.0]))
        base = nuisance_edits(c, rng)
        if not V1_ONLY["on"] and rng.uniform() < v3["p_delivery"]:
            base["delivery"] = (float(rng.uniform(*v3["delivery_crf"])), 0, 0.0)
        if CRITERIA[c] in GEOMETRIC:
            clips = np.stack([render(src.levels, cam, {**base, CRITERIA[c]: (s, seed, d)}) for s in st])
        else:  # same camera frames for every strength: sample them once
            x = camera_frames(src.levels, cam, base)
            clips = np.stack([finish(x, {**base, CRITERIA[c]: (s, seed, d)}) for s in st])
        diffs = np.abs(np.diff(clips[:, :T].astype(np.float32), axis=0)).mean(axis=(1, 2, 3, 4))
        if diffs.min() >= RECIPE["min_diff"]:
            break
    return clips, c, st


GROUP_PAIRS = ((0, 1), (0, 2), (1, 2))  # (better, worse) indices inside a group of 3


class GroupDataset(torch.utils.data.Dataset):
    """Deterministic on-the-fly groups: item i of epoch e is seeded by (seed, e, i), whatever the workers."""

    def __init__(self, sources: list, length: int, seed: int, epoch: int = 0):
        self.sources, self.length, self.seed, self.epoch = sources, length, seed, epoch
        self.flags = dict(EXTRA_FAMILIES)  # carried to workers however they are started

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        torch.set_num_threads(1)
        EXTRA_FAMILIES.update(self.flags)
        clips, c, _ = sample_group(self.sources, np.random.default_rng([self.seed, self.epoch, i]))
        return torch.from_numpy(clips), c


def fixed_groups(sources: list, per_criterion: int, seed: int) -> list:
    """A fixed evaluation set: `per_criterion` groups (3 pairs each) for every criterion."""
    return [sample_group(sources, np.random.default_rng([seed, c, i]), criterion=c)
            for c in range(len(CRITERIA)) for i in range(per_criterion)]
