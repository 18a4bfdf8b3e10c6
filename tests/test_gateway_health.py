"""Gateway health as an orchestrator and Prometheus see it (real app, real gRPC client, real HTTP/ASGI).

* Readiness means "this gateway can take traffic": a Triton outage must not empty the gateway Service
  (clients would get connection errors); the gateway stays ready, answers each scoring request with a fast
  503 + Retry-After and reports the outage in `backend_ready` and aesrm_backend_ready. An in-process model
  that failed to load does make the gateway unready (this replica cannot serve anything).
* Every known label value of the labelled counters is exported at 0 from start-up, so rate() sees the first
  event (alerts and dashboard panels read 0 for a series born with its first increment).
"""

from __future__ import annotations

import base64

import httpx

from service.client import AsyncAesRMClient
from service.metrics import CACHE_RESULTS, EXPLAIN_OUTCOMES, error_codes
from tests.conftest import free_port, metric_value, running_app, test_settings


def _b64(data: bytes) -> dict:
    return {"base64": base64.b64encode(data).decode()}


async def test_triton_outage_keeps_the_gateway_ready_and_answers_503_per_request(clips):
    # A real tritonclient gRPC channel to a port where no Triton listens: the outage as the gateway sees it.
    s = test_settings(backend="triton", triton_url=f"127.0.0.1:{free_port()}", triton_timeout_s=0.5,
                      triton_retries=0)
    async with running_app(s) as (client, app):
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "backend": "triton", "backend_ready": False}
        async with AsyncAesRMClient("http://gw", transport=httpx.ASGITransport(app=app)) as sdk:
            assert await sdk.ready() is False  # the SDK asks "can I score now?", not "is the gateway up?"
        r = await client.post("/v1/pair", json={"a": _b64(clips["clean"]), "b": _b64(clips["noisy"])})
        assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable", r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert (await client.get("/v1/model")).status_code == 503
        text = (await client.get("/metrics")).text
        assert metric_value(text, "aesrm_backend_ready") == 0
        assert metric_value(text, "aesrm_errors_total", code="backend_unavailable") >= 1


async def test_embedded_model_that_failed_to_load_makes_the_gateway_unready(tmp_path):
    s = test_settings(checkpoint=str(tmp_path / "missing.pt"), allow_untrained=False)
    async with running_app(s) as (client, _):
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        assert ready.json() == {"status": "not_ready", "backend": "embedded", "backend_ready": False}
        assert (await client.get("/health/live")).status_code == 200
        assert metric_value((await client.get("/metrics")).text, "aesrm_backend_ready") == 0


async def test_ready_embedded_gateway_reports_its_model():
    async with running_app(test_settings(allow_untrained=True)) as (client, _):
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["backend_ready"] is True and body["model"]["backend"] == "embedded"
        assert metric_value((await client.get("/metrics")).text, "aesrm_backend_ready") == 1


async def test_known_label_values_are_exported_at_zero_from_start():
    async with running_app(test_settings(allow_untrained=True)) as (client, _):
        lines = set((await client.get("/metrics")).text.splitlines())
    for code in error_codes():
        assert f'aesrm_errors_total{{code="{code}"}} 0.0' in lines, code
    for result in CACHE_RESULTS:
        assert f'aesrm_cache_requests_total{{result="{result}"}} 0.0' in lines, result
    for outcome in EXPLAIN_OUTCOMES:
        assert f'aesrm_explain_jobs_total{{outcome="{outcome}"}} 0.0' in lines, outcome
    assert {"backend_error", "backend_timeout", "backend_unavailable", "internal", "overloaded"} <= set(error_codes())
