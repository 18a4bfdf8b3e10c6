"""AesRM-CoT plumbing on a real tritonserver (nvidia-pytriton's bundled binary, CPU): the decoupled python
backend model with a tiny random transformers LM streams text chunks incrementally, then a final verdict
that the gateway parses into the explanation result and forwards over SSE."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from service.explain.cot import CotClient, parse_final
from tests.conftest import running_app, test_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    """tritonserver (service.tools.triton_launcher) with a temp repository holding only aesrm_cot."""
    try:
        from service.tools.triton_launcher import TritonServer, prepare_server

        prepare_server()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"tritonserver cannot be prepared on this box: {exc}")
    repo = tmp_path_factory.mktemp("models")
    shutil.copytree(REPO / "model_repository" / "aesrm_cot", repo / "aesrm_cot",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cfg = repo / "aesrm_cot" / "config.pbtxt"  # longer generation so the stream visibly spreads in time
    cfg.write_text(cfg.read_text().replace('"max_new_tokens" value: { string_value: "48" }',
                                           '"max_new_tokens" value: { string_value: "96" }'))
    with pytest.MonkeyPatch.context() as mp:
        # the python stub takes its site-packages from the `python3` first on PATH: use this venv's
        # (otherwise it may import a numpy it was not built for and return empty tensors)
        mp.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        server = TritonServer(repo, models=("aesrm_cot",), log_path=tmp_path_factory.mktemp("tlog") / "t.log")
        server.start(timeout_s=90)
    try:
        yield server.grpc_url
    finally:
        server.stop()


async def test_stream_arrives_incrementally_then_final_verdict(triton):
    rng = np.random.default_rng(0)
    fa = rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    fb = (fa // 3).astype(np.uint8)
    got: list[tuple[str, str, float]] = []
    async for kind, text in CotClient(triton, "aesrm_cot", 30).stream(fa, fb, prompt="Focus on noise."):
        got.append((kind, text, time.perf_counter()))
    kinds = [k for k, _, _ in got]
    assert kinds[-1] == "final" and kinds.count("final") == 1
    texts = [g for g in got if g[0] == "text"]
    assert len(texts) >= 5, kinds  # 96 tokens / 8 per chunk, one response each
    assert texts[0][2] < got[-1][2]  # text came before the final, not all at once at the end
    assert all(t for _, t, _ in texts)
    verdict = parse_final(got[-1][1])
    assert set(verdict.dimensions) == {"VA", "VF", "VP"}
    assert verdict.reasoning == "".join(t for _, t, _ in texts)  # the final restates exactly what streamed
    for v in list(verdict.dimensions.values()) + verdict.criteria:
        assert v.verdict in ("A", "B", "tie") and 0 <= v.confidence <= 1 and 0 <= v.p_a <= 1
    assert {c.name for c in verdict.criteria} >= {"noise", "motion"}


async def test_gateway_explanation_through_triton_cot(triton, clips, redis_url):
    settings = test_settings(redis_url=redis_url, allow_untrained=True, explain_backend="triton",
                             triton_url=triton, explain_timeout_s=60)
    async with running_app(settings) as (client, _):
        files = {"a": ("a.mp4", clips["clean"], "video/mp4"), "b": ("b.mp4", clips["dark"], "video/mp4")}
        r = await client.post("/v1/explain/upload", files=files)
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        events = []
        async with client.stream("GET", f"/v1/explain/{job}/events") as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            kind = None
            async for line in s.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, orjson.loads(line[6:])))
        kinds = [k for k, _ in events]
        assert kinds[:2] == ["status", "status"] and kinds[-2:] == ["result", "end"], kinds
        assert kinds.count("text") >= 2 and kinds.index("text") < kinds.index("result")
        body = (await client.get(f"/v1/explain/{job}")).json()
        assert body["status"] == "succeeded", body
        res = body["result"]
        assert res["source"] == "cot_model" and res["model"]["backend"] == "triton"
        assert set(res["dimensions"]) == {"VA", "VF", "VP"} and res["criteria"]
        streamed = "".join(d["text"] for k, d in events if k == "text")
        assert res["reasoning"].startswith(streamed.strip()[:20])
        for c in res["criteria"]:
            assert c["name"].replace("_", " ") in res["reasoning"]
