"""The gateway through a REAL tritonserver (nvidia-pytriton's bundled binary, python backend, CPU).

One server per module, started from a copy of model_repository/aesrm_proxy whose parameters are synced to
the checkpoint the embedded backend loads (the shipped one, or the seed-0 untrained proxy before it
exists), so both backends must give the same logits. Covers: contract discovery from Triton's config,
scores equal to the embedded backend (gRPC and system shared memory, chunks beyond max_batch_size), the
/v1/pair and /v1/group routes, and Triton dying mid-test -> 503 + Retry-After, then recovery.
"""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from service import errors
from service.backends.triton import TritonBackend
from service.config import Settings
from service.metrics import Metrics
from service.tools.triton_launcher import TritonServer
from tests.conftest import metric_value, running_app, test_settings, views_for
from tests.server_process import synced_triton

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc.aio")


def _trained_checkpoint() -> bool:
    from service.model.checkpoint import DEFAULT_CHECKPOINT

    return DEFAULT_CHECKPOINT.is_file()


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    with synced_triton(tmp_path_factory.mktemp("model_repository"),
                       *([] if _trained_checkpoint() else ["--untrained"])) as server:
        yield server


def _settings(triton: TritonServer, **kw) -> Settings:
    return test_settings(**{"backend": "triton", "triton_url": triton.grpc_url, "triton_timeout_s": 10.0,
                            "triton_retries": 2, **kw})


def _embedded_settings() -> Settings:
    return test_settings(allow_untrained=True)


@pytest.fixture(scope="module")
async def embedded():
    from service.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(_embedded_settings(), Metrics())
    await backend.start()
    yield backend
    await backend.close()


def _videos(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 1, 128, 128, 3), dtype=np.int16)
    noise = rng.integers(-20, 20, (n, 8, 128, 128, 3), dtype=np.int16)  # frame-to-frame change
    return np.clip(base + noise * np.arange(1, n + 1).reshape(n, 1, 1, 1, 1), 0, 255).astype(np.uint8)


async def test_contract_discovered_from_triton_equals_embedded(triton, embedded):
    from service.backends.triton import TritonBackend

    backend = TritonBackend(_settings(triton), Metrics())
    await backend.start()
    try:
        assert await backend.ready()
        assert backend.contract() == embedded.contract()  # T/H/W, criteria, id, version, checkpoint, trained
    finally:
        await backend.close()


@pytest.mark.parametrize("shm", [False, True], ids=["grpc", "shared_memory"])
async def test_scores_equal_embedded(triton, embedded, shm):
    from service.backends.triton import TritonBackend

    videos = _videos(12)
    rng = np.random.default_rng(1)
    upper = np.array([(i, j) for i in range(12) for j in range(i + 1, 12)])  # 66 unordered pairs
    pairs = np.concatenate([np.array([[0, 1], [1, 0], [2, 5], [5, 2]]), upper[4:],
                            rng.integers(0, 12, (12, 2))])  # 66 distinct > max_batch_size 64: two chunks
    backend = TritonBackend(_settings(triton, triton_shared_memory=shm), Metrics())
    await backend.start()
    try:
        got = await backend.score(views_for(backend.contract(), videos), pairs)
        again = await backend.score(views_for(backend.contract(), videos[:2]), np.array([[0, 1]]))  # regions reused
    finally:
        await backend.close()
    want = await embedded.score(views_for(embedded.contract(), videos), pairs)
    assert got.dimension.shape == (len(pairs), 3) and got.criteria.shape == want.criteria.shape
    np.testing.assert_allclose(got.dimension, want.dimension, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got.criteria, want.criteria, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(again.dimension[0], want.dimension[0], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got.dimension[1], -got.dimension[0], atol=1e-5)  # antisymmetric heads


async def test_antisymmetric_model_is_asked_each_pair_once_and_the_reverse_order_is_its_negation(triton):
    from tritonclient.grpc import aio as grpcclient

    videos = _videos(3, seed=2)
    both_orders = np.array([[0, 1], [1, 0], [0, 2], [2, 0], [1, 2], [2, 1]])
    backend = TritonBackend(_settings(triton), Metrics())
    stats = grpcclient.InferenceServerClient(triton.grpc_url)
    await backend.start()
    try:
        assert backend.contract().antisymmetric  # declared in aesrm_proxy's config.pbtxt
        before = (await stats.get_inference_statistics("aesrm_proxy", as_json=True))["model_stats"][0]
        got = await backend.score(views_for(backend.contract(), videos), both_orders)
        after = (await stats.get_inference_statistics("aesrm_proxy", as_json=True))["model_stats"][0]
        one = await backend.score(views_for(backend.contract(), videos), np.array([[1, 2]]))
    finally:
        await backend.close()
        await stats.close()
    assert int(after["inference_count"]) - int(before["inference_count"]) == 3  # 3 unordered pairs, not 6
    np.testing.assert_array_equal(got.dimension[1::2], -got.dimension[0::2])
    np.testing.assert_array_equal(got.criteria[1::2], -got.criteria[0::2])
    np.testing.assert_allclose(got.dimension[4], one.dimension[0], atol=1e-5)


async def test_deadline_is_a_504_not_retried_and_unknown_model_is_unavailable(triton):
    from service import errors
    from service.backends.triton import TritonBackend

    backend = TritonBackend(_settings(triton), Metrics())
    await backend.start()
    try:
        backend._s = backend._s.model_copy(update={"triton_timeout_s": 0.001})
        with pytest.raises(errors.BackendTimeout):
            await backend.score(views_for(backend.contract(), _videos(2)), np.array([[0, 1]]))
    finally:
        await backend.close()
    missing = TritonBackend(_settings(triton, triton_model="no_such_model"), Metrics())
    with pytest.raises(errors.BackendUnavailable):
        await missing.start()
    assert not await missing.ready()
    await missing.close()


def _b64(data: bytes) -> dict:
    return {"base64": base64.b64encode(data).decode()}


async def test_pair_and_group_routes_through_triton_equal_embedded(triton, clips):
    pair = {"a": _b64(clips["clean"]), "b": _b64(clips["noisy"]), "both_orders": True}
    group = {"videos": [_b64(clips[k]) for k in ("clean", "blurry", "dark", "vp9")], "aggregation": "bradley_terry"}
    out = {}
    for name, settings in (("triton", _settings(triton)), ("embedded", _embedded_settings())):
        async with running_app(settings) as (client, _):
            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text
            r1 = await client.post("/v1/pair", json=pair)
            r2 = await client.post("/v1/group", json=group)
            assert r1.status_code == 200, r1.text
            assert r2.status_code == 200, r2.text
            out[name] = (ready.json(), r1.json(), r2.json())
            text = (await client.get("/metrics")).text
            # both backends record their queue and inference stages the same way
            assert metric_value(text, "aesrm_stage_duration_seconds_count", stage="inference") >= 2, name
            assert metric_value(text, "aesrm_stage_duration_seconds_count", stage="queue") >= 2, name
    (_, t_pair, t_group), (_, e_pair, e_group) = out["triton"], out["embedded"]
    assert t_pair["model"]["backend"] == "triton" and e_pair["model"]["backend"] == "embedded"
    for k in ("id", "version", "checkpoint", "trained", "frames", "height", "width"):
        assert t_pair["model"][k] == e_pair["model"][k]
    for k in ("VA", "VF", "VP", "overall"):
        assert t_pair["preference"][k] == pytest.approx(e_pair["preference"][k], abs=1e-4)
    for k in ("VA", "VF", "VP"):
        assert t_pair["logits"][k] == pytest.approx(e_pair["logits"][k], abs=1e-3)
    assert t_pair["timings_ms"]["inference_ms"] > 0
    assert [r["index"] for r in t_group["results"]] == [r["index"] for r in e_group["results"]]
    for t, e in zip(t_group["results"], e_group["results"]):
        assert t["reward"] == pytest.approx(e["reward"], abs=1e-3)
    assert t_group["pairs_scored"] == e_group["pairs_scored"]


async def test_triton_down_gives_503_with_retry_after_then_recovers(triton, clips):
    """Runs last: kills the module's server, checks 503 + backend_ready, restarts it on the same ports."""
    first = {"a": _b64(clips["clean"]), "b": _b64(clips["dark"])}
    during = {"a": _b64(clips["other"]), "b": _b64(clips["av1"])}  # not cached: must reach the backend
    after = {"a": _b64(clips["vp9"]), "b": _b64(clips["blurry"])}
    from service.backends.triton import TritonBackend

    shm = TritonBackend(_settings(triton, triton_shared_memory=True), Metrics())
    await shm.start()
    async with running_app(_settings(triton, triton_retries=1)) as (client, _):
        assert (await client.post("/v1/pair", json=first)).status_code == 200
        before = await shm.score(views_for(shm.contract(), _videos(2, seed=5)), np.array([[0, 1]]))
        triton.kill()
        try:
            r = await client.post("/v1/pair", json=during)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "backend_unavailable"
            assert int(r.headers["Retry-After"]) >= 1
            ready = await client.get("/health/ready")  # the gateway still takes traffic (503 per request)
            assert ready.status_code == 200 and ready.json()["backend_ready"] is False
            cached = await client.post("/v1/pair", json=first)  # cache still answers while Triton is down
            assert cached.status_code == 200 and cached.json()["cache"] == "hit"
        finally:
            triton.start(timeout_s=120)
        for _ in range(40):  # gRPC reconnect backoff is capped at 2 s by the backend
            if (await client.get("/health/ready")).json()["backend_ready"]:
                break
            await asyncio.sleep(0.25)
        assert (await client.get("/health/ready")).json()["backend_ready"] is True
        r = await client.post("/v1/pair", json=after)
        assert r.status_code == 200, r.text
        assert (await client.post("/v1/pair", json=during)).status_code == 200
    try:  # a restarted Triton forgot the shared-memory registrations: the backend registers them again
        after_shm = await shm.score(views_for(shm.contract(), _videos(2, seed=5)), np.array([[0, 1]]))
        np.testing.assert_allclose(after_shm.dimension, before.dimension, atol=1e-5)
    finally:
        await shm.close()


async def test_triton_calls_beyond_the_queue_are_refused_with_429_and_waiting_ones_show_in_the_gauge():
    """Same backpressure as the micro-batcher: triton_max_concurrency calls in flight, queue_size waiting,
    the next one refused at once (overloaded); a waiter whose caller leaves is dropped and counted."""
    metrics = Metrics()
    backend = TritonBackend(Settings(triton_max_concurrency=1, queue_size=1), metrics)
    held = await backend._slot()  # the one call in flight
    assert held >= 0
    waiter = asyncio.ensure_future(backend._slot())
    await asyncio.sleep(0)
    text = metrics.registry_text()
    assert metric_value(text, "aesrm_queue_depth") == 1
    with pytest.raises(errors.Overloaded):
        await backend._slot()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    text = metrics.registry_text()
    assert metric_value(text, "aesrm_queue_depth") == 0
    assert metric_value(text, "aesrm_requests_dropped_total", reason="cancelled_before_inference") == 1
    backend._sem.release()
