"""`python -m service.training.soup`: weight-space ensembles of a checkpoint and its fine-tune (WiSE-FT).

A fine-tune that teaches something new (a recipe's family) tends to lose a little of what its starting point
knew, and every fine-tune here has been judged by the selection rule on the shipped recipe's validation.
Wortsman et al. (2022, "Robust fine-tuning of zero-shot models") found that interpolating the weights of the
starting point and the fine-tuned model, theta = (1 - alpha) * base + alpha * tuned, keeps most of what each
knows and often generalises better than either: the two lie in one basin (the fine-tune started from base).
Every floating-point tensor of the state is interpolated (weights and BatchNorm running statistics); the
temperatures and the novelty statistics are then refitted on the soup as aesrm-train --calibrate-only does,
since neither model's fit belongs to the mixture. alpha 0 is base's function, 1 the fine-tune's.

    python -m service.training.soup --base <shipped.pt> --tuned <fine-tune.pt> --alpha 0.3 0.5 --out-dir DIR \
        [--selection-groups 40]

writes DIR/<tuned stem>-soup<alpha>.pt (+ manifest) per alpha and, with --selection-groups, prints the
selection rule's numbers for every soup and the shipped model on the same rendered groups (one render).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from service.model.checkpoint import load_proxy, save_checkpoint

# refitted after mixing (train.recalibrate), so they are taken from the tuned side as they are
REFITTED = ("dim_temperature", "crit_temperature", "emb_center", "emb_scale", "novelty_ref")


def interpolate(base: dict, tuned: dict, alpha: float) -> dict:
    """(1 - alpha) * base + alpha * tuned for every floating tensor; the tuned side's for the rest (BatchNorm's
    step counters, the buffers refitted afterwards). The two states must have the same keys and shapes."""
    if base.keys() != tuned.keys():
        raise ValueError(f"different architectures: keys only in one side {sorted(base.keys() ^ tuned.keys())}")
    out = {}
    for k, t in tuned.items():
        b = base[k]
        if b.shape != t.shape:
            raise ValueError(f"different architectures: {k} is {tuple(b.shape)} vs {tuple(t.shape)}")
        out[k] = torch.lerp(b, t, alpha) if t.is_floating_point() and k.rsplit(".", 1)[-1] not in REFITTED \
            else t.clone()
    return out


def write_soup(base_path: str, tuned_path: str, alpha: float, out: Path, refit: bool = True) -> dict:
    """Interpolate, save with the fine-tune's manifest (its recipe: the soup was trained on both) and a record
    of the mix, then refit the temperatures and novelty statistics on the soup (refit=False leaves the tuned
    side's: they need the val and train photos). Returns the manifest."""
    from service.training.train import init_record, recalibrate

    base, _ = load_proxy(base_path)
    model, manifest = load_proxy(tuned_path)
    if base.config != model.config:  # load_proxy fills the fields an older checkpoint's config lacks
        raise ValueError("different architectures: the two checkpoints' configs differ")
    model.load_state_dict(interpolate(base.state_dict(), model.state_dict(), alpha))
    training = dict(manifest.get("training", {}))
    training["soup"] = {"base": init_record(base_path), "tuned": init_record(tuned_path), "alpha": alpha,
                        "rule": "WiSE-FT: (1 - alpha) * base + alpha * tuned, every float tensor but the "
                                "temperatures and novelty statistics, which are refitted"}
    training["command"] = (f"python -m service.training.soup --base {base_path} --tuned {tuned_path} "
                           f"--alpha {alpha} --out-dir {out.parent}")
    keep = {k: v for k, v in manifest.items()
            if k not in ("checkpoint_file", "checkpoint_sha256", "calibrated", "novelty", "training", "metrics")}
    save_checkpoint(model, out, {**keep, "training": training, "metrics": {}})
    if refit:
        recalibrate(str(out), training.get("val_per_criterion", 8), torch.get_num_threads())
    return json.loads(out.with_suffix(".json").read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the starting point (usually the shipped checkpoint)")
    ap.add_argument("--tuned", required=True, help="a fine-tune of --base (aesrm-train --init <base>)")
    ap.add_argument("--alpha", type=float, nargs="+", required=True, help="weight of --tuned, 0..1")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--selection-groups", type=int, default=0,
                    help="also print the selection rule's numbers (val groups per criterion; 40 = the rule's)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if any(not 0.0 <= a <= 1.0 for a in args.alpha):
        ap.error("--alpha must lie in [0, 1]")
    torch.set_num_threads(args.threads)
    outs = {}
    for a in args.alpha:
        out = Path(args.out_dir) / f"{Path(args.tuned).stem}-soup{a:.2f}.pt"
        manifest = write_soup(args.base, args.tuned, a, out)
        outs[f"soup {a:.2f}"] = out
        print(f"alpha {a:.2f}: {out} sha256={manifest['checkpoint_sha256'][:12]}", flush=True)
    if args.selection_groups:
        from service.training.evaluate import selection_metrics, selection_wins
        from service.training.sources import load_sources

        models = {"shipped": load_proxy()[0], **{name: load_proxy(p)[0] for name, p in outs.items()}}
        sel = selection_metrics(models, load_sources(), args.selection_groups)
        for name, per_recipe in sel.items():
            wins = name != "shipped" and all(selection_wins(sel, name))
            print(f"{name}: " + "; ".join(f"{r} {m['dimensions']} mean {m['dimension_mean']}"
                                          for r, m in per_recipe.items())
                  + ("  <- wins both" if wins else ""), flush=True)


if __name__ == "__main__":
    main()
