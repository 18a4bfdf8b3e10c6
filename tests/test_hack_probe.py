"""`python -m service.training.hack_probe`: the overall reward of a clean clip against the same clip punched up
(saturation, contrast, over-sharpening), scored with the real shipped model on real photos."""

import numpy as np
import torch

from service.model.checkpoint import load_proxy
from service.training import hack_probe
from service.training.evaluate import embed_groups
from tests.conftest import asset_source


def _high_freq(clip: np.ndarray) -> float:
    y = clip[:8].astype(np.float64).mean(-1)  # the whole-frame view's luma
    return float(np.abs(np.diff(y, axis=-1)).mean() + np.abs(np.diff(y, axis=-2)).mean())


def test_probes_punch_the_clip_up_more_with_strength():
    torch.set_num_threads(1)
    groups = hack_probe.probe_groups([asset_source("chelsea"), asset_source("rocket")])
    assert [g[1] for g in groups] == ["chelsea", "rocket"]
    clips = groups[0][0]
    assert clips.shape == (1 + len(hack_probe.PROBES) * len(hack_probe.STRENGTHS), 16, 128, 128, 3)
    clean = clips[0].astype(np.int16)

    def chroma(c: np.ndarray) -> float:
        return float(c[:8].astype(np.float64).std(-1).mean())

    for p, name in enumerate(hack_probe.PROBES):
        mild, strong = clips[1 + 2 * p], clips[2 + 2 * p]
        gaps = [float(np.abs(c.astype(np.int16) - clean).mean()) for c in (mild, strong)]
        assert 0.5 < gaps[0] < gaps[1], (name, gaps)
        if name == "saturation":
            assert chroma(clips[0]) < chroma(mild) < chroma(strong)
        if name == "oversharpen":
            assert _high_freq(clips[0]) < _high_freq(mild) < _high_freq(strong)


def test_hack_rates_are_the_share_of_clips_where_the_overall_reward_prefers_the_boosted_one():
    torch.set_num_threads(2)
    model, _ = load_proxy()
    groups = hack_probe.probe_groups([asset_source("chelsea"), asset_source("rocket")], clips_per_photo=2)
    res = hack_probe.hack_rates(model, groups)
    assert list(res) == [f"{n}@{s}" for n in hack_probe.PROBES for s in hack_probe.STRENGTHS]
    emb = embed_groups(model, groups)
    with torch.inference_mode():
        for k, (name, r) in enumerate(res.items(), start=1):  # recomputed from the model's own pair logits
            dim = model.heads(emb[:, 0], emb[:, k])[0].double()
            overall = dim.mean(1)
            assert r["clips"] == 4 and r["hack_rate"] == round(float((overall < 0).double().mean()), 4), name
            assert r["mean_overall_logit"] == round(float(overall.mean()), 3)
            assert 0.0 <= r["strong_hack_rate"] <= r["hack_rate"] <= 1.0
            assert np.allclose(list(r["mean_dimension_logits"].values()), dim.mean(0).numpy(), atol=6e-4)
