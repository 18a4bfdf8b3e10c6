"""What the heads of a checkpoint do, read from their RAW logits (before temperature and bound):

    python -m service.training.heads_study --checkpoint X.pt [--json out.json]

1. Sibling votes: for pairs of each edited criterion (test split, the `aesrm-eval` pairs), the mean raw
   logit of every criterion of the same dimension and how often it agrees with the label. A dimension sums
   its criteria, so a sibling that votes for the damaged side ("the noisy clip is sharper") out-votes a
   right criterion; this is how 2.0.0's VF loss was found (service/model/README.md, "Proxy 2.1.0").
2. Logit scale: median |raw dimension logit| where the dimension was edited vs where it was not.
3. Calibration alternatives: maps of the raw dimension logits fitted on the val photos (the pairs
   `train.calibrate` uses) and scored on the test split and the held-out families: ECE of the edited dimension (overall and per
   dimension), off-target strong moves, overall accuracy. One shared temperature fitted with the off-target
   label 0.5 is what `calibrate` ships; the others show what a different fit would cost, the last one a
   two-parameter odd map per dimension (temperature and exponent) that a plain temperature cannot express.
Numbers only: nothing is written to the checkpoint.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from service.model.network import DIMENSIONS
from service.training.data import CRITERIA, CRITERION_DIMENSION, GROUP_PAIRS, fixed_groups, use_recipe_of
from service.training.evaluate import EVAL_SEED, VAL_GROUPS_PER_CRITERION, pair_raw_heads, validation_groups
from service.training.heldout import FAMILIES, STRONG, ece, heldout_groups, pair_indices
from service.training.train import calibration_loss, fit_temperature

DIM_OF = np.array([DIMENSIONS.index(d) for d in CRITERION_DIMENSION])


@torch.inference_mode()
def raw_heads(model, groups: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dimension logits [P, 3], criterion logits [P, C], edited criterion [P]) of every group pair, better
    side first, unbounded and uncalibrated."""
    dim, crit = pair_raw_heads(model, groups)
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


def _power(x: np.ndarray, t, g) -> np.ndarray:
    """sign(x) * |x / t| ** g: odd and monotone, so antisymmetry and every per-dimension verdict stay; g > 1
    shrinks small (off-target) logits relative to large (edited) ones, which one temperature cannot."""
    return np.sign(x) * np.abs(x / t) ** g


POWER_GRID = np.round(np.arange(0.5, 3.01, 0.1), 2)


def fit_power(on: np.ndarray, off: np.ndarray, bound: float) -> tuple[float, float]:
    """(temperature, exponent) of least cross-entropy (fit_temperature's objective: label 1 for `on`, 0.5
    for `off`) over TEMPERATURE_GRID x POWER_GRID."""
    best = (np.inf, 1.0, 1.0)
    for g in POWER_GRID:
        t = fit_temperature(_power(on, 1.0, g), _power(off, 1.0, g), bound)
        t = t ** (1 / g)  # |x|^g / t' == |x / t' ** (1 / g)| ** g
        ce = calibration_loss(_bound(_power(on, t, g), bound), _bound(_power(off, t, g), bound))
        best = min(best, (ce, float(t), float(g)))
    return best[1], best[2]


def _score(dim: np.ndarray, d: np.ndarray, temps: np.ndarray, b: float, powers: np.ndarray | None = None) -> dict:
    """Metrics of the calibrated dimension logits of pairs whose edited dimension is d (index per pair)."""
    powers = np.ones(len(temps)) if powers is None else powers
    lg = _bound(_power(dim, temps[None], powers[None]), b)
    on = lg[np.arange(len(d)), d]
    conf = np.maximum(1 / (1 + np.exp(-on)), 1 / (1 + np.exp(on)))
    others = np.abs(lg) > STRONG
    others[np.arange(len(d)), d] = False
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {"temperatures": dict(zip(DIMENSIONS, [r(t) for t in temps])),
            "powers": dict(zip(DIMENSIONS, [r(g) for g in powers])),
            "ece": r(ece(list(zip(conf, on > 0)))),
            "ece_per_dimension": {n: r(ece(list(zip(conf[d == k], on[d == k] > 0)))) for k, n in enumerate(DIMENSIONS)},
            "off_target_strong": r(others.any(1).mean()), "overall_accuracy": r(np.mean(lg.mean(1) > 0)),
            "accuracy": r(np.mean(on > 0))}


def calibration_alternatives(val: tuple, test: tuple, bound: float, heldout: tuple | None = None) -> dict:
    """Each fit's scores on the test split, and under "heldout" on held-out-family pairs (dimension logits
    [P, 3], edited dimension index [P]) when given."""
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
    tg = np.array([fit_power(on[k], off[k], bound) for k in range(3)])
    maps = {name: (t, None) for name, t in fits.items()}
    maps["per dimension, odd power map, off-target label 0.5"] = (tg[:, 0], tg[:, 1])
    out = {}
    for name, (t, g) in maps.items():
        out[name] = _score(td, DIM_OF[tc], t, bound, g)
        if heldout is not None:
            out[name]["heldout"] = _score(heldout[0], heldout[1], t, bound, g)
    return out


@torch.inference_mode()
def heldout_raw_heads(model, groups: list) -> tuple[np.ndarray, np.ndarray]:
    """(raw dimension logits [P, 3], edited dimension index [P]) of the pairs evaluate_heldout scores."""
    dim, _ = pair_raw_heads(model, groups, lambda group: pair_indices(group[1]))
    d = [DIMENSIONS.index(FAMILIES[fam]) for _, fam, _ in groups for _ in pair_indices(fam)]
    return dim.double().numpy(), np.array(d)


def main(argv: list[str] | None = None) -> None:
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy
    from service.training.sources import load_sources

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--per-criterion", type=int, default=40, help="test groups per criterion (aesrm-eval's)")
    ap.add_argument("--val-per-criterion", type=int, default=VAL_GROUPS_PER_CRITERION,
                    help="val groups per criterion (calibrate's)")
    ap.add_argument("--heldout-per-family", type=int, default=24,
                    help="also score the fits on held-out families (aesrm-eval --heldout's pairs); 0 = skip")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, manifest = load_proxy(args.checkpoint)
    use_recipe_of(manifest)
    sources = load_sources()
    split = lambda s: [x for x in sources if x.split == s]  # noqa: E731
    test = raw_heads(model, fixed_groups(split("test"), args.per_criterion, EVAL_SEED))
    val = raw_heads(model, validation_groups(sources, args.val_per_criterion))
    held = (heldout_raw_heads(model, heldout_groups(split("test"), args.heldout_per_family))
            if args.heldout_per_family else None)
    out = {"version": manifest["version"], "checkpoint_sha256": manifest["checkpoint_sha256"],
           "sibling_votes_test": sibling_votes(test[1], test[2]),
           "logit_scale_test": logit_scale(test[0], test[2]),
           "calibration_alternatives": calibration_alternatives(val, test, model.config.bound, held)}
    print(f"{manifest['model_id']} {manifest['version']} sha256={manifest['checkpoint_sha256'][:12]}")
    print("\nsibling votes on the test split: mean raw logit (share agreeing with the label)")
    for name, sib in out["sibling_votes_test"].items():
        print(f"  {name:22s} " + "  ".join(f"{s}={v['mean_logit']:+.2f} ({v['agrees']:.2f})" for s, v in sib.items()))
    print("\nmedian |raw dimension logit| on the test split, pairs editing it vs pairs editing another dimension")
    for n, v in out["logit_scale_test"].items():
        print(f"  {n}: {v['edited']:.2f} vs {v['not_edited']:.2f}")
    print("\ncalibration fitted on val, scored on the test split (and on held-out families)")
    pct = lambda r: (f"ECE {r['ece']:.3f} {r['ece_per_dimension']} off-target strong {r['off_target_strong']:.3f} "  # noqa: E731
                     f"overall {r['overall_accuracy']:.3f}")
    for name, r in out["calibration_alternatives"].items():
        print(f"  {name}: T={list(r['temperatures'].values())} power={list(r['powers'].values())}\n"
              f"    test     {pct(r)}" + (f"\n    held-out {pct(r['heldout'])}" if "heldout" in r else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
