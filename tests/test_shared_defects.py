"""`aesrm-eval --shared-defects` (service/training/shared_defects.py): one VA/VF edit with a plausibility
defect shared by both sides. The shared defect is really on both sides, the pairs do not depend on the recipe
a model was trained with (every model is scored on the same pairs), and the summary is what the rows say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.model.checkpoint import load_proxy
from service.training import data
from service.training.shared_defects import STRONG, pair_clips, shared_defect_pairs
from tests.conftest import asset_source


def test_the_shared_defect_is_on_both_sides_and_the_edit_on_one():
    """The flicker pattern is the same on both sides; the edit is a real difference; a forced direction
    darkens (the "darkened" cases)."""
    torch.set_num_threads(1)
    src = asset_source("rocket")
    a, b = pair_clips(src, "color_cast", "temporal_flicker", [1, 2, 3]).astype(np.float32)
    plain = pair_clips(src, "color_cast", "temporal_flicker", [1, 2, 3], shared_strength=0.0)[0].astype(np.float32)
    t = data.T
    luma = lambda x: x[:t].mean(axis=(1, 2, 3))  # noqa: E731 - per-frame brightness of the whole-frame view
    flicker_a, flicker_b = luma(a) - luma(plain), luma(b) - luma(plain)
    assert np.abs(flicker_a).max() > 2.0  # the flicker is there ...
    assert np.corrcoef(flicker_a, flicker_b)[0, 1] > 0.9  # ... with the same pattern on the edited side
    assert np.abs(a - b).mean() > 1.0  # and the colour cast is a real difference
    for seed in ([1, 2, 3], [4, 5, 6], [7, 8, 9]):
        clean, dark = pair_clips(src, "exposure", "motion_jitter", seed, direction=-1.0)[:, :t].astype(np.float32)
        assert dark.mean() < 0.6 * clean.mean()


def test_pairs_ignore_the_training_recipe_and_the_summary_matches_the_rows():
    torch.set_num_threads(2)
    model, _ = load_proxy()
    srcs = [asset_source("rocket"), asset_source("chelsea")]
    cases = [("exposure", "temporal_flicker"), ("noise", "motion_jitter")]
    plain = shared_defect_pairs(model, srcs, per_case=2, cases=cases, dark_per_case=1)
    # a recipe-9 model's setting: the same pairs
    with data.recipe_flags(on=True, recipe5=True, recipe6=True, recipe7=True, recipe8=True, recipe9=True):
        again = shared_defect_pairs(model, srcs, per_case=2, cases=cases, dark_per_case=1)
        assert data.EXTRA_FAMILIES == {"on": True, "recipe5": True, "recipe6": True, "recipe7": True,
                                       "recipe8": True, "recipe9": True, "recipe10": False, "recipe11": False,
                                       "recipe12": False, "recipe13": False}
    assert again == plain
    rows = plain["rows"]
    assert plain["pairs"] == len(rows) == 4 and [(r["edited"], r["shared"]) for r in rows] == [
        c for c in cases for _ in range(2)]
    for r in rows:
        vp = r["p"]["VP"]
        assert r["vp_strong"] == (vp > STRONG or vp < 1 - STRONG)
        assert r["ok"] == (r["p"]["VA" if r["edited"] == "exposure" else "VF"] > 0.5)
    assert plain["vp_deviation"] == round(float(np.mean([abs(r["p"]["VP"] - 0.5) for r in rows])), 3)
    assert plain["vp_strong"] == round(float(np.mean([r["vp_strong"] for r in rows])), 3)
    assert set(plain["vp_deviation_by_edit"]) == {"exposure", "noise"}
    dark = plain["darkened"]  # exposure darkening with each of the four plausibility defects shared
    assert dark["pairs"] == 4 and set(dark["vp_mean_by_shared"]) == {
        "temporal_flicker", "frame_stutter", "motion_jitter", "structural_warping"}
    assert dark["vp_mean"] == round(float(np.mean(list(dark["vp_mean_by_shared"].values()))), 3)


def test_eval_refuses_to_store_recipe_3_metrics_in_the_manifest():
    """`aesrm-eval --recipe-3` scores a recipe-4/5 checkpoint on the shipped recipe's pairs for comparison;
    the manifest holds the metrics of the checkpoint's own recipe, so the two flags are refused together."""
    from service.training.evaluate import main

    with pytest.raises(SystemExit) as e:
        main(["--recipe-3", "--write-manifest"])
    assert e.value.code == 2
