"""AesRM-Base plumbing through a real tritonserver (CPU): the tiny random Qwen2.5-VL python-backend model
returns [P,3] answer-token preference logits, the gateway's TritonBackend discovers its contract (T/H/W from
input dims, no criterion output, trained=false) and the values equal the in-process scorer's.
Shape and contract only: the weights are random."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import numpy as np
import pytest

from service.config import Settings
from service.tools.triton_launcher import REPO_ROOT, TritonServer

pytest.importorskip("pytriton")
pytest.importorskip("transformers")


def _scorer_module():
    spec = importlib.util.spec_from_file_location(
        "aesrm_base_model", REPO_ROOT / "model_repository" / "aesrm_base" / "1" / "model.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def base_server():
    server = TritonServer(REPO_ROOT / "model_repository", models=["aesrm_base"])
    try:
        server.start(timeout_s=120)
    except Exception as exc:  # surface the server log in the failure
        pytest.fail(f"tritonserver did not start: {exc}")
    yield server
    server.stop()


def test_scorer_in_process_contract():
    mod = _scorer_module()
    scorer = mod.AesRMBaseScorer(tiny_random=True, dtype="float32")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 8, 224, 224, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 8, 224, 224, 3), dtype=np.uint8)
    out = scorer.score(a, b)
    assert out.shape == (2, 3) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(scorer.score(a[1:], b[1:]), out[1:], atol=1e-4)  # batch-independent
    with pytest.raises(ValueError):
        scorer.check_shape(8, 100, 224)  # not a multiple of patch*merge


def test_base_through_triton(base_server):
    from service.backends.triton import TritonBackend

    mod = _scorer_module()
    expected_scorer = mod.AesRMBaseScorer(tiny_random=True, dtype="float32")

    async def run():
        backend = TritonBackend(Settings(backend="triton", triton_url=base_server.grpc_url,
                                         triton_model="aesrm_base"))
        await backend.start()
        try:
            c = backend.contract()
            assert (c.frames, c.height, c.width) == (8, 224, 224)
            assert c.criteria == () and c.trained is False and c.checkpoint == "untrained-random-init"
            assert c.model_id == "aesrm-base-tiny-random" and c.antisymmetric is False
            assert await backend.ready()
            rng = np.random.default_rng(1)
            videos = rng.integers(0, 256, (3, 8, 224, 224, 3), dtype=np.uint8)
            pairs = np.array([[0, 1], [1, 0], [0, 2], [2, 1], [1, 2]])  # 5 > max_batch_size 4: two chunks
            got = await backend.score({"frames": videos}, pairs)
            return got, videos, pairs
        finally:
            await backend.close()

    got, videos, pairs = asyncio.run(run())
    assert got.dimension.shape == (5, 3) and got.criteria is None
    want = expected_scorer.score(videos[pairs[:, 0]], videos[pairs[:, 1]])
    np.testing.assert_allclose(got.dimension, want, atol=1e-4)


async def test_gateway_pair_route_with_a_criteria_less_vlm_model(base_server, clips):
    """The gateway samples at the contract Triton announces (224x224 here) and copes with no criteria."""
    import base64

    from tests.conftest import running_app, test_settings

    settings = test_settings(backend="triton", triton_url=base_server.grpc_url, triton_model="aesrm_base")
    body = {"a": {"base64": base64.b64encode(clips["clean"]).decode()},
            "b": {"base64": base64.b64encode(clips["noisy"]).decode()}}
    async with running_app(settings) as (client, _):
        r = await client.post("/v1/pair", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"]["id"] == "aesrm-base-tiny-random" and out["model"]["trained"] is False
    assert (out["model"]["height"], out["model"]["width"]) == (224, 224)
    assert set(out["logits"]) >= {"VA", "VF", "VP"} and not out.get("criteria")
