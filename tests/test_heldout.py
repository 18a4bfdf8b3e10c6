"""The held-out-family harness (service.training.heldout): its families are real, graded, disjoint from the
training recipe, and its metrics (off-target strong moves, calibration error) compute what they claim."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from service.model.checkpoint import load_proxy
from service.model.network import DIMENSIONS
from service.training import heldout
from service.training import data, filters, recipes
from service.training.data import CRITERIA, RECIPE
from service.training.evaluate import embed_groups
from tests.conftest import asset_source


def test_heldout_families_are_not_in_the_training_recipe():
    trained = set(CRITERIA) | {v for names in RECIPE["variants"].values() for v in names}
    trained |= {v for recipe in (recipes.RECIPE_V4, recipes.RECIPE_V6, recipes.RECIPE_V7, recipes.RECIPE_V8, recipes.RECIPE_V9,
                                                 recipes.RECIPE_V10, recipes.RECIPE_V11)
                for names in recipe.values() if isinstance(names, list) for v in names if isinstance(v, str)}
    # (the opt-in recipes' families too)
    assert not set(heldout.FAMILIES) & trained
    assert set(heldout.FAMILIES.values()) == set(DIMENSIONS)
    assert all(sum(d == k for d in heldout.FAMILIES.values()) >= 5 for k in DIMENSIONS)


def test_extra_families_are_opt_in_render_their_edit_and_reach_the_data_workers():
    """aesrm-train --extra-families (recipe 4): off, the recipe (the data hash's input) and the variant of
    every seed are the shipped ones; on, some seeds of sharpness / compression become the anisotropic blur /
    MPEG-2, each a real edit that grows with strength, and GroupDataset carries the setting to its workers."""
    torch.set_num_threads(1)
    src = asset_source("rocket")
    x = data.camera_frames(src.levels, data._camera(src.levels[0].shape, np.random.default_rng(0)), {})
    cases = (("sharpness", 2, "gaussian", "anisotropic"), ("compression_artifacts", 1, "default", "mpeg2"))
    assert data.recipe() is RECIPE and not data.EXTRA_FAMILIES["on"]
    assert [data.variant(c, seed) for c, seed, _, _ in cases] == ["gaussian", "default"]
    with data.recipe_flags(on=True):
        assert data.recipe()["recipe_v4"] == recipes.RECIPE_V4 and data.GroupDataset([src], 1, seed=0).flags["on"]
        for crit, seed, _, new in cases:
            assert data.variant(crit, seed) == new
            clips = [data.finish(x, {crit: (s, seed, 1.0)}).astype(np.int16) for s in (0.0, 0.5, 1.0)]
            gaps = [float(np.abs(c - clips[0]).mean()) for c in clips[1:]]
            assert 0.3 < gaps[0] < gaps[1], (crit, gaps)
    assert not data.GroupDataset([src], 1, seed=0).flags["on"]


def test_recipe_5_shares_a_plausibility_defect_in_half_the_va_vf_groups_only_when_on():
    """Recipe 5 (2): with it on, about half the groups of a VA / VF criterion carry one VP defect on every side,
    a VP group never gets one from it; off, the nuisance draws (and so every recipe-3/4 group) are recipe 3's."""
    vp = {c for c, d in zip(CRITERIA, data.CRITERION_DIMENSION) if d == "VP"}

    def share(c: int, on: bool) -> float:
        with data.recipe_flags(recipe5=on):
            edits = [data.nuisance_edits(c, np.random.default_rng([5, c, i])) for i in range(400)]
        return float(np.mean([bool(vp & set(e)) for e in edits]))

    exposure, noise, flicker = (CRITERIA.index(k) for k in ("exposure", "noise", "temporal_flicker"))
    for c in (exposure, noise):
        off, on = share(c, False), share(c, True)
        assert off < 0.2 and 0.5 < on < 0.7, (CRITERIA[c], off, on)  # recipe 3: p_nuisance 0.3 x 4/11
    assert share(flicker, True) == share(flicker, False) < 0.35  # VP groups: recipe 3's nuisances only
    off = [data.nuisance_edits(exposure, np.random.default_rng([5, i])) for i in range(50)]
    assert all(set(e) <= set(CRITERIA) - {"exposure"} for e in off)


def test_recipe_5_exposure_range_is_opt_in_darkens_further_and_follows_the_manifest():
    """aesrm-train --recipe-5 (recipe 5 (1)): off, the recipe and the exposure edit are the shipped ones; on,
    the same edit at full strength is darker (±3.5 stops, the examples' "too dark" 0.8 is about -3.2),
    the recipe says so (data hash), GroupDataset carries it to its workers, and evaluation tools pick it up
    from a checkpoint's manifest."""
    torch.set_num_threads(1)
    src = asset_source("rocket")
    x = data.camera_frames(src.levels, data._camera(src.levels[0].shape, np.random.default_rng(0)), {})
    seed = 2
    assert data.variant("exposure", seed) == "stops"

    def dark_mean() -> float:
        return float(data.finish(x, {"exposure": (1.0, seed, -1.0)})[:data.T].mean())

    assert data.recipe() is RECIPE and not data.EXTRA_FAMILIES["recipe5"]
    narrow = dark_mean()
    with data.recipe_flags():
        assert data.use_recipe_of({"recipe": data.recipe()}) is False and not data.EXTRA_FAMILIES["recipe5"]
        data.EXTRA_FAMILIES["recipe5"] = True
        assert data.recipe()["recipe_v5"] == recipes.RECIPE_V5 and "recipe_v4" not in data.recipe()
        assert data.GroupDataset([src], 1, seed=0).flags["recipe5"]
        wide = dark_mean()
        assert wide < 0.75 * narrow, (wide, narrow)
        manifest = {"recipe": data.recipe()}
        data.EXTRA_FAMILIES["recipe5"] = False
        assert data.use_recipe_of(manifest) is False and data.EXTRA_FAMILIES["recipe5"]
        assert dark_mean() == wide
    assert dark_mean() == narrow and not data.GroupDataset([src], 1, seed=0).flags["recipe5"]


def test_recipe_6_hevc_is_opt_in_renders_a_real_hevc_edit_and_follows_the_manifest():
    """aesrm-train --recipe-6: off, the recipe and every compression variant are the shipped ones; on, a third
    of the pattern seeds become an HEVC (libx265) round trip that grows with strength and is not the H.264 edit
    at the same strength; the recipe says so, GroupDataset carries it to its workers, and evaluation tools
    pick it up from a checkpoint's manifest."""
    torch.set_num_threads(1)
    src = asset_source("rocket")
    x = data.camera_frames(src.levels, data._camera(src.levels[0].shape, np.random.default_rng(0)), {})
    crit, seed = "compression_artifacts", 2
    assert data.recipe() is RECIPE and data.variant(crit, seed) == "default"
    h264 = data.finish(x, {crit: (0.8, seed, 1.0)}).astype(np.int16)
    with data.recipe_flags(recipe6=True):
        assert data.recipe()["recipe_v6"] == recipes.RECIPE_V6 and data.GroupDataset([src], 1, seed=0).flags["recipe6"]
        assert [data.variant(crit, k) for k in range(3)] == ["x264", "mpeg2", "hevc"]
        clips = [data.finish(x, {crit: (s, seed, 1.0)}).astype(np.int16) for s in (0.0, 0.5, 1.0)]
        gaps = [float(np.abs(c - clips[0]).mean()) for c in clips[1:]]
        assert 0.3 < gaps[0] < gaps[1], gaps
        assert float(np.abs(data.finish(x, {crit: (0.8, seed, 1.0)}).astype(np.int16) - h264).mean()) > 0.3
        manifest = {"recipe": data.recipe()}
        data.EXTRA_FAMILIES["recipe6"] = False
        data.use_recipe_of(manifest)
        assert data.EXTRA_FAMILIES["recipe6"]
    assert data.variant(crit, seed) == "default" and not data.GroupDataset([src], 1, seed=0).flags["recipe6"]


def test_recipe_7_lens_distortion_is_opt_in_bends_more_with_strength_and_follows_the_manifest():
    """aesrm-train --recipe-7: off, every composition edit is the shipped roll; on, half the pattern seeds
    become radial lens distortion (barrel or pincushion by direction) that grows with strength, leaves the
    frame centre where it was (barrel) and differs from the roll at the same strength; the recipe says so,
    GroupDataset carries it to its workers, and evaluation tools pick it up from a checkpoint's manifest."""
    torch.set_num_threads(1)
    src = asset_source("rocket")
    cam = data._camera(src.levels[0].shape, np.random.default_rng(0))
    crit, seed = "composition_tilt", 1

    def clip(s: float, d: float = -1.0) -> np.ndarray:
        return data.render(src.levels, cam, {crit: (s, seed, d)})[:data.T].astype(np.int16)

    assert data.recipe() is RECIPE and data.variant(crit, seed) == "default"
    roll = clip(1.0)
    with data.recipe_flags(recipe7=True):
        assert data.recipe()["recipe_v7"] == recipes.RECIPE_V7 and data.GroupDataset([src], 1, seed=0).flags["recipe7"]
        assert [data.variant(crit, k) for k in range(2)] == ["default", "lens"]
        clean, half, full = clip(0.0), clip(0.5), clip(1.0)
        gaps = [float(np.abs(c - clean).mean()) for c in (half, full)]
        assert 0.3 < gaps[0] < gaps[1], gaps
        c = clean.shape[1] // 2  # the letterboxed frame's centre
        centre = np.abs(full[:, c - 4:c + 4, c - 4:c + 4] - clean[:, c - 4:c + 4, c - 4:c + 4]).mean()
        assert centre < 0.5 * gaps[1], (centre, gaps)  # barrel bends the periphery, not the middle
        assert float(np.abs(full - roll).mean()) > 0.3 and float(np.abs(clip(1.0, 1.0) - full).mean()) > 0.3
        manifest = {"recipe": data.recipe()}
        data.EXTRA_FAMILIES["recipe7"] = False
        data.use_recipe_of(manifest)
        assert data.EXTRA_FAMILIES["recipe7"]
    assert data.variant(crit, seed) == "default" and not data.GroupDataset([src], 1, seed=0).flags["recipe7"]


def test_recipe_8_partial_freezes_are_opt_in_late_only_in_their_region_and_follow_the_manifest():
    """aesrm-train --recipe-8: off, every stutter edit is the shipped whole-frame freeze; on, a third of the
    pattern seeds each become tearing (rows below a line keep the previous frame) or stale macroblocks (16-px
    blocks keep it). Only part of a frozen frame is late, and only in frozen frames; more strength freezes a
    superset of the frames; the recipe says so, GroupDataset carries it to its workers, and evaluation tools
    pick it up from a checkpoint's manifest."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (data.T, 144, 176, 3), dtype=np.uint8)  # every frame differs everywhere
    crit = "frame_stutter"
    assert data.recipe() is RECIPE and data.variant(crit, 1) == "default"
    with data.recipe_flags(recipe8=True):
        assert data.recipe()["recipe_v8"] == recipes.RECIPE_V8 and data.GroupDataset([], 1, seed=0).flags["recipe8"]
        assert [data.variant(crit, k) for k in range(3)] == ["default", "tear", "stale_blocks"]
        for seed, kind in ((1, "tear"), (2, "stale_blocks")):
            late = {}
            for k in (2, 5):
                frozen = np.random.default_rng(seed).permutation(np.arange(1, data.T))[:k]
                out = filters.partial_freeze(clip, frozen, kind, seed)
                same_as_before = np.all(out[1:] == out[:-1], axis=-1)  # [T-1, h, w]: pixel repeats the last frame
                changed = np.any(out != clip, axis=-1)
                live = [t for t in range(data.T) if t not in frozen]
                assert np.array_equal(out[0], clip[0]) and not changed[live].any()
                for t in frozen:
                    share = same_as_before[t - 1].mean()
                    assert 0.1 < share < 0.9, (kind, t, share)  # part of the picture, not all of it
                    if kind == "tear":  # one horizontal line: late below it, live above it
                        rows = same_as_before[t - 1].all(axis=1)
                        assert rows[-1] and not rows[0] and np.all(np.diff(rows.astype(int)) >= 0)
                late[k] = changed
            assert (late[5] | late[2]).sum() == late[5].sum() > late[2].sum()  # nested: 5 frames ⊇ 2 frames
        manifest = {"recipe": data.recipe()}
        data.EXTRA_FAMILIES["recipe8"] = False
        data.use_recipe_of(manifest)
        assert data.EXTRA_FAMILIES["recipe8"]
    assert data.variant(crit, 1) == "default" and not data.GroupDataset([], 1, seed=0).flags["recipe8"]
    src = asset_source("rocket")  # a rendered clip: the edit reaches model_input and grows with strength
    x = data.camera_frames(src.levels, data._camera(src.levels[0].shape, np.random.default_rng(3), fast=True), {})
    with data.recipe_flags(recipe8=True):
        clips = [data.finish(x, {crit: (s, 1, 1.0)}).astype(np.int16) for s in (0.0, 0.5, 1.0)]
    gaps = [float(np.abs(c - clips[0]).mean()) for c in clips[1:]]
    assert 0.2 < gaps[0] < gaps[1], gaps


def _high_freq(clip: np.ndarray) -> float:
    """Mean absolute luma gradient of the whole-frame view: what sharpening adds and blur removes."""
    y = clip[:data.T].astype(np.float64).mean(-1)
    return float(np.abs(np.diff(y, axis=-1)).mean() + np.abs(np.diff(y, axis=-2)).mean())


def test_recipe_9_oversharpening_is_opt_in_adds_halos_that_grow_with_strength_and_follows_the_manifest():
    """aesrm-train --recipe-9: off, the sharpness variants are recipe 4's blurs; on, a quarter of the pattern seeds
    become an unsharp mask: more high-frequency energy than the clean clip (not less, as every blur), growing
    with strength; the recipe says so, GroupDataset carries it, and evaluation tools pick it up from a manifest."""
    torch.set_num_threads(1)
    src = asset_source("chelsea")
    x = data.camera_frames(src.levels, data._camera(src.levels[0].shape, np.random.default_rng(0)), {})
    crit, seed = "sharpness", 3

    with data.recipe_flags(on=True):
        assert data.variant(crit, seed) == "gaussian"  # seed % 3 of recipe 4's three blurs
        assert _high_freq(data.finish(x, {crit: (1.0, seed, 1.0)})) < _high_freq(data.finish(x, {}))
    with data.recipe_flags(on=True, recipe9=True):
        assert data.recipe()["recipe_v9"] == recipes.RECIPE_V9 and data.GroupDataset([], 1, seed=0).flags["recipe9"]
        assert [data.variant(crit, k) for k in range(4)] == ["gaussian", "defocus_disc", "anisotropic", "oversharpen"]
        hf = [_high_freq(data.finish(x, {crit: (s, seed, 1.0)})) for s in (0.0, 0.5, 1.0)]
        assert hf[0] < hf[1] < hf[2], hf
        manifest = {"recipe": data.recipe()}
        data.EXTRA_FAMILIES["recipe9"] = False
        data.use_recipe_of(manifest)
        assert data.EXTRA_FAMILIES["recipe9"]
    assert not data.GroupDataset([], 1, seed=0).flags["recipe9"]


def test_recipe_10_puts_the_same_halos_under_the_noise_criterion_and_leaves_sharpness_one_sided():
    """aesrm-train --recipe-10: a quarter of the noise pattern seeds become recipe 9's unsharp mask (more
    high-frequency energy, growing with strength, and the same pixels recipe 9 makes for the same seed and sigma
    draw), while every sharpness variant stays a blur; the manifest carries it."""
    torch.set_num_threads(1)
    src = asset_source("chelsea")
    x = data.camera_frames(src.levels, data._camera(src.levels[0].shape, np.random.default_rng(0)), {})
    seed = 3

    with data.recipe_flags(on=True):
        assert [data.variant("noise", k) for k in range(3)] == ["gaussian", "shot", "impulse"]
    with data.recipe_flags(on=True, recipe10=True):
        assert data.recipe()["recipe_v10"] == recipes.RECIPE_V10 and data.GroupDataset([], 1, seed=0).flags["recipe10"]
        assert [data.variant("noise", k) for k in range(4)] == ["gaussian", "shot", "impulse", "oversharpen"]
        assert "oversharpen" not in [data.variant("sharpness", k) for k in range(12)]
        hf = [_high_freq(data.finish(x, {"noise": (s, seed, 1.0)})) for s in (0.0, 0.5, 1.0)]
        assert hf[0] < hf[1] < hf[2], hf
        expected = filters.unsharp(x, 1.0, seed, recipes.RECIPE_V10, 10)
        clip = data.finish(x, {"noise": (1.0, seed, 1.0)})
        assert np.array_equal(clip, data.model_input(
            (expected.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()))
        manifest = {"recipe": data.recipe()}
        data.EXTRA_FAMILIES["recipe10"] = False
        data.use_recipe_of(manifest)
        assert data.EXTRA_FAMILIES["recipe10"]
    assert not data.GroupDataset([], 1, seed=0).flags["recipe10"]


def test_recipe_11_changes_exposure_across_the_frame_one_side_more_than_the_other():
    """aesrm-train --recipe-11: a third of the exposure pattern seeds become uneven exposure: the change grows
    from one edge of the frame to the opposite one (nothing at the first, the most at the second), in either
    direction, more with strength; the other variants are unchanged and the manifest carries it."""
    torch.set_num_threads(1)
    src = asset_source("chelsea")
    x = data.camera_frames(src.levels, data._camera(src.levels[0].shape, np.random.default_rng(0)), {})

    with data.recipe_flags(on=True, recipe5=True):
        assert [data.variant("exposure", k) for k in range(2)] == ["stops", "offset"]
    with data.recipe_flags(on=True, recipe5=True, recipe11=True):
        assert data.recipe()["recipe_v11"] == recipes.RECIPE_V11 and data.GroupDataset([], 1, seed=0).flags["recipe11"]
        seeds = [k for k in range(30) if data.variant("exposure", k) == "uneven"]
        assert len(seeds) == 10 and [data.variant("exposure", k) for k in range(3)] == ["stops", "offset", "uneven"]
        clean = data._photometric(x, {}).clamp(0, 1)
        for seed in seeds[:4]:
            ramp = filters.ramp(x, seed)
            assert float(ramp.min()) == pytest.approx(0, abs=1e-6) and float(ramp.max()) == pytest.approx(1, abs=1e-6)
            lo, hi = ramp < 0.15, ramp > 0.85  # the unchanged edge and the most changed one
            for d in (-1.0, 1.0):
                change = [(data._photometric(x, {"exposure": (s, seed, d)}).clamp(0, 1) - clean).abs().mean(1)
                          for s in (0.5, 1.0)]
                far = [float(c[:, hi].mean()) for c in change]
                assert far[0] > 0.03 and far[1] > far[0] * 1.3, (seed, d, far)
                assert float(change[1][:, lo].mean()) < far[1] / 5, (seed, d)
        assert len({round(float(filters.ramp(x, k)[0, 0]), 3) for k in seeds}) > 3  # directions differ by seed
        manifest = {"recipe": data.recipe()}
        data.EXTRA_FAMILIES["recipe11"] = False
        data.use_recipe_of(manifest)
        assert data.EXTRA_FAMILIES["recipe11"]
    assert not data.GroupDataset([], 1, seed=0).flags["recipe11"]


@pytest.mark.parametrize("family", sorted(heldout.FAMILIES))
def test_every_family_changes_the_clip_and_is_seeded(family):
    torch.set_num_threads(1)
    src = [asset_source("rocket")]
    a = heldout.heldout_groups(src, 1, families=(family,))[0]
    b = heldout.heldout_groups(src, 1, families=(family,))[0]
    clips, fam, st = a
    assert fam == family and st[0] == 0.0 < st[1] < st[2] and np.array_equal(clips, b[0])
    assert clips.shape == (3, 16, 128, 128, 3) and clips.dtype == np.uint8  # whole frames + fragments
    diff = np.abs(clips.astype(np.int16) - clips[0].astype(np.int16)).mean(axis=(1, 2, 3, 4))
    assert diff[1] > 0.1 and diff[2] > 0.1, diff
    if family in heldout.GRADED and family not in ("dropped_frames", "frame_shuffle"):  # index edits: steps
        assert diff[2] > diff[1], diff


def test_off_target_strong_move_is_a_non_edited_dimension_outside_0_2_to_0_8():
    rec = heldout.pair_record(torch.tensor([3.0, 1.0, -1.0]), "VA")  # off-target P = 0.73 and 0.27
    assert rec["ok"] and not rec["off_strong"] and not rec["off_backwards"]
    rec = heldout.pair_record(torch.tensor([3.0, 2.0, 0.0]), "VA")  # VF P = 0.88: strong, not backwards
    assert rec["off_strong"] and not rec["off_backwards"]
    rec = heldout.pair_record(torch.tensor([-0.5, 0.0, -2.0]), "VF")  # VP favours the worse side strongly
    assert not rec["ok"] and rec["off_strong"] and rec["off_backwards"]


def test_expected_calibration_error_is_the_gap_between_confidence_and_accuracy():
    calibrated = [(0.9, i < 9) for i in range(10)] * 10
    assert heldout.ece(calibrated) == pytest.approx(0.0, abs=1e-9)
    overconfident = [(0.95, i < 6) for i in range(10)]
    assert heldout.ece(overconfident) == pytest.approx(0.35)


def test_evaluate_heldout_scores_the_shipped_checkpoint_per_family_and_dimension():
    torch.set_num_threads(1)
    model, _ = load_proxy()
    groups = heldout.heldout_groups([asset_source("chelsea")], 2, families=("vignette", "jump_cut"))
    m = heldout.evaluate_heldout(model, groups)
    assert m["families"]["vignette"]["pairs"] == 2 * 3 and m["families"]["jump_cut"]["pairs"] == 2 * 2
    assert m["dimensions"]["VA"]["pairs"] == 6 and m["dimensions"]["VP"]["pairs"] == 4
    assert m["dimensions"]["VF"]["pairs"] == 0 and m["all"]["pairs"] == 10
    for k in ("accuracy", "overall_accuracy", "off_target_strong", "off_target_backwards", "ece"):
        assert 0.0 <= m["all"][k] <= 1.0
    # the mean dimension logits are the means of the pairs' own logits (recomputed here from the model)
    emb = embed_groups(model, groups)
    pairs = [(gi, i, j) for gi, (_, fam, _) in enumerate(groups) if fam == "vignette"
             for i, j in heldout.pair_indices(fam)]
    with torch.inference_mode():
        logits = torch.stack([model.heads(emb[gi, i][None], emb[gi, j][None])[0][0] for gi, i, j in pairs])
    want = logits.double().mean(0).numpy()
    got = m["families"]["vignette"]["mean_dimension_logits"]
    assert list(got) == list(DIMENSIONS) and np.allclose([got[d] for d in DIMENSIONS], want, atol=6e-4)
    assert np.allclose([m["dimensions"]["VA"]["mean_dimension_logits"][d] for d in DIMENSIONS], want, atol=6e-4)


def test_selection_metrics_score_both_recipes_val_groups_and_restore_the_recipe():
    """`aesrm-eval --selection` (the model-selection rule): the val photos' groups of the shipped recipe and
    of recipe 4 are both scored with the real shipped model, train-split photos are not used, and the global
    recipe switch is left as it was."""
    from service.training.evaluate import selection_metrics, selection_wins

    torch.set_num_threads(2)
    model, _ = load_proxy()
    val = asset_source("chelsea")
    val.split = "val"
    train = SimpleNamespace(id="train-only", split="train", levels=None)  # would fail to render if used
    with data.recipe_flags(recipe5=True):  # a recipe-5 run's setting: selection reads recipes 3 and 4
        sel = selection_metrics({"shipped": model}, [train, val], per_criterion=1)
        assert data.EXTRA_FAMILIES == {"on": False, "recipe5": True, "recipe6": False, "recipe7": False,
                                       "recipe8": False, "recipe9": False, "recipe10": False, "recipe11": False,
                                       "recipe12": False, "recipe13": False}
    assert set(sel) == {"shipped"} and set(sel["shipped"]) == {"shipped_recipe_val", "recipe4_val"}
    assert selection_wins({**sel, "same": sel["shipped"]}, "same") == [False, False]  # a tie does not win
    better = {r: {**m, "dimension_mean": m["dimension_mean"] + 0.01} for r, m in sel["shipped"].items()}
    assert selection_wins({**sel, "better": better}, "better") == [True, True]
    for m in sel["shipped"].values():
        assert m["pairs"] == 3 * len(CRITERIA) and set(m["dimensions"]) == set(DIMENSIONS)
        assert 0.0 <= m["dimension_mean"] <= 1.0
