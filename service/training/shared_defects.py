"""Relative consistency under a shared defect: a clip against the same clip edited on ONE aesthetics or
fidelity criterion, both sides carrying the SAME plausibility defect (flicker, stutter, jitter, warp).

Why: plausibility must not move, the defect is equal on both sides. With a shared jitter or flicker, 2.2.1
called a darkened render of a val photo the MORE plausible one (it reads the defect's size in absolute
intensity, smaller on the darker clip), as it does with the darkened served example pans
(service/model/README.md, "Recipe 5"). Scored on the val photos' renders (`aesrm-eval --shared-defects`),
never on the test photos or the served examples, so the number can be looked at while choosing a recipe.
"""

from __future__ import annotations

import numpy as np
import torch

from service.model.network import DIMENSIONS
from service.training.data import CRITERIA, CRITERION_DIMENSION, VP_CRITERIA, _camera, recipe_flags, render
from service.training.recipes import shipped_flags

SHARED_SEED = 20261207
SHARED_STRENGTH = 0.3  # the shared plausibility defect: visible, well inside the training range
STRONG = 0.8  # a dimension "moves strongly" outside [1 - STRONG, STRONG], as issue 10 counts off-target moves


def shared_defect_pairs(model, sources: list, per_case: int = 2, seed: int = SHARED_SEED,
                        cases: list[tuple[str, str]] | None = None, dark_per_case: int = 4) -> dict:
    """Every (edited VA/VF criterion, shared VP defect) case `per_case` times on `sources` (cycled): P(clean
    side better) per dimension; and apart ("darkened") the case 2.2.1 got wrong, the exposure edit darkening
    at full strength with each shared defect, dark_per_case pairs each. `cases`: (edited, shared) criterion
    names, default every combination. Edited at full strength in a random direction, the shared defect at
    SHARED_STRENGTH with one pattern on both sides. Rendered with the shipped recipe whatever the model was
    trained on, so every model is scored on the same pairs."""
    vp_only = [CRITERIA[v] for v in VP_CRITERIA]
    with recipe_flags(**shipped_flags()):
        rows = _rows(model, sources, per_case, seed, cases)
        dark = _rows(model, sources, dark_per_case, seed + 1, [("exposure", v) for v in vp_only], direction=-1.0)
    dev = lambda rs: round(float(np.mean([abs(r["p"]["VP"] - 0.5) for r in rs])), 3)  # noqa: E731
    by = lambda key: {k: dev([r for r in rows if r[key] == k])  # noqa: E731
                      for k in dict.fromkeys(r[key] for r in rows)}
    return {"rows": rows, "pairs": len(rows), "accuracy": round(float(np.mean([r["ok"] for r in rows])), 3),
            "vp_strong": round(float(np.mean([r["vp_strong"] for r in rows])), 3),
            "vp_deviation": dev(rows), "vp_deviation_by_edit": by("edited"), "vp_deviation_by_shared": by("shared"),
            "darkened": {"pairs": len(dark), "vp_mean": round(float(np.mean([r["p"]["VP"] for r in dark])), 3),
                         "vp_strong": round(float(np.mean([r["vp_strong"] for r in dark])), 3),
                         "vp_mean_by_shared": {
                             v: round(float(np.mean([r["p"]["VP"] for r in dark if r["shared"] == v])), 3)
                             for v in vp_only}}}


def pair_clips(src, edited: str, shared: str, seed, fast: bool = False, shared_strength: float = SHARED_STRENGTH,
               direction: float | None = None) -> np.ndarray:
    """uint8 [2, 2T, H, W, 3] (model_input): the clip with `shared` at shared_strength, then the same clip
    (camera, defect pattern) with `edited` at full strength in `direction` (default: seeded, ±1)."""
    rng = np.random.default_rng(seed)
    cam = _camera(src.levels[0].shape, rng, fast=fast)
    base = {shared: (shared_strength, int(rng.integers(2**31)), float(rng.choice([-1.0, 1.0])))}
    edit = (1.0, int(rng.integers(2**31)), float(rng.choice([-1.0, 1.0])))
    if direction is not None:
        edit = (1.0, 2 * (edit[1] // 2), direction)  # an even pattern seed: exposure's "stops" variant
    return np.stack([render(src.levels, cam, base), render(src.levels, cam, {**base, edited: edit})])


def _rows(model, sources: list, per_case: int, seed: int, cases: list[tuple[str, str]] | None,
          direction: float | None = None) -> list[dict]:
    if cases is None:
        cases = [(CRITERIA[c], CRITERIA[v]) for c, dc in enumerate(CRITERION_DIMENSION) if dc != "VP"
                 for v in VP_CRITERIA]
    vp = DIMENSIONS.index("VP")
    rows = []
    for n, (c, v) in enumerate((CRITERIA.index(c), CRITERIA.index(v)) for c, v in cases):
        for i in range(per_case):
            src = sources[(n * per_case + i) % len(sources)]
            clips = pair_clips(src, CRITERIA[c], CRITERIA[v], [seed, c, v, i], fast=bool(i % 2), direction=direction)
            with torch.no_grad():
                emb = model.encode_packed(torch.from_numpy(clips))
                p = torch.sigmoid(model.heads(emb[0:1], emb[1:2])[0][0].double())
            rows.append({"edited": CRITERIA[c], "shared": CRITERIA[v], "photo": src.id,
                         "p": {d: round(float(p[j]), 3) for j, d in enumerate(DIMENSIONS)},
                         "ok": bool(p[DIMENSIONS.index(CRITERION_DIMENSION[c])] > 0.5),
                         "vp_strong": bool(p[vp] > STRONG or p[vp] < 1 - STRONG)})
    return rows


def print_shared_defects(m: dict) -> None:
    print(f"\nshared plausibility defect, one VA/VF edit ({m['pairs']} pairs): edited dimension right "
          f"{m['accuracy']:.3f}, VP |P - 0.5| {m['vp_deviation']:.3f} (0 = still), "
          f"VP strong moves {m['vp_strong']:.3f}")
    print("  VP |P - 0.5| by edit: " + ", ".join(f"{k} {v:.2f}" for k, v in m["vp_deviation_by_edit"].items()))
    print("  ... by shared defect: " + ", ".join(f"{k} {v:.2f}" for k, v in m["vp_deviation_by_shared"].items()))
    d = m["darkened"]
    print(f"  darkened ({d['pairs']} pairs): VP mean {d['vp_mean']:.3f} (0.5 = still, below = the dark clip "
          f"called more plausible), strong moves {d['vp_strong']:.3f}; by shared defect: "
          + ", ".join(f"{k} {v:.2f}" for k, v in d["vp_mean_by_shared"].items()))
