"""The out-of-distribution (novelty) signal end to end on the embedded backend, with real parts: buffers
fitted by training's fit_novelty and round-tripped through save/load, checkpoints without them (1.1.0) still
loading with novelty unavailable, exact antisymmetry, the cache carrying novelty, /v1/pair exposing it, and
an explanation of an out-of-distribution pair (real encoded synthetic clips) withholding criterion verdicts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.examples import degrade, encode, pan_frames, photo
from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy, untrained_proxy
from service.model.network import AesRMProxy, ProxyConfig, with_novelty_buffers
from tests.conftest import running_app, test_settings
from tests.novelty_ckpt import checker, clip, fitted_checkpoint, flat_red


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return fitted_checkpoint(tmp_path_factory.mktemp("novelty"))


@pytest.fixture(scope="module")
def model(ckpt):
    torch.set_num_threads(1)
    return load_proxy(ckpt)


def test_buffers_fit_and_round_trip(ckpt, model):
    m, manifest = model
    assert m.has_novelty and manifest["novelty"] is True and m.config.novelty is True
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert {"emb_center", "emb_scale", "novelty_ref"} <= set(state)
    assert torch.equal(state["emb_center"], m.emb_center) and float(m.novelty_ref) > 0
    stats = manifest["training"]["novelty"]
    assert stats["train_novelty"]["p99"] == pytest.approx(1.0, abs=1e-3) and stats["clips"] == 36
    fresh = AesRMProxy(ProxyConfig.from_dict(manifest["config"]))
    fresh.load_state_dict(state)  # strict: the config written with the buffers rebuilds them
    assert fresh.has_novelty


def test_checkpoints_without_novelty_load_with_it_unavailable(tmp_path):
    """A checkpoint written before the field (1.1.0, early 2.0 candidates) loads strictly; novelty is None
    everywhere. The shipped 2.x checkpoints have fitted statistics."""
    from service.backends.embedded import contract_from_manifest

    if DEFAULT_CHECKPOINT.is_file():
        shipped, shipped_manifest = load_proxy()
        assert shipped.has_novelty and contract_from_manifest(shipped_manifest).novelty is True
        assert "emb_center" in torch.load(DEFAULT_CHECKPOINT, weights_only=True)["state_dict"]
    base, _ = untrained_proxy(seed=1)
    cfg = {k: v for k, v in base.config.to_dict().items() if k != "novelty"}
    old = AesRMProxy(ProxyConfig.from_dict(cfg))
    torch.save({"config": cfg, "state_dict": old.state_dict()}, tmp_path / "old.pt")
    m, manifest = load_proxy(tmp_path / "old.pt")
    assert m.config.novelty is False and not m.has_novelty and manifest["novelty"] is False
    assert "emb_center" not in m.state_dict()
    assert contract_from_manifest(manifest).novelty is False
    new, _ = untrained_proxy(seed=0)
    assert not new.has_novelty  # buffers present but never fitted: unavailable, not a made-up number


def test_with_novelty_buffers_keeps_logits_and_antisymmetry_is_exact(model):
    m, _ = model
    inputs = m.example_inputs(2, torch.Generator().manual_seed(3))  # every view: frames (+ fragments)
    swapped = tuple(inputs[i ^ 1] for i in range(len(inputs)))
    with torch.inference_mode():
        d_ab, c_ab, n_ab = m.forward_with_novelty(*inputs)
        d_ba, c_ba, n_ba = m.forward_with_novelty(*swapped)
        assert torch.equal(d_ab, -d_ba) and torch.equal(c_ab, -c_ba)
        assert torch.equal(n_ab, n_ba.flip(1))  # per side: swapping A and B swaps the two values
        d, c = m(*inputs)
        assert torch.equal(d, d_ab) and torch.equal(c, c_ab)
        plain = load_proxy()[0] if DEFAULT_CHECKPOINT.is_file() else untrained_proxy(seed=0)[0]
        assert torch.equal(plain(*inputs)[0], d) and torch.equal(with_novelty_buffers(plain)(*inputs)[1], c)


def test_synthetic_clips_are_out_of_distribution_and_photo_pans_are_not(model):
    m, _ = model
    base = pan_frames(photo("bythewater"), 48, 320, 180)
    clips = np.stack([clip(base), clip(degrade(base, "noise", 0.3)), clip(checker()), clip(flat_red())])
    with torch.inference_mode():
        nov = m.novelty(m.encode_packed(torch.from_numpy(clips))).numpy()
    assert nov[0] < 1.0 and nov[1] < 1.0 and nov[2] > 1.0 and nov[3] > 1.0, nov


def test_cache_entries_carry_novelty_in_canonical_order():
    from service.engine.pipeline import PairLogitsResult, _from_entry, _merge_entry

    res = PairLogitsResult(np.ones(3, np.float32), None, None, None, np.array([0.2, 1.7], np.float32))
    entry = _merge_entry(None, res, flipped=True)  # i is the canonical 'hi' video
    assert entry["nov"] == pytest.approx([1.7, 0.2])
    back = _from_entry(entry, flipped=True, both_orders=False, novelty=True)
    assert back.novelty.tolist() == pytest.approx([0.2, 1.7])
    other = _from_entry(entry, flipped=False, both_orders=False, novelty=True)  # the (j, i) request
    assert other.novelty.tolist() == pytest.approx([1.7, 0.2]) and other.ab.tolist() == [-1, -1, -1]
    old = {k: v for k, v in entry.items() if k != "nov"}  # written before the model had novelty
    assert _from_entry(old, False, False, novelty=True) is None  # a miss, never a hit without the field
    assert _from_entry(old, False, False, novelty=False).novelty is None


@pytest.fixture(scope="module")
async def api(ckpt):
    settings = test_settings(checkpoint=str(ckpt), explain_workers=1)
    async with running_app(settings) as (client, app):
        yield client, app


def _files(a: bytes, b: bytes) -> dict:
    return {"a": ("a.mp4", a, "video/mp4"), "b": ("b.mp4", b, "video/mp4")}


async def _explain(client, a: bytes, b: bytes) -> dict:
    import asyncio

    job = (await client.post("/v1/explain/upload", files=_files(a, b))).json()["job_id"]
    for _ in range(600):
        body = (await client.get(f"/v1/explain/{job}")).json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(body)


async def test_out_of_distribution_pair_withholds_criterion_verdicts(api):
    client, app = api
    assert app.state.engine.backend.contract().novelty is True
    a, b = encode(checker()), encode(flat_red())
    body = await _explain(client, a, b)
    assert body["status"] == "succeeded", body
    res = body["result"]
    nov = res["novelty"]
    assert nov["in_distribution"] is False and nov["max"] > nov["threshold"] == 1.0
    assert nov["max"] == max(nov["a"], nov["b"])
    assert res["criteria"] and all(c["verdict"] == "withheld" and c["confidence"] == 0 for c in res["criteria"])
    assert "unlike the material the model was trained on" in res["reasoning"]
    assert "clearly" not in res["reasoning"]
    pair = (await client.post("/v1/pair/upload", files=_files(a, b))).json()
    assert pair["cache"] == "hit" and pair["novelty"] == nov  # the cached entry carries novelty
    for c in res["criteria"]:  # p_a still reports the head (the number /v1/pair returns)
        assert c["p_a"] == pytest.approx(pair["criteria"][c["name"]], abs=1e-6)
    swapped = (await client.post("/v1/pair/upload", files=_files(b, a))).json()
    assert swapped["cache"] == "hit" and (swapped["novelty"]["a"], swapped["novelty"]["b"]) == (nov["b"], nov["a"])


async def test_in_distribution_pair_keeps_verdicts(api):
    client, _ = api
    base = pan_frames(photo("bythewater"), 48, 320, 180)
    a, b = encode(base), encode(degrade(base, "noise", 0.8))
    pair = (await client.post("/v1/pair/upload", files=_files(a, b))).json()
    assert pair["cache"] == "miss" and pair["novelty"]["in_distribution"] is True
    res = (await _explain(client, a, b))["result"]
    assert res["novelty"] == pair["novelty"]
    assert all(c["verdict"] in ("A", "B", "tie") for c in res["criteria"])
    assert "OUT OF DISTRIBUTION" not in res["reasoning"]


def test_clearly_needs_a_calibrated_probability_far_from_half():
    from service.explain.evidence import _sentence, strength, verdict

    assert strength(0.99, calibrated=False) == "somewhat" and strength(0.99, calibrated=True) == "clearly"
    assert strength(0.79, calibrated=True) == "somewhat" and strength(0.6, calibrated=True) == "slightly"
    text = _sentence("noise", verdict(0.99), calibrated=False)
    assert "clearly" not in text and "uncalibrated" in text
