"""aesrm_proxy's dynamic batcher on a real tritonserver: a lone client is not taxed by a batching delay, and
batches still form when requests overlap. Queue time and batch formation are read from Triton's own model
statistics (the numbers perf_analyzer reports as "queue" and inferences per execution)."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import numpy as np
import pytest

from service.tools.triton_launcher import REPO_ROOT, TritonServer

pytest.importorskip("pytriton", reason="the `triton` extra (nvidia-pytriton) is not installed")
grpcclient = pytest.importorskip("tritonclient.grpc.aio")
MODEL = "aesrm_proxy"


def _batching(path) -> dict:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(cfg.dynamic_batching, preserving_proto_field_name=True)


def test_no_preferred_sizes_one_client_cannot_reach():
    for path in (REPO_ROOT / "model_repository" / MODEL / "config.pbtxt",
                 REPO_ROOT / "model_repository" / MODEL / "configs" / "gpu.pbtxt"):
        db = _batching(path)
        assert "preferred_batch_size" not in db, path
        assert int(db.get("max_queue_delay_microseconds", 0)) <= 200, path


@pytest.fixture(scope="module")
def triton():
    server = TritonServer(REPO_ROOT / "model_repository", models=[MODEL]).start(180)
    yield server
    server.stop()


def _stats(server) -> tuple[int, int, int, int]:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{MODEL}/stats", timeout=5) as r:
        s = json.load(r)["model_stats"][0]
    q = s["inference_stats"]["queue"]
    return int(s["inference_count"]), int(s["execution_count"]), int(q["count"]), int(q["ns"])


async def _infer(client, rng) -> None:
    """One pair: every input the model config declares (frames, and fragments from proxy 2.2.0)."""
    cfg = (await client.get_model_config(MODEL, as_json=True))["config"]
    inputs = []
    for spec in cfg["input"]:
        shape = [1, *(int(d) for d in spec["dims"])]
        x = grpcclient.InferInput(spec["name"], shape, "UINT8")
        x.set_data_from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))
        inputs.append(x)
    await client.infer(MODEL, inputs, client_timeout=60)


async def test_lone_client_runs_batches_of_one_and_overlapping_requests_still_batch(triton):
    """How long a lone request waits is a benchmark figure (perf_analyzer, model_repository/README.md) and is
    printed here; what is asserted is behaviour: the config holds no request for preferred sizes (above),
    sequential requests run alone, overlapping ones are batched."""
    rng = np.random.default_rng(0)
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        await _infer(client, rng)  # warm-up
        inf0, exe0, n0, ns0 = _stats(triton)
        for _ in range(20):  # concurrency 1
            await _infer(client, rng)
        inf1, exe1, n1, ns1 = _stats(triton)
        mean_queue_ms = (ns1 - ns0) / (n1 - n0) / 1e6
        assert inf1 - inf0 == exe1 - exe0 == 20  # one client: batches of one
        print(f"\nlone request: mean {mean_queue_ms:.2f} ms in Triton's queue")
        await asyncio.gather(*(_infer(client, rng) for _ in range(24)))  # 24 overlapping requests
        inf2, exe2, _, _ = _stats(triton)
        assert inf2 - inf1 == 24 and exe2 - exe1 < 24, f"no batch formed: {exe2 - exe1} executions for 24"
    finally:
        await client.close()
    print(f"\nconcurrency 1: mean queue {mean_queue_ms:.3f} ms; 24 overlapping: {exe2 - exe1} executions "
          f"(mean batch {24 / (exe2 - exe1):.1f})")
