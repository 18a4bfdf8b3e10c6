"""`aesrm-eval`: accuracy of the proxy on edit-induced pairs from HELD-OUT source photos, plus latency.

Per criterion: sign of that criterion's logit agrees with the less-edited side. Per dimension: sign of
the dimension logit (VA/VF/VP) agrees, for pairs whose edit belongs to that dimension. Anchor: unedited
vs strongly edited (s >= 0.6). Order consistency: forward(b, a) == -forward(a, b) on real pairs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from service.training.data import CRITERIA, CRITERION_DIMENSION, GROUP_PAIRS, fixed_groups
from service.model.network import DIMENSIONS
from service.training.heldout import pair_record, summarise

EVAL_SEED = 20260101  # fixed: the test set is the same for every model
OFF_TARGET_KEYS = ("overall_accuracy", "off_target_strong", "off_target_backwards", "ece", "max_abs_logit")


@torch.inference_mode()
def embed_groups(model, groups: list, batch: int = 24) -> torch.Tensor:
    """Embeddings [G, K, D] of every clip of every group."""
    clips = torch.from_numpy(np.stack([g[0] for g in groups]))  # [G, K, 2T, H, W, 3] (data.model_input)
    g, k = clips.shape[:2]
    flat = clips.reshape(g * k, *clips.shape[2:])
    emb = torch.cat([model.encode_packed(flat[i:i + batch]) for i in range(0, len(flat), batch)])
    return emb.view(g, k, -1)


@torch.inference_mode()
def pair_raw_heads(model, groups: list, pairs_of=lambda group: GROUP_PAIRS) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (unbounded, uncalibrated) dimension [P, 3] and criterion [P, C] logits of every (better, worse)
    clip pair `pairs_of(group)` of every group, in group order: what calibration and the heads study read."""
    emb = embed_groups(model, groups)
    pairs = [(g, i, j) for g, group in enumerate(groups) for i, j in pairs_of(group)]
    return model.raw_heads(torch.stack([emb[g, i] for g, i, _ in pairs]), torch.stack([emb[g, j] for g, _, j in pairs]))


@torch.inference_mode()
def evaluate_groups(model, groups: list, consistency_pairs: int = 32) -> dict:
    model.eval()
    emb = embed_groups(model, groups)
    crit_ok = {c: [] for c in CRITERIA}
    dim_ok = {d: [] for d in DIMENSIONS}
    anchor, relative, records = [], [], []
    for gi, (clips, c, st) in enumerate(groups):
        for i, j in GROUP_PAIRS:  # i is the better (less edited) side
            dim, crit = model.heads(emb[gi, i][None], emb[gi, j][None])
            ok_c = bool(crit[0, c] > 0)
            ok_d = bool(dim[0, DIMENSIONS.index(CRITERION_DIMENSION[c])] > 0)
            records.append(pair_record(dim[0], CRITERION_DIMENSION[c]))
            crit_ok[CRITERIA[c]].append(ok_c)
            dim_ok[CRITERION_DIMENSION[c]].append(ok_d)
            if st[i] == 0 and st[j] >= 0.6:
                anchor.append(ok_d)
            elif st[i] > 0:
                relative.append(ok_d)
    # order consistency through the real forward (the ONNX/Triton path), swapped inputs
    cons = []
    for gi in range(0, len(groups), max(1, len(groups) // consistency_pairs)):
        a = torch.from_numpy(groups[gi][0][0:1])
        b = torch.from_numpy(groups[gi][0][2:3])
        d_ab, c_ab = model.forward_packed(a, b)
        d_ba, c_ba = model.forward_packed(b, a)
        cons.append(bool(torch.equal(d_ab, -d_ba) and torch.equal(c_ab, -c_ba)))
    mean = lambda v: round(float(np.mean(v)), 4) if v else None  # noqa: E731
    return {"criteria": {c: mean(v) for c, v in crit_ok.items()},
            "dimensions": {d: mean(v) for d, v in dim_ok.items()},
            "dimension_mean": mean([mean(v) for v in dim_ok.values()]),
            "anchor_accuracy": mean(anchor), "relative_accuracy": mean(relative),
            "order_consistency": mean(cons), **{k: summarise(records)[k] for k in OFF_TARGET_KEYS},
            "pairs": sum(len(v) for v in crit_ok.values()),
            "groups": len(groups)}


@torch.inference_mode()
def bench_pair(model, threads: int = 2, runs: int = 50) -> dict:
    """Latency of one pair (every view, T=8, 128x128) through forward on `threads` CPU threads, in ms."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    inputs = model.example_inputs(1, torch.Generator().manual_seed(0))
    for _ in range(5):
        model(*inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(*inputs)
        times.append((time.perf_counter() - t0) * 1000)
    torch.set_num_threads(old)
    times.sort()
    return {"threads": threads, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(0.9 * len(times)) - 1], 2)}


def print_report(metrics: dict, title: str) -> None:
    print(f"\n{title}: {metrics['groups']} groups, {metrics['pairs']} pairs")
    print(f"{'criterion':24s} {'dim':4s} {'accuracy':>8s}")
    for c, d in zip(CRITERIA, CRITERION_DIMENSION):
        print(f"{c:24s} {d:4s} {metrics['criteria'][c]:8.3f}")
    print(f"{'dimension':24s} {'':4s} {'accuracy':>8s}")
    for d in DIMENSIONS:
        print(f"{d:24s} {'':4s} {metrics['dimensions'][d]:8.3f}")
    for k in ("dimension_mean", "anchor_accuracy", "relative_accuracy", "order_consistency") + OFF_TARGET_KEYS:
        if metrics.get(k) is not None:
            print(f"{k:29s} {metrics[k]:8.3f}")


def test_metrics(model, sources: list, per_criterion: int) -> dict:
    test = [s for s in sources if s.split == "test"]
    return evaluate_groups(model, fixed_groups(test, per_criterion, EVAL_SEED))


VAL_GROUPS_PER_CRITERION = 8  # the val groups training monitors, calibrate() fits on and selection compares


def validation_groups(sources: list, per_criterion: int = VAL_GROUPS_PER_CRITERION) -> list:
    """The val photos' fixed groups (seed EVAL_SEED + 1, not the test split's): one definition for training's
    per-epoch validation, calibration, the heads study and the selection rule, so they read the same pairs.
    More groups per criterion extend the same sequence (the first 8 are training's)."""
    return fixed_groups([s for s in sources if s.split == "val"], per_criterion, EVAL_SEED + 1)


def selection_metrics(models: dict, sources: list, per_criterion: int = VAL_GROUPS_PER_CRITERION) -> dict:
    """The model-selection rule's numbers (service/model/README.md): validation accuracy of each of
    {name: model} on the val photos' groups of the shipped recipe AND of recipe 4 (its extra fidelity
    families), every model on the same rendered groups; a candidate replaces the shipped model only if it
    wins both. The groups are validation_groups'."""
    from service.training.recipes import recipe_flags, shipped_flags

    out = {name: {} for name in models}
    for recipe_name, extra in (("shipped_recipe_val", False), ("recipe4_val", True)):
        with recipe_flags(**shipped_flags(on=extra)):
            groups = validation_groups(sources, per_criterion)
        for name, model in models.items():
            m = evaluate_groups(model, groups)
            out[name][recipe_name] = {"dimensions": m["dimensions"], "dimension_mean": m["dimension_mean"],
                                      "pairs": m["pairs"]}
    return out


def selection_wins(sel: dict, name: str, reference: str = "shipped") -> list[bool]:
    """Per validation set of selection_metrics' result: does model `name` beat `reference` on the dimension
    mean? The rule passes only when every entry is True."""
    return [sel[name][r]["dimension_mean"] > sel[reference][r]["dimension_mean"] for r in sel[reference]]


def main(argv: list[str] | None = None) -> None:
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy, manifest_path
    from service.training.sources import load_sources, split_sources

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--split", default="test", choices=["test", "val", "train", "test2"],
                    help="whose photos: test2 = the 49 GCompris photos no model decision has read "
                         "(photo_catalogue.GCOMPRIS_TEST2_PHOTOS)")
    ap.add_argument("--per-criterion", type=int, default=40, help="groups (3 pairs each) per criterion")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipe-v1", action="store_true",
                    help="in-distribution pairs from the recipe-1 edit families only (the 1.x test set)")
    ap.add_argument("--recipe-3", action="store_true",
                    help="render the split with the shipped recipe 3 whatever recipe the checkpoint was trained on "
                         "(compare models of different recipes on the same in-distribution pairs)")
    ap.add_argument("--heldout", action="store_true",
                    help="also score held-out edit FAMILIES (never in the training recipe) on the split's photos")
    ap.add_argument("--per-family", type=int, default=24, help="held-out groups (3 clips) per family")
    ap.add_argument("--photos", help="use every .jpg/.png in this folder for --heldout instead of the split")
    ap.add_argument("--served", action="store_true",
                    help="also score the example photos' defects as served video (H.264, gateway decode)")
    ap.add_argument("--shared-defects", action="store_true",
                    help="also score one VA/VF edit with a plausibility defect shared by both sides (val photos; "
                         "plausibility should stay at 0.5)")
    ap.add_argument("--shared-per-case", type=int, default=2, help="pairs per (edit, shared defect) case")
    ap.add_argument("--selection", action="store_true",
                    help="only the selection rule: validation means on the shipped recipe's and recipe 4's val "
                         "groups, of --checkpoint and (when it is another file) the shipped model")
    ap.add_argument("--selection-groups", type=int, default=VAL_GROUPS_PER_CRITERION,
                    help="val groups per criterion for --selection (8 = the groups training monitors)")
    ap.add_argument("--ablate-layout", action="store_true",
                    help="score with the position-aware grid (--layout) zeroed: what the grid contributes")
    ap.add_argument("--json", help="write all metrics to this JSON file")
    ap.add_argument("--write-manifest", action="store_true",
                    help="store the test metrics in the manifest (--split test2: under metrics.test2, the rest kept)")
    args = ap.parse_args(argv)
    if args.write_manifest and args.split not in ("test", "test2"):
        ap.error("--write-manifest stores the test or test2 split's metrics")
    if args.recipe_3 and args.write_manifest:
        ap.error("--write-manifest stores the metrics of the checkpoint's own recipe: drop --recipe-3")
    from service.engine.threads import keep_freed_memory_mapped

    keep_freed_memory_mapped()  # as in the gateway: the latency figure is the served configuration's
    torch.set_num_threads(args.threads)
    if args.recipe_v1:
        from service.training.data import V1_ONLY
        V1_ONLY["on"] = True
    model, manifest = load_proxy(args.checkpoint)
    if args.ablate_layout:
        if not model.config.layout or args.write_manifest:
            ap.error("--ablate-layout needs a checkpoint trained with --layout, and no --write-manifest")
        with torch.no_grad():
            model.layout_proj.weight.zero_()
    from service.training.data import EXTRA_FAMILIES, use_recipe_of
    from service.training.recipes import shipped_flags

    extra = use_recipe_of(manifest)  # trained with aesrm-train --extra-families: test on its own recipe
    if args.recipe_3:
        EXTRA_FAMILIES.update(shipped_flags())
        extra = False
    print(f"{manifest['model_id']} {manifest['version']} sha256={manifest['checkpoint_sha256'][:12]} "
          f"trained={manifest['trained']}{' (recipe 4: extra families)' if extra else ''}"
          + "".join(f" (recipe {flag.removeprefix('recipe')})" for flag, on in EXTRA_FAMILIES.items()
                    if on and flag != "on"))
    if args.selection:
        models = {"candidate": model}
        if Path(args.checkpoint).resolve() != DEFAULT_CHECKPOINT.resolve():
            models["shipped"] = load_proxy()[0]
        sel = selection_metrics(models, load_sources(), args.selection_groups)
        for name, per_recipe in sel.items():
            for recipe_name, m in per_recipe.items():
                print(f"{name} {recipe_name}: {m['dimensions']} mean {m['dimension_mean']} ({m['pairs']} pairs)")
        if "shipped" in sel:
            wins = selection_wins(sel, "candidate")
            print(f"candidate wins {sum(wins)} of {len(wins)} validation sets: "
                  f"{'passes' if all(wins) else 'fails'} the selection rule (shipping also needs the test suite)")
        if args.json:
            Path(args.json).write_text(json.dumps({**sel, "groups_per_criterion": args.selection_groups,
                                                   "version": manifest["version"],
                                                   "checkpoint_sha256": manifest["checkpoint_sha256"]}, indent=1))
        return
    sources = split_sources(args.split)
    print(f"{args.split} sources: {', '.join(s.id for s in sources)}")
    t0 = time.time()
    metrics = evaluate_groups(model, fixed_groups(sources, args.per_criterion, EVAL_SEED))
    print_report(metrics, f"{args.split} split ({time.time() - t0:.0f}s)")
    out = {"split": args.split, "recipe_v1_only": args.recipe_v1, "metrics": metrics}
    if args.heldout:
        from service.training.heldout import HELDOUT_SEED, evaluate_heldout, heldout_groups, photo_sources, \
            print_heldout
        photos = photo_sources(args.photos) if args.photos else sources
        t0 = time.time()
        held = evaluate_heldout(model, heldout_groups(photos, args.per_family))
        what = args.photos or f"{args.split} split"
        print_heldout(held, f"held-out edit families on {what} ({len(photos)} photos, {time.time() - t0:.0f}s)")
        out.update(heldout=held, heldout_photos=what, heldout_seed=HELDOUT_SEED)
    if args.served:
        from service.training.served import print_served, served_examples
        out["served"] = served_examples(model)
        print_served(out["served"])
    if args.shared_defects:
        from service.training.shared_defects import print_shared_defects, shared_defect_pairs
        out["shared_defects"] = shared_defect_pairs(
            model, [s for s in load_sources() if s.split == "val"], args.shared_per_case)
        print_shared_defects(out["shared_defects"])
    bench = bench_pair(model, threads=args.threads)
    print(f"\nlatency, one pair T=8 128x128, {bench['threads']} threads: median {bench['median_ms']} ms, "
          f"p90 {bench['p90_ms']} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({**out, "latency_pair_ms": bench, "version": manifest["version"],
                                               "checkpoint_sha256": manifest["checkpoint_sha256"]}, indent=1))
    if args.write_manifest:
        mp = manifest_path(args.checkpoint)
        m = json.loads(mp.read_text())
        test2 = m.get("metrics", {}).get("test2", {})
        if args.split == "test2":  # beside the test split's metrics, which stay as they are
            test2 = {"photos": len(sources), "test": metrics, "per_criterion_groups": args.per_criterion,
                     "eval_seed": EVAL_SEED, "checkpoint_sha256": m["checkpoint_sha256"]}
            if args.heldout and not args.photos:
                test2["heldout_families"] = {"per_family_groups": args.per_family, **out["heldout"]}
            m.setdefault("metrics", {})["test2"] = test2
        else:
            m["metrics"] = {"test": metrics, "per_criterion_groups": args.per_criterion, "eval_seed": EVAL_SEED,
                            "latency_pair_ms": bench,  # test2's figures are kept while they are this checkpoint's
                            **({"test2": test2} if test2.get("checkpoint_sha256") == m["checkpoint_sha256"] else {})}
            if args.heldout and not args.photos:
                m["metrics"]["heldout_families"] = {"per_family_groups": args.per_family, **out["heldout"]}
            if args.served:
                m["metrics"]["served_examples"] = {k: v for k, v in out["served"].items() if k != "rows"}
        mp.write_text(json.dumps(m, indent=2) + "\n")
        print(f"{args.split} metrics written to {mp}")


if __name__ == "__main__":
    main()
