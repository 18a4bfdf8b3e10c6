"""Can a generator hack the reward by punching its output up? The overall reward of a clean clip against the same
clip over-processed the way reward-tuned generators drift (saturation, contrast, over-sharpening):

    python -m service.training.hack_probe [--checkpoint X.pt] [--split test2] [--clips-per-photo 1] [--json out.json]

A GRPO run climbs whatever the reward prefers. Aesthetic and sharpness rewards are known to be climbed by
saturating and over-sharpening, so the question is not "is the boosted clip worse" for a mild boost (a person
may like it) but how often the reward prefers it, and how strongly, as the boost grows. Over-sharpening is not
in the training recipe (its sharpness edit only blurs); saturation and contrast boosts are the upper side of
recipe edits. No edit here is a held-out family. Numbers only: nothing is written to the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from service.model.network import DIMENSIONS
from service.training import data, filters
from service.training.evaluate import EVAL_SEED, embed_groups
from service.training.heldout import STRONG

STRENGTHS = (0.5, 1.0)
PROBE_SEED = EVAL_SEED + 7


def _saturate(x: torch.Tensor, s: float) -> torch.Tensor:  # x1.4 / x1.8 chroma around the luma
    y = filters.luma(x)
    return y + (x - y) * (1 + 0.8 * s)


def _contrast(x: torch.Tensor, s: float) -> torch.Tensor:  # x1.3 / x1.6 around the clip's mean luma
    m = filters.luma(x).mean()
    return m + (x - m) * (1 + 0.6 * s)


def _oversharpen(x: torch.Tensor, s: float) -> torch.Tensor:  # unsharp mask, sigma 1.5 px, amount 1.5 / 3
    return x + 3.0 * s * (x - filters.gauss_blur(x, 1.5))


PROBES = {"saturation": _saturate, "contrast": _contrast, "oversharpen": _oversharpen,
          "all_three": lambda x, s: _oversharpen(_contrast(_saturate(x, s), s), s)}


def probe_groups(sources: list, clips_per_photo: int = 1, seed: int = PROBE_SEED) -> list:
    """[(clips uint8 [1 + len(PROBES) * len(STRENGTHS), 2T, H, W, 3], photo id, None)]: one camera clip of each
    photo, clean first, then every probe at every strength (PROBES order, STRENGTHS within), with the shipped
    recipe's renderer (no delivery encode: what the generator produced)."""
    groups = []
    for pi, src in enumerate(sources):
        for k in range(clips_per_photo):
            cam = data._camera(src.levels[0].shape, np.random.default_rng([seed, pi, k]))
            x = data.camera_frames(src.levels, cam, {})
            clips = [data.finish(x, {})] + [data.finish(f(x, s), {}) for f in PROBES.values() for s in STRENGTHS]
            groups.append((np.stack(clips), src.id, None))
    return groups


@torch.inference_mode()
def hack_rates(model, groups: list) -> dict:
    """Per probe and strength: how often the overall reward (mean of the three dimension logits, the gateway's
    default weights) prefers the boosted clip to the clean one (`hack_rate`), how often strongly (P > 0.8,
    `strong_hack_rate`), and the mean dimension / overall logits (positive = the clean clip preferred)."""
    model.eval()
    emb = embed_groups(model, groups)
    out: dict[str, dict] = {}
    for p, name in enumerate(PROBES):
        for q, s in enumerate(STRENGTHS):
            k = 1 + p * len(STRENGTHS) + q
            dim, _ = model.heads(emb[:, 0], emb[:, k])
            dim = dim.double()
            overall = dim.mean(1)
            out[f"{name}@{s}"] = {
                "clips": len(groups), "hack_rate": round(float((overall < 0).double().mean()), 4),
                "strong_hack_rate": round(float((overall < -STRONG).double().mean()), 4),
                "mean_overall_logit": round(float(overall.mean()), 3),
                "mean_dimension_logits": dict(zip(DIMENSIONS, np.round(dim.mean(0).numpy(), 3).tolist()))}
    return out


def main(argv: list[str] | None = None) -> None:
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy
    from service.training.sources import split_sources

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--split", default="test2", choices=["test", "val", "test2"])
    ap.add_argument("--clips-per-photo", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, manifest = load_proxy(args.checkpoint)
    sources = split_sources(args.split)
    with data.recipe_flags(**{flag: False for flag in data.EXTRA_FAMILIES}):  # the renderer, not a recipe choice
        res = hack_rates(model, probe_groups(sources, args.clips_per_photo))
    print(f"{manifest['model_id']} {manifest['version']} sha256={manifest['checkpoint_sha256'][:12]}: "
          f"{args.split} split, {len(sources)} photos x {args.clips_per_photo} clips")
    print(f"{'probe':18s} {'hack':>6s} {'strong':>7s} {'overall':>8s}  " + " ".join(f"{d:>6s}" for d in DIMENSIONS))
    for name, r in res.items():
        print(f"{name:18s} {r['hack_rate']:6.3f} {r['strong_hack_rate']:7.3f} {r['mean_overall_logit']:8.3f}  "
              + " ".join(f"{v:6.2f}" for v in r["mean_dimension_logits"].values()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "photos": len(sources), "probes": res, "version": manifest["version"],
                       "checkpoint_sha256": manifest["checkpoint_sha256"], "seed": PROBE_SEED,
                       "strong": round(math.exp(STRONG) / (1 + math.exp(STRONG)), 3)}, f, indent=1)


if __name__ == "__main__":
    main()
