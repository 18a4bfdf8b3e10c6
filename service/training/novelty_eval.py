"""How well the proxy's novelty signal separates in-distribution clips from held-out defect families.

    python -m service.training.novelty_eval --checkpoint X.pt [--fit] [--per-criterion 3] [--per-family 4]

In-distribution: every clip of `fixed_groups(test split)` (recipe edits on the 4 test photos, never seen
in training). Out-of-distribution: the edited clips (s > 0) of `heldout.heldout_groups(test split)`, per
family (defects that are not in the training recipe). Per family: AUROC of novelty (held-out edited clip vs
in-distribution clip; 0.5 = no separation) and the share of clips above the 1.0 threshold the
explanations use. `--fit` fits the statistics on train renders first (in memory, for a checkpoint that has
none, e.g. the shipped 1.1.0); the checkpoint file is never written.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from service.training.evaluate import EVAL_SEED, embed_groups


def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counted half (Mann-Whitney)."""
    allv = np.concatenate([neg, pos])
    ranks = allv.argsort().argsort().astype(float) + 1
    for v in np.unique(allv):  # average ranks of ties
        m = allv == v
        ranks[m] = ranks[m].mean()
    return float((ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.inference_mode()
def separation(model, sources: list, per_criterion: int, per_family: int) -> dict:
    from service.training.data import fixed_groups
    from service.training.heldout import heldout_groups

    test = [s for s in sources if s.split == "test"]
    ind = model.novelty(embed_groups(model, fixed_groups(test, per_criterion, EVAL_SEED)).flatten(0, 1)).numpy()
    held = heldout_groups(test, per_family)
    nov = model.novelty(embed_groups(model, held)).numpy()  # [G, 3]
    fams: dict[str, list[float]] = {}
    for gi, (_, fam, st) in enumerate(held):
        fams.setdefault(fam, []).extend(float(nov[gi, k]) for k in range(3) if st[k] > 0)
    clean = np.array([nov[gi, k] for gi, (_, _, st) in enumerate(held) for k in range(3) if st[k] == 0])
    row = lambda v: {"clips": len(v), "auroc": round(auroc(ind, np.asarray(v)), 3),  # noqa: E731
                     "above_1": round(float((np.asarray(v) > 1.0).mean()), 3),
                     "median": round(float(np.median(v)), 3)}
    return {"in_distribution": {"clips": len(ind), "above_1": round(float((ind > 1.0).mean()), 3),
                                "median": round(float(np.median(ind)), 3)},
            "heldout_clean_side": {"clips": len(clean), "above_1": round(float((clean > 1.0).mean()), 3),
                                   "median": round(float(np.median(clean)), 3)},
            "families": {f: row(v) for f, v in fams.items()},
            "all_heldout": row([x for v in fams.values() for x in v])}


def main(argv: list[str] | None = None) -> None:
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy
    from service.model.network import with_novelty_buffers
    from service.training.sources import load_sources
    from service.training.train import fit_novelty, novelty_groups

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--fit", action="store_true", help="fit the statistics first (in memory only)")
    ap.add_argument("--fit-per-criterion", type=int, default=None)
    ap.add_argument("--per-criterion", type=int, default=3)
    ap.add_argument("--per-family", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, manifest = load_proxy(args.checkpoint)
    sources = load_sources()
    fit = None
    if args.fit or not model.has_novelty:
        model = with_novelty_buffers(model)
        groups = novelty_groups(sources, *([args.fit_per_criterion] if args.fit_per_criterion else []))
        fit = fit_novelty(model, groups, f"train split, {len(groups)} groups (novelty_groups)")
        print(f"fitted: {fit}", flush=True)
    out = {"checkpoint": f"{manifest['version']} {manifest['checkpoint_sha256'][:12]}", "fit": fit,
           **separation(model, sources, args.per_criterion, args.per_family)}
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
