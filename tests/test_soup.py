"""Weight-space ensembles (service.training.soup): the interpolation is exact at its ends and in between, and
refuses two different architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.model.checkpoint import untrained_proxy
from service.model.network import AesRMProxy, ProxyConfig
from service.training.soup import REFITTED, interpolate


def _pair(seed: int):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 8, 128, 128, 3)
    return [torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for _ in range(4)]


def _model(state: dict) -> AesRMProxy:
    m = AesRMProxy(ProxyConfig())
    m.load_state_dict(state)
    return m.eval()


def _logits(model: AesRMProxy, x) -> np.ndarray:
    with torch.no_grad():
        return model(*x)[0].numpy()


def test_alpha_ends_reproduce_each_side_and_the_middle_is_the_mean():
    base, _ = untrained_proxy(seed=1)
    tuned, _ = untrained_proxy(seed=2)
    sb, st = base.state_dict(), tuned.state_dict()
    for k in REFITTED:  # the refitted buffers come from the tuned side whatever alpha is
        if k in st:
            st[k] = st[k] + 0.5
    x = _pair(0)
    s0, s1, half = interpolate(sb, st, 0.0), interpolate(sb, st, 1.0), interpolate(sb, st, 0.5)
    for k, v in st.items():
        if k in REFITTED:
            assert torch.equal(s0[k], v) and torch.equal(half[k], v)
        elif v.is_floating_point():
            assert torch.equal(s0[k], sb[k]) and torch.equal(s1[k], v)
            torch.testing.assert_close(half[k], (sb[k] + v) / 2)
        else:  # BatchNorm's step counters
            assert torch.equal(half[k], v)
    # the same function as each side at the ends (the temperatures are the tuned side's in both)
    base_with_tuned_buffers = {**sb, **{k: st[k] for k in REFITTED if k in st}}
    np.testing.assert_array_equal(_logits(_model(s0), x), _logits(_model(base_with_tuned_buffers), x))
    np.testing.assert_array_equal(_logits(_model(s1), x), _logits(_model(st), x))
    mid = _logits(_model(half), x)
    assert not np.allclose(mid, _logits(_model(s0), x)) and not np.allclose(mid, _logits(_model(s1), x))


def test_different_architectures_are_refused():
    base, _ = untrained_proxy(seed=1)
    other = AesRMProxy(ProxyConfig(layout=4))
    with pytest.raises(ValueError, match="different architectures"):
        interpolate(base.state_dict(), other.state_dict(), 0.5)
    sb = base.state_dict()
    wider = {**sb, "frame_proj.0.weight": torch.zeros(3, 3)}
    with pytest.raises(ValueError, match="frame_proj.0.weight"):
        interpolate(sb, wider, 0.5)


def test_write_soup_saves_the_mix_with_the_tuned_recipe_and_a_record(tmp_path):
    """The file path of a soup: the checkpoint holds the interpolated weights, loads like any other, and its
    manifest keeps the fine-tune's recipe, records both sides and alpha, and carries no stale test metrics.
    (The refit of temperatures and novelty needs the source photos: refit=False here.)"""
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy, save_checkpoint, sha256_file
    from service.training.soup import write_soup

    shipped, manifest = load_proxy()
    tuned, _ = untrained_proxy(seed=3)
    tuned_path = tmp_path / "tuned.pt"
    save_checkpoint(tuned, tuned_path, {"recipe": {"recipe_v10": {"noise": ["oversharpen"]}},
                                        "metrics": {"test": {"dimension_mean": 0.5}}, "training": {"lr": 1}})
    out = tmp_path / "soups" / "mix.pt"
    m = write_soup(str(DEFAULT_CHECKPOINT), str(tuned_path), 0.25, out, refit=False)
    model, loaded = load_proxy(out)
    expected = interpolate(shipped.state_dict(), tuned.state_dict(), 0.25)
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert loaded["checkpoint_sha256"] == sha256_file(out) == m["checkpoint_sha256"]
    assert m["recipe"] == {"recipe_v10": {"noise": ["oversharpen"]}} and m["metrics"] == {}
    soup = m["training"]["soup"]
    assert soup["alpha"] == 0.25 and soup["base"]["version"] == manifest["version"]
    assert soup["base"]["sha256"] == sha256_file(DEFAULT_CHECKPOINT) and soup["tuned"]["sha256"] == sha256_file(tuned_path)
    assert m["training"]["lr"] == 1 and "--alpha 0.25" in m["training"]["command"]
