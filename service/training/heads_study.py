"""What the heads of a checkpoint do, read from their RAW logits (before temperature and bound):

    python -m service.training.heads_study --checkpoint X.pt [--json out.json]

1. Sibling votes: for pairs of each edited criterion (test split, the `aesrm-eval` pairs), the mean raw
   logit of every criterion of the same dimension and how often it agrees with the label. A dimension sums
   its criteria, so a sibling that votes for the damaged side ("the noisy clip is sharper") out-votes a
   right criterion; this is how 2.0.0's VF loss was found (service/model/README.md, "Proxy 2.1.0").
2. Logit scale: median |raw dimension logit| where the dimension was edited vs where it was not.
3. Calibration alternatives: maps of the raw dimension logits fitted on the val photos (the pairs
   `train.calibrate` uses) and scored on the test split: ECE of the edited dimension (overall and per
   dimension), off-target strong moves, overall accuracy. One shared temperature fitted with the off-target
   label 0.5 is what `calibrate` ships; the others show what a different fit would cost.
Numbers only: nothing is written to the checkpoint.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from service.model.network import DIMENSIONS
from service.training.data import CRITERIA, CRITERION_DIMENSION, GROUP_PAIRS, fixed_groups
from service.training.evaluate import EVAL_SEED, embed_groups
from service.training.heldout import STRONG, ece
from service.training.train import fit_temperature

DIM_OF = np.array([DIMENSIONS.index(d) for d in CRITERION_DIMENSION])


@torch.inference_mode()
def raw_heads(model, groups: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dimension logits [P, 3], criterion logits [P, C], edited criterion [P]) of every group pair, better
    side first, unbounded and uncalibrated."""
    emb = embed_groups(model, groups)
    ea = torch.stack([emb[g, i] for g in range(len(groups)) for i, _ in GROUP_PAIRS])
    eb = torch.stack([emb[g, j] for g in range(len(groups)) for _, j in GROUP_PAIRS])
    dim, crit = model.raw_heads(ea, eb)
    return dim.double().numpy(), crit.double().numpy(), np.repeat([g[1] for g in groups], len(GROUP_PAIRS))


def sibling_votes(crit: np.ndarray, c: np.ndarray) -> dict:
    out = {}
    for k, name in enumerate(CRITERIA):
        m = c == k
        if not m.any():
            continue
        sibs = [j for j in range(len(CRITERIA)) if DIM_OF[j] == DIM_OF[k]]
        out[name] = {CRITERIA[j]: {"mean_logit": round(float(crit[m, j].mean()), 3),
                                   "agrees": round(float(np.mean(crit[m, j] > 0)), 3)} for j in sibs}
    return out


def logit_scale(dim: np.ndarray, c: np.ndarray) -> dict:
    """Median |raw dimension logit| on pairs that edit that dimension vs pairs that edit another: a
    temperature can only make a dimension confident where it is right and indifferent elsewhere when the
    first is clearly larger than the second."""
    d = DIM_OF[c]
    return {n: {"edited": round(float(np.median(np.abs(dim[d == k, k]))), 3),
                "not_edited": round(float(np.median(np.abs(dim[d != k, k]))), 3)} for k, n in enumerate(DIMENSIONS)}


def _bound(x: np.ndarray, b: float) -> np.ndarray:
    return b * np.tanh(x / b) if b > 0 else x


def _score(dim: np.ndarray, c: np.ndarray, temps: np.ndarray, b: float) -> dict:
    d = DIM_OF[c]
    lg = _bound(dim / temps[None], b)
    on = lg[np.arange(len(d)), d]
    conf = np.maximum(1 / (1 + np.exp(-on)), 1 / (1 + np.exp(on)))
    others = np.abs(lg) > STRONG
    others[np.arange(len(d)), d] = False
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {"temperatures": dict(zip(DIMENSIONS, [r(t) for t in temps])),
            "ece": r(ece(list(zip(conf, on > 0)))),
            "ece_per_dimension": {n: r(ece(list(zip(conf[d == k], on[d == k] > 0)))) for k, n in enumerate(DIMENSIONS)},
            "off_target_strong": r(others.any(1).mean()), "overall_accuracy": r(np.mean(lg.mean(1) > 0)),
            "accuracy": r(np.mean(on > 0))}


def calibration_alternatives(val: tuple, test: tuple, bound: float) -> dict:
    vd, _, vc = val
    td, _, tc = test
    k_of = DIM_OF[vc]
    on = [vd[k_of == k, k] for k in range(len(DIMENSIONS))]
    off = [vd[k_of != k, k] for k in range(len(DIMENSIONS))]
    shared_mixed = fit_temperature(np.concatenate(on), np.concatenate(off), bound)
    shared_on = fit_temperature(np.concatenate(on), None, bound)
    fits = {
        "shared, off-target label 0.5 (shipped)": np.full(3, shared_mixed),
        "shared, edited dimension only": np.full(3, shared_on),
        "per dimension, edited dimension only": np.array([fit_temperature(on[k], None, bound) for k in range(3)]),
        "per dimension, off-target label 0.5": np.array([fit_temperature(on[k], off[k], bound) for k in range(3)]),
    }
    return {name: _score(td, tc, t, bound) for name, t in fits.items()}


def main(argv: list[str] | None = None) -> None:
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy
    from service.training.sources import load_sources

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--per-criterion", type=int, default=40, help="test groups per criterion (aesrm-eval's)")
    ap.add_argument("--val-per-criterion", type=int, default=8, help="val groups per criterion (calibrate's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, manifest = load_proxy(args.checkpoint)
    sources = load_sources()
    split = lambda s: [x for x in sources if x.split == s]  # noqa: E731
    test = raw_heads(model, fixed_groups(split("test"), args.per_criterion, EVAL_SEED))
    val = raw_heads(model, fixed_groups(split("val"), args.val_per_criterion, EVAL_SEED + 1))
    out = {"version": manifest["version"], "checkpoint_sha256": manifest["checkpoint_sha256"],
           "sibling_votes_test": sibling_votes(test[1], test[2]),
           "logit_scale_test": logit_scale(test[0], test[2]),
           "calibration_alternatives": calibration_alternatives(val, test, model.config.bound)}
    print(f"{manifest['model_id']} {manifest['version']} sha256={manifest['checkpoint_sha256'][:12]}")
    print("\nsibling votes on the test split: mean raw logit (share agreeing with the label)")
    for name, sib in out["sibling_votes_test"].items():
        print(f"  {name:22s} " + "  ".join(f"{s}={v['mean_logit']:+.2f} ({v['agrees']:.2f})" for s, v in sib.items()))
    print("\nmedian |raw dimension logit| on the test split, pairs editing it vs pairs editing another dimension")
    for n, v in out["logit_scale_test"].items():
        print(f"  {n}: {v['edited']:.2f} vs {v['not_edited']:.2f}")
    print("\ncalibration fitted on val, scored on test")
    for name, r in out["calibration_alternatives"].items():
        print(f"  {name:40s} T={list(r['temperatures'].values())} ECE {r['ece']:.3f} {r['ece_per_dimension']} "
              f"off-target strong {r['off_target_strong']:.3f} overall {r['overall_accuracy']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
