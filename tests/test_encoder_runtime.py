"""The embedded encoder on ONNX Runtime (the default) gives PyTorch's scores, and falls back cleanly.

Real parts: the shipped checkpoint, its encoder exported and run by ONNX Runtime, real encoded clips through
the app's /v1/pair and /v1/group.
"""

from __future__ import annotations

import base64
import logging
import sys

import numpy as np
import pytest

from service.backends.encoder_runtime import PARITY_TOLERANCE, OnnxEncoder, TorchEncoder, build_encoder, parity_error
from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy
from tests.conftest import running_app, test_settings


def _b64(data: bytes) -> dict:
    return {"base64": base64.b64encode(data).decode()}


@pytest.fixture(scope="module")
def shipped():
    return load_proxy(DEFAULT_CHECKPOINT)[0]


async def _scores(runtime: str, clips) -> tuple[dict, dict, dict, dict]:
    pair = {"a": _b64(clips["clean"]), "b": _b64(clips["noisy"])}
    swapped = {"a": pair["b"], "b": pair["a"]}
    group = {"videos": [_b64(clips[k]) for k in ("clean", "noisy", "blurry", "dark")]}
    async with running_app(test_settings(embedded_runtime=runtime)) as (client, _):
        info = (await client.get("/v1/model")).json()
        out = []
        for path, body in (("/v1/pair", pair), ("/v1/pair", swapped), ("/v1/group", group)):
            r = await client.post(path, json=body)
            assert r.status_code == 200, r.text
            out.append(r.json())
    return info, *out


async def test_onnx_runtime_is_the_default_and_scores_like_pytorch(clips):
    info, pair, swapped, group = await _scores("auto", clips)
    t_info, t_pair, _, t_group = await _scores("torch", clips)
    assert info["runtime"] == "onnxruntime" and t_info["runtime"] == "torch"
    assert info["backend"] == t_info["backend"] == "embedded" and info["checkpoint"] == t_info["checkpoint"]
    for dim in ("VA", "VF", "VP"):
        assert pair["logits"][dim] == pytest.approx(t_pair["logits"][dim], abs=1e-4)
        assert swapped["logits"][dim] == -pair["logits"][dim]  # heads on one embedding per video: exact
    assert max(abs(v) for v in pair["logits"].values()) > 0.05  # big enough for the tolerance to mean something
    rewards = [x["reward"] for x in group["results"]]
    assert rewards == pytest.approx([x["reward"] for x in t_group["results"]], abs=1e-4)
    assert np.ptp(rewards) > 0.05


def test_the_exported_encoder_matches_pytorch_on_every_batch_size(shipped):
    onnx = OnnxEncoder(shipped, threads=1)
    assert parity_error(shipped, onnx) <= PARITY_TOLERANCE
    rng = np.random.default_rng(1)
    views = {v.name: rng.integers(0, 256, (5, v.frames, v.height, v.width, 3), dtype=np.uint8)
             for v in shipped.config.views()}
    want, got = TorchEncoder(shipped)(views), onnx(views)
    assert got.shape == want.shape == (5, shipped.config.embed_dim)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4 * float(want.abs().max()))
    one = onnx({k: v[2:3] for k, v in views.items()})  # a lone video equals its row of a batch
    np.testing.assert_allclose(one.numpy()[0], got.numpy()[2], atol=1e-5 * float(want.abs().max()))


def test_auto_falls_back_to_pytorch_without_onnx_runtime_and_onnxruntime_refuses(shipped, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the package is not installed
    with caplog.at_level(logging.WARNING, logger="service.backends.encoder_runtime"):
        assert build_encoder(shipped, "auto", threads=1).name == "torch"
    assert "ONNX Runtime unavailable" in caplog.text
    with pytest.raises(ImportError):
        build_encoder(shipped, "onnxruntime", threads=1)
    assert build_encoder(shipped, "torch", threads=1).name == "torch"
