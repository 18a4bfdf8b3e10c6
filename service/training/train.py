"""`aesrm-train`: train the embedded proxy on edit-induced preference pairs (CPU, seeded, reproducible).

Each step draws groups (one clip of a train-split photo at 3 increasing strengths of one edit = 3 pairs),
randomises which side is A, and minimises BCE on the edited criterion's logit and on its dimension's
logit plus the off-target hinge (pair_loss). The final (annealed) state is shipped; validation (4 photos,
photo_catalogue.VAL_SOURCES) is monitored per epoch and then used to fit the temperatures (calibrate); the
novelty statistics are fitted on fresh renders of the train photos (fit_novelty).
"""

from __future__ import annotations

import argparse
import json
import random
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from service.model.checkpoint import TRAINED_VERSION, manifest_path, save_checkpoint, sha256_file
from service.training.data import (CRITERIA, CRITERION_DIMENSION, EXTRA_FAMILIES, GROUP_PAIRS, GroupDataset,
                                   fixed_groups, recipe, use_recipe_of)
from service.training.evaluate import (EVAL_SEED, VAL_GROUPS_PER_CRITERION, evaluate_groups, test_metrics,
                                       validation_groups)
from service.model.network import DIMENSIONS, AesRMProxy, ProxyConfig, with_novelty_buffers
from service.training.sources import cache_dir, data_hash, load_sources, sources_manifest

# seed 1235 (2.2.1): of the two seeds trained with this recipe (1234 shipped as 2.2.0), the one with the higher
# final validation mean (0.908 vs 0.870); chosen on validation only (service/model/README.md, "Proxy 2.2.1")
DEFAULTS = {"epochs": 10, "steps_per_epoch": 60, "batch_groups": 16, "lr": 3e-3, "weight_decay": 1e-4,
            "seed": 1235, "val_per_criterion": VAL_GROUPS_PER_CRITERION, "test_per_criterion": 40,
            "off_target_dim": 0.25, "off_target_crit": 0.2, "wrong_way": 0.5,
            "off_dim_margin": 0.5, "fragments": 4, "frame_dim": 96, "embed_dim": 96,
            "dim_heads": 0, "layout": 0}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


DIM_OF_CRITERION = torch.tensor([DIMENSIONS.index(x) for x in CRITERION_DIMENSION])
OFF_TARGET_MARGIN = 0.5  # |logit| below this (P in 0.38..0.62) is free: related criteria may co-move a little
SAME_DIM_MARGIN = 2.0  # other criteria of the edited dimension: free up to P in 0.12..0.88
WRONG_WAY_MARGIN = 0.5  # ... but voting for the edited side only up to P 0.38 (the wrong_way term)
TEMPERATURE_RANGE = (0.25, 16.0)


def pair_loss(model: AesRMProxy, clips: torch.Tensor, crit: torch.Tensor, flip: torch.Tensor,
              off_dim: float = 0.0, off_crit: float = 0.0, wrong_way: float = 0.0,
              off_dim_margin: float = OFF_TARGET_MARGIN):
    """clips uint8 [B, 3, 2T, H, W, 3] (data.model_input); 3 pairs per group; flip [B, 3] bool puts the
    worse side first.

    BCE on the edited criterion's and its dimension's logit, plus (RED-Aes relative consistency) the two
    sides differ in ONE edit only, so every other dimension and every other criterion should stay near 0:
    a squared hinge beyond OFF_TARGET_MARGIN on the other dimensions (weight off_dim) and on the criteria of
    other dimensions, and beyond the wider SAME_DIM_MARGIN on the other criteria of the edited dimension
    (weight off_crit): blur and compression legitimately overlap a little, but a noise edit must not read
    as "sharper". All on the unbounded logits: the bound's tanh would hide a wrong, saturated logit from
    the gradient.

    wrong_way (2.1.0): the other criteria of the edited dimension may agree with the edit's label (blur
    and compression both lose detail) but not vote for the EDITED side beyond WRONG_WAY_MARGIN, with a
    weight of its own (the off_crit term is spread over all eleven other criteria, too weak to matter).
    A dimension sums its criteria, so in 2.0.0 "the noisy clip is sharper" (-1.0 on average on test noise
    pairs) and "the compressed clip is less noisy" (-1.4) out-voted a right noise / compression criterion
    and VF was 87 % while each VF criterion was 97-100 %."""
    b, k = clips.shape[:2]
    emb = model.encode_packed(clips.flatten(0, 1)).view(b, k, -1)
    i = torch.tensor([p[0] for p in GROUP_PAIRS])
    j = torch.tensor([p[1] for p in GROUP_PAIRS])
    ea, eb = emb[:, i], emb[:, j]  # [B, 3, D], better first
    ea, eb = torch.where(flip[..., None], eb, ea), torch.where(flip[..., None], ea, eb)
    dim, cl = model.raw_heads(ea.flatten(0, 1), eb.flatten(0, 1))
    y = (~flip).float().flatten()  # 1 when A is the better side
    c = crit[:, None].expand(b, len(GROUP_PAIRS)).flatten()
    d = DIM_OF_CRITERION[c]
    lc = cl.gather(1, c[:, None]).squeeze(1)
    ld = dim.gather(1, d[:, None]).squeeze(1)
    loss = F.binary_cross_entropy_with_logits(lc, y) + F.binary_cross_entropy_with_logits(ld, y)
    if off_dim or off_crit:
        other_d = torch.ones_like(dim).scatter_(1, d[:, None], 0.0)
        same = DIM_OF_CRITERION[None] == d[:, None]
        other_c = torch.ones_like(cl).scatter_(1, c[:, None], 0.0)
        margin = torch.where(same, SAME_DIM_MARGIN, OFF_TARGET_MARGIN)
        loss = loss + off_dim * (_hinge(dim, off_dim_margin) * other_d).sum(1).mean() / 2 \
            + off_crit * (_hinge(cl, margin) * other_c).sum(1).mean() / other_c.sum(1).mean()
    if wrong_way:
        sib = (DIM_OF_CRITERION[None] == d[:, None]).float().scatter_(1, c[:, None], 0.0)  # same dim, not edited
        towards_better = cl * (2 * y - 1)[:, None]  # > 0: agrees with the label
        per_pair = (F.relu(-towards_better - WRONG_WAY_MARGIN).square() * sib).sum(1) / sib.sum(1).clamp_min(1)
        loss = loss + wrong_way * per_pair.mean()
    acc = ((ld > 0).float() == y).float().mean()
    return loss, acc


def _hinge(x: torch.Tensor, margin) -> torch.Tensor:
    return F.relu(x.abs() - margin).square()


TEMPERATURE_GRID = np.exp(np.linspace(*np.log(TEMPERATURE_RANGE), 97))


def fit_temperature(on: np.ndarray, off: np.ndarray | None, bound: float) -> float:
    """The temperature on TEMPERATURE_GRID of least cross-entropy of bound * tanh(logit / T / bound)
    (identity for bound <= 0) with label 1 for `on` logits and 0.5 for `off` logits (None: none);
    1.0 without `on` logits. Ties go to the smaller temperature."""
    if len(on) == 0:
        return 1.0
    off = np.zeros(0) if off is None else off
    squash = (lambda x: bound * np.tanh(x / bound)) if bound > 0 else (lambda x: x)  # noqa: E731
    best = (np.inf, 1.0)
    for t in TEMPERATURE_GRID:
        best = min(best, (calibration_loss(squash(on / t), squash(off / t)), float(t)))
    return best[1]


def calibration_loss(on: np.ndarray, off: np.ndarray) -> float:
    """Mean cross-entropy of calibrated logits: label 1 for `on` (edited), 0.5 for `off` (untouched)."""
    ce = np.logaddexp(0, -on).sum() + (0.5 * (np.logaddexp(0, -off) + np.logaddexp(0, off))).sum()
    return float(ce / (len(on) + len(off)))


@torch.inference_mode()
def calibrate(model: AesRMProxy, groups: list) -> dict:
    """Fit one temperature shared by the dimensions and one per criterion (logit / T, then bounded as heads()
    does) by minimum cross-entropy on validation pairs and store them in the model's buffers.

    Targets: the edited dimension / criterion prefers the less-edited side (label 1); every OTHER dimension,
    and the criteria of other dimensions, should be indifferent (label 0.5: the two sides differ in one
    edit only). Fitting on both keeps a sharpening temperature from turning small off-target logits into
    confident claims."""
    from service.training.evaluate import pair_raw_heads

    dim, crit = (x.double().numpy() for x in pair_raw_heads(model, groups))
    c = np.repeat([g[1] for g in groups], len(GROUP_PAIRS))
    d = DIM_OF_CRITERION.numpy()[c]
    # ONE temperature shared by the dimensions: the overall reward is a weighted mean of the dimension
    # logits, so a temperature per dimension would re-weight it (fitted per dimension on the 4 val photos,
    # VA got 6.7 and the overall verdict lost 6 points: a very dark clip beat the clean one).
    k_of = np.arange(len(DIMENSIONS))
    on_all = np.concatenate([dim[d == k, k] for k in k_of])
    off_all = np.concatenate([dim[d != k, k] for k in k_of])
    b = model.config.bound
    td = [fit_temperature(on_all, off_all, b)] * len(DIMENSIONS)
    tc = [fit_temperature(crit[c == k, k], crit[d != DIM_OF_CRITERION[k].item(), k], b)
          for k in range(len(CRITERIA))]
    model.dim_temperature.copy_(torch.tensor(td))
    model.crit_temperature.copy_(torch.tensor(tc))
    return {"dimension": dict(zip(DIMENSIONS, [round(t, 3) for t in td])),
            "criterion": dict(zip(CRITERIA, [round(t, 3) for t in tc])), "pairs": len(c),
            "objective": "cross-entropy: edited dimension/criterion label 1, other dimensions label 0.5"}


NOVELTY_PER_CRITERION = 8  # train-split groups per criterion for the novelty statistics (96 groups, 288 clips)
NOVELTY_DATA = f"fixed_groups(train split, {NOVELTY_PER_CRITERION} per criterion, EVAL_SEED + 2)"
NOVELTY_QUANTILE = 0.99  # novelty 1.0 = this quantile of the training clips' whitened distance
NOVELTY_STD_FLOOR = 0.05  # per-dimension std floored at 5% of the median std: a near-constant embedding
# coordinate would otherwise get a huge weight and make the distance a noise detector for that coordinate


@torch.inference_mode()
def fit_novelty(model: AesRMProxy, groups: list, data: str = "") -> dict:
    """Fit the novelty statistics (center, 1/std per embedding coordinate, 99th-percentile reference) on
    the embeddings of fresh renders of TRAIN-split photos (every clip of every group: unedited and edited
    at all strengths, i.e. what the encoder was trained on) and store them in the model's buffers.

    Train photos, not val: the question the signal answers is "is this like what the model learned from";
    held-out photos are then scored against that (service/model/README.md measures how well it separates).
    """
    from service.training.evaluate import embed_groups

    if not model.config.novelty:
        raise ValueError("model config has no novelty buffers: use network.with_novelty_buffers(model) first")
    model.eval()
    emb = embed_groups(model, groups).flatten(0, 1).double()  # [G*K, D]
    center = emb.mean(0)
    std = emb.std(0)
    std = std.clamp_min(NOVELTY_STD_FLOOR * float(std.median()))
    z = (emb - center) / std
    dist = (z * z).mean(1).sqrt()
    ref = float(torch.quantile(dist, NOVELTY_QUANTILE))
    model.emb_center.copy_(center.float())
    model.emb_scale.copy_((1.0 / std).float())
    model.novelty_ref.fill_(ref)
    nov = model.novelty(emb.float()).double()
    q = lambda x: round(float(torch.quantile(nov, x)), 4)  # noqa: E731
    return {"clips": int(len(emb)), "groups": len(groups), "quantile": NOVELTY_QUANTILE,
            "std_floor": NOVELTY_STD_FLOOR, "ref_distance": round(ref, 4),
            "train_novelty": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(float(nov.max()), 4)},
            "data": data}


def novelty_groups(sources: list, per_criterion: int = NOVELTY_PER_CRITERION) -> list:
    """The fixed train-split renders fit_novelty is fitted on (seed EVAL_SEED + 2: not val's, not test's)."""
    return fixed_groups([s for s in sources if s.split == "train"], per_criterion, EVAL_SEED + 2)


def recalibrate(path: str, val_per_criterion: int, threads: int) -> None:
    from service.model.checkpoint import load_proxy

    torch.set_num_threads(threads)
    model, manifest = load_proxy(path)
    use_recipe_of(manifest)  # refit on the checkpoint's own recipe
    sources = load_sources()
    val = validation_groups(sources, val_per_criterion)
    temps = calibrate(model, val)
    manifest["training"]["calibration"] = temps
    model = with_novelty_buffers(model)  # a checkpoint written before them gains the buffers (config too)
    manifest["config"] = model.config.to_dict()
    manifest["training"]["novelty"] = fit_novelty(model, novelty_groups(sources), NOVELTY_DATA)
    print(f"novelty statistics (fitted on train renders): {manifest['training']['novelty']}")
    saved = save_checkpoint(model, path, {k: v for k, v in manifest.items()
                                          if k not in ("checkpoint_file", "checkpoint_sha256", "calibrated",
                                                       "novelty")})
    print(f"temperatures (fitted on val): {temps}\nsaved {path} sha256={saved['checkpoint_sha256'][:12]}")


def init_record(path: str | None) -> dict | None:
    """What a fine-tuning run (--init) started from: file, sha256 and version (from its manifest)."""
    if not path:
        return None
    mp = manifest_path(path)
    version = json.loads(mp.read_text()).get("version") if mp.is_file() else None
    return {"file": Path(path).name, "sha256": sha256_file(path), "version": version}


# aesrm-train --recipe-N: the opt-in recipes 5-13 of service.training.recipes (recipe 4 is --extra-families)
RECIPE_OPTIONS = {
    "recipe5": "recipe 5: the exposure edit spans ±3.5 stops instead of ±2.5, and half the VA / VF groups share a "
               "plausibility defect on every side (measured: service/model/README.md)",
    "recipe6": "recipe 6: HEVC (libx265) joins the compression families (measured: service/model/README.md)",
    "recipe7": "recipe 7: radial lens distortion joins the composition edits, a positional family (in 2.5.0, 2.6.0; "
               "measured: service/model/README.md)",
    "recipe8": "recipe 8: tearing and stale macroblocks join the stutter edits, partial freezes that put two "
               "instants into one picture (measured: service/model/README.md)",
    "recipe9": "recipe 9: over-sharpening (unsharp mask) joins the sharpness edits (measured: "
               "service/model/README.md)",
    "recipe10": "recipe 10: the same over-sharpening joins the noise edits, an artifact instead of a sharpness "
                "level (measured: service/model/README.md)",
    "recipe11": "recipe 11: uneven exposure (a change that grows across the frame) joins the exposure edits "
                "(measured: service/model/README.md)",
    "recipe12": "recipe 12: 33 more train photos (GCompris's Wikimedia animals and monuments), no new edit "
                "(in 2.6.0; measured: service/model/README.md)",
    "recipe13": "recipe 13: 23 more train photos (landscapes, under-water reefs, two close-ups), no new edit "
                "(measured, not shipped: service/model/README.md)",
}


def group_loader(ds: GroupDataset, batch_groups: int, workers: int,
                 timeout_s: float = 600) -> torch.utils.data.DataLoader:
    """Batches of `ds` rendered by `workers` processes, SPAWNED, not forked: the parent has already rendered
    (the val groups), and PyAV 18 keeps swscale contexts whose slice threads a forked child does not inherit;
    the child's first reformat of another size then waits for ever on threads that do not exist. A worker
    that stops answering anyway is an error after `timeout_s`, not a silent hang."""
    return torch.utils.data.DataLoader(ds, batch_size=batch_groups, shuffle=False, num_workers=workers,
                                       prefetch_factor=4 if workers else None,
                                       multiprocessing_context="spawn" if workers else None,
                                       timeout=timeout_s if workers else 0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in DEFAULTS.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="data worker processes (output is identical)")
    ap.add_argument("--out", default=str(cache_dir() / "candidates" / f"aesrm-proxy-{TRAINED_VERSION}.pt"),
                    help="where the checkpoint goes; shipping it (service/model/checkpoints/) is a separate, "
                         "reviewed step: the shipped model and the Triton configs must change together")
    ap.add_argument("--init", help="start from this checkpoint's weights (fine-tuning) instead of random")
    ap.add_argument("--extra-families", action="store_true",
                    help="recipe 4: anisotropic blur and MPEG-2 fidelity families (in 2.3.0 to 2.6.0: "
                         "service/model/README.md)")
    for flag, text in RECIPE_OPTIONS.items():
        ap.add_argument(f"--recipe-{flag.removeprefix('recipe')}", dest=flag, action="store_true", help=text)
    ap.add_argument("--calibrate-only", metavar="CHECKPOINT",
                    help="refit the temperatures of a trained checkpoint on validation pairs and rewrite it")
    args = ap.parse_args(argv)
    # before any group is rendered (val, training, novelty, test)
    EXTRA_FAMILIES.update(on=args.extra_families, **{flag: getattr(args, flag) for flag in RECIPE_OPTIONS})
    if args.calibrate_only:
        return recalibrate(args.calibrate_only, args.val_per_criterion, args.threads)
    t_start = time.time()
    from service.engine.threads import keep_freed_memory_mapped

    keep_freed_memory_mapped()  # the allocator setting of the gateway: fewer page faults, same numbers
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    sources = load_sources()
    train_src = [s for s in sources if s.split == "train"]
    val_groups = validation_groups(sources, args.val_per_criterion)
    print(f"train sources {len(train_src)}, val groups {len(val_groups)}", flush=True)

    embed_dim = 3 * args.dim_heads if args.dim_heads else args.embed_dim  # dim_heads: one block per dimension
    model = AesRMProxy(ProxyConfig(fragments=args.fragments, frame_dim=args.frame_dim, embed_dim=embed_dim,
                                   dim_heads=args.dim_heads, layout=args.layout))
    if args.init:
        blob = torch.load(args.init, map_location="cpu", weights_only=True)
        missing = model.load_state_dict(blob["state_dict"], strict=False)
        print(f"initialised from {args.init} ({missing})", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total = args.epochs * args.steps_per_epoch
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, cosine decay to 2%
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
    flip_gen = torch.Generator().manual_seed(args.seed + 1)
    best, history, step = -1.0, [], 0
    for epoch in range(args.epochs):
        ds = GroupDataset(train_src, args.steps_per_epoch * args.batch_groups, args.seed, epoch)
        dl = group_loader(ds, args.batch_groups, args.workers)
        model.train()
        t0, losses, accs = time.time(), [], []
        for clips, crit in dl:
            flip = torch.rand(clips.shape[0], len(GROUP_PAIRS), generator=flip_gen) < 0.5
            loss, acc = pair_loss(model, clips, crit, flip, args.off_target_dim, args.off_target_crit,
                                  args.wrong_way, args.off_dim_margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            accs.append(acc.item())
            if step % 10 == 0:
                print(f"  step {step}/{total} loss {np.mean(losses[-10:]):.3f} dim-acc {np.mean(accs[-10:]):.3f} "
                      f"({time.time() - t_start:.0f}s)", flush=True)
        val = evaluate_groups(model, val_groups)
        history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4),
                        "train_dim_acc": round(float(np.mean(accs)), 4), "val": val["dimensions"],
                        "val_mean": val["dimension_mean"], "seconds": round(time.time() - t0, 1)})
        print(f"epoch {epoch}: loss {np.mean(losses):.3f} val {val['dimensions']} mean {val['dimension_mean']}"
              f" ({time.time() - t0:.0f}s)", flush=True)
        best = max(best, val["dimension_mean"])
        torch.save(model.state_dict(), cache_dir() / "aesrm-proxy.partial.pt")  # for an interrupted run
    model.eval()
    temps = calibrate(model, val_groups)
    print(f"temperatures (fitted on val): {temps}", flush=True)
    novelty = fit_novelty(model, novelty_groups(sources), NOVELTY_DATA)
    print(f"novelty statistics (fitted on train renders): {novelty}", flush=True)
    duration = time.time() - t_start
    print("evaluating on held-out test sources ...", flush=True)
    test = test_metrics(model, sources, args.test_per_criterion) if args.test_per_criterion else {}
    manifest = {
        "version": TRAINED_VERSION, "data_hash": data_hash(sources, recipe()), "seed": args.seed,
        "metrics": {"test": test, "per_criterion_groups": args.test_per_criterion, "eval_seed": EVAL_SEED},
        "training": {"command": "aesrm-train " + " ".join(argv if argv is not None else sys.argv[1:]),
                     **{k: getattr(args, k) for k in DEFAULTS}, "steps": total,
                     "pairs_seen": total * args.batch_groups * len(GROUP_PAIRS),
                     "duration_s": round(duration, 1), "best_val_dimension_mean": best,
                     "selection": "final epoch", "history": history, "calibration": temps,
                     "novelty": novelty, "init": init_record(args.init),
                     "torch": torch.__version__, "threads": args.threads},
        "sources": sources_manifest(sources), "recipe": recipe(),
        "criteria_doc": dict(zip(CRITERIA, CRITERION_DIMENSION)),
    }
    saved = save_checkpoint(model, args.out, manifest)
    from service.training.evaluate import print_report
    if test:
        print_report(test, "test split")
    print(f"saved {args.out} sha256={saved['checkpoint_sha256'][:12]} in {duration:.0f}s")


if __name__ == "__main__":
    main()
