"""The held-out-family harness (service.training.heldout): its families are real, graded, disjoint from the
training recipe, and its metrics (off-target strong moves, calibration error) compute what they claim."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from service.model.checkpoint import load_proxy
from service.model.network import DIMENSIONS
from service.training import heldout
from service.training import data
from service.training.data import CRITERIA, RECIPE

ASSETS = Path(__file__).parent / "assets"


def _source(name: str) -> SimpleNamespace:
    with av.open(str(ASSETS / f"{name}.jpg")) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    return SimpleNamespace(id=name, levels=[img, img])


def test_heldout_families_are_not_in_the_training_recipe():
    trained = set(CRITERIA) | {v for names in RECIPE["variants"].values() for v in names}
    trained |= {v for names in data.RECIPE_V4.values() if isinstance(names, list) for v in names
                if isinstance(v, str)}  # the opt-in recipe 4 too
    assert not set(heldout.FAMILIES) & trained
    assert set(heldout.FAMILIES.values()) == set(DIMENSIONS)
    assert all(sum(d == k for d in heldout.FAMILIES.values()) >= 5 for k in DIMENSIONS)


def test_extra_families_are_opt_in_render_their_edit_and_reach_the_data_workers():
    """aesrm-train --extra-families (recipe 4): off, the recipe (the data hash's input) and the variant of
    every seed are the shipped ones; on, some seeds of sharpness / compression become the anisotropic blur /
    MPEG-2, each a real edit that grows with strength, and GroupDataset carries the setting to its workers."""
    torch.set_num_threads(1)
    src = _source("rocket")
    x = data.camera_frames(src.levels, data._camera(src.levels[0].shape, np.random.default_rng(0)), {})
    cases = (("sharpness", 2, "gaussian", "anisotropic"), ("compression_artifacts", 1, "default", "mpeg2"))
    assert data.recipe() is RECIPE and not data.EXTRA_FAMILIES["on"]
    assert [data.variant(c, seed) for c, seed, _, _ in cases] == ["gaussian", "default"]
    data.EXTRA_FAMILIES["on"] = True
    try:
        assert data.recipe()["recipe_v4"] == data.RECIPE_V4 and data.GroupDataset([src], 1, seed=0).extra_families
        for crit, seed, _, new in cases:
            assert data.variant(crit, seed) == new
            clips = [data.finish(x, {crit: (s, seed, 1.0)}).astype(np.int16) for s in (0.0, 0.5, 1.0)]
            gaps = [float(np.abs(c - clips[0]).mean()) for c in clips[1:]]
            assert 0.3 < gaps[0] < gaps[1], (crit, gaps)
    finally:
        data.EXTRA_FAMILIES["on"] = False
    assert not data.GroupDataset([src], 1, seed=0).extra_families


@pytest.mark.parametrize("family", sorted(heldout.FAMILIES))
def test_every_family_changes_the_clip_and_is_seeded(family):
    torch.set_num_threads(1)
    src = [_source("rocket")]
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
    groups = heldout.heldout_groups([_source("chelsea")], 2, families=("vignette", "jump_cut"))
    m = heldout.evaluate_heldout(model, groups)
    assert m["families"]["vignette"]["pairs"] == 2 * 3 and m["families"]["jump_cut"]["pairs"] == 2 * 2
    assert m["dimensions"]["VA"]["pairs"] == 6 and m["dimensions"]["VP"]["pairs"] == 4
    assert m["dimensions"]["VF"]["pairs"] == 0 and m["all"]["pairs"] == 10
    for k in ("accuracy", "overall_accuracy", "off_target_strong", "off_target_backwards", "ece"):
        assert 0.0 <= m["all"][k] <= 1.0


def test_selection_metrics_score_both_recipes_val_groups_and_restore_the_recipe():
    """`aesrm-eval --selection` (the model-selection rule): the val photos' groups of the shipped recipe and
    of recipe 4 are both scored with the real shipped model, train-split photos are not used, and the global
    recipe switch is left as it was."""
    from service.training.evaluate import selection_metrics

    torch.set_num_threads(2)
    model, _ = load_proxy()
    val = _source("chelsea")
    val.split = "val"
    train = SimpleNamespace(id="train-only", split="train", levels=None)  # would fail to render if used
    assert not data.EXTRA_FAMILIES["on"]
    sel = selection_metrics({"shipped": model}, [train, val], per_criterion=1)
    assert not data.EXTRA_FAMILIES["on"]
    assert set(sel) == {"shipped"} and set(sel["shipped"]) == {"shipped_recipe_val", "recipe4_val"}
    for m in sel["shipped"].values():
        assert m["pairs"] == 3 * len(CRITERIA) and set(m["dimensions"]) == set(DIMENSIONS)
        assert 0.0 <= m["dimension_mean"] <= 1.0
