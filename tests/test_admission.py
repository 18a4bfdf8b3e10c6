"""Admission control: beyond max_in_flight, requests are refused at the door (429 + Retry-After), counted,
and never leak in-flight slots; health and metrics are never refused.

A 4x-overload burst against max_in_flight=4, every request a cache miss (real PyAV decode, the real model
behind the real micro-batcher). Latencies are printed for the reader; how admitted latency behaves under
overload is a benchmark claim (load_tests/run_load.py), not asserted here on 2 shared cores.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from service.api.admission import find_admission
from tests.conftest import metric_value, running_app, test_settings

CAP = 4
OVERLOAD = 4  # concurrent clients = OVERLOAD x CAP
PER_CLIENT = 12


def unique(clip: bytes, n: int) -> bytes:
    """Same video, distinct bytes (trailing padding is ignored by the demuxer): forces a cache miss."""
    return clip + b"\0" * (n + 1)


async def blast(client, clips, clients: int, per_client: int, offset: int = 0) -> list[tuple[int, float, dict]]:
    counter = iter(range(offset, offset + 10 ** 6))

    async def one_client():
        out = []
        for _ in range(per_client):
            n = next(counter)
            files = {"a": ("a.mp4", unique(clips["clean"], n)), "b": ("b.mp4", unique(clips["blurry"], n))}
            t = time.perf_counter()
            r = await client.post("/v1/pair/upload", files=files)
            out.append((r.status_code, time.perf_counter() - t, dict(r.headers)))
        return out

    results = await asyncio.gather(*(one_client() for _ in range(clients)))
    return [x for res in results for x in res]


def pct(values, q) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def test_overload_beyond_the_cap_is_refused_with_retry_after_and_counted(clips):
    s = test_settings(allow_untrained=True, max_in_flight=CAP)
    async with running_app(s, None) as (client, app):
        # baseline: one client, no contention
        base = [lat for code, lat, _ in await blast(client, clips, 1, 8, offset=10_000) if code == 200]
        res = await blast(client, clips, CAP * OVERLOAD, PER_CLIENT)
        ok = [lat for code, lat, _ in res if code == 200]
        refused = [(lat, h) for code, lat, h in res if code == 429]
        other = [code for code, _, _ in res if code not in (200, 429)]
        adm = find_admission(app)
        metrics = (await client.get("/metrics")).text
    print(f"\nbaseline p50={pct(base, 50):.1f}ms; {CAP * OVERLOAD} clients x {PER_CLIENT} vs max_in_flight={CAP}: "
          f"200={len(ok)} 429={len(refused)} other={other}; admitted p50={pct(ok, 50):.1f} "
          f"p99={pct(ok, 99):.1f}ms; refused p50={pct([x for x, _ in refused], 50):.2f} "
          f"p99={pct([x for x, _ in refused], 99):.2f}ms")
    assert not other and ok and refused
    assert all(h.get("retry-after") == "1" for _, h in refused)
    assert adm is not None and adm.in_flight == 0 and adm.rejected == len(refused)
    assert metric_value(metrics, "aesrm_errors_total", code="overloaded") == len(refused)


async def test_health_and_metrics_are_never_refused_by_admission(clips):
    s = test_settings(allow_untrained=True, max_in_flight=1)
    async with running_app(s, None) as (client, app):
        adm = find_admission(app)
        adm.in_flight = 1  # saturated
        try:
            assert (await client.get("/health/live")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
            r = await client.post("/v1/pair", json={"a": {"base64": "AA=="}, "b": {"base64": "AA=="}})
            assert r.status_code == 429 and r.json()["error"]["code"] == "overloaded"
            assert r.headers["retry-after"] == "1"
            assert "connection" not in r.headers  # a small unread body is discarded, the connection kept

            async def chunked():
                yield b'{"a": {"base64": "'
            r = await client.post("/v1/pair", content=chunked(), headers={"Content-Type": "application/json"})
            assert r.status_code == 429 and r.headers["connection"] == "close"  # no declared size: closed
        finally:
            adm.in_flight = 0
        r = await client.post("/v1/pair/upload", files={"a": ("a", clips["clean"]), "b": ("b", clips["dark"])})
        assert r.status_code == 200, r.text


async def test_without_a_cap_every_request_of_the_burst_is_admitted(clips):
    """The contrast case: same burst with the cap off -> nothing refused (latencies printed for the reader)."""
    s = test_settings(allow_untrained=True, max_in_flight=10_000, queue_size=10_000)
    async with running_app(s, None) as (client, _):
        res = await blast(client, clips, CAP * OVERLOAD, PER_CLIENT // 2, offset=50_000)
    lat = [x for c, x, _ in res if c == 200]
    print(f"\nno cap: 200={len(lat)} p50={pct(lat, 50):.1f} p99={pct(lat, 99):.1f}ms")
    assert len(lat) == len(res)


async def test_admission_refusals_are_labelled_with_their_route_not_unmatched(clips):
    s = test_settings(allow_untrained=True, max_in_flight=1)
    async with running_app(s, None) as (client, app):
        adm = find_admission(app)
        adm.in_flight = 1  # saturated
        try:
            r = await client.post("/v1/group", json={"videos": [{"base64": "AA=="}, {"base64": "AA=="}]})
            assert r.status_code == 429
        finally:
            adm.in_flight = 0
        text = (await client.get("/metrics")).text
    assert metric_value(text, "aesrm_request_duration_seconds_count", route="/v1/group", status="429") == 1
    assert metric_value(text, "aesrm_request_duration_seconds_count", route="unmatched") == 0


async def test_a_client_that_disconnects_cancels_its_request_before_inference(clips):
    """ASGI-level disconnect after the body was sent: the handler is cancelled while the backend call waits,
    the backend never runs the job, and the drop is counted."""
    import base64
    import json

    from service.backends import build_backend
    from service.metrics import Metrics
    from tests.fakes import DelayedBackend

    s = test_settings(allow_untrained=True)
    backend = DelayedBackend(build_backend(s, Metrics()), delay_s=60.0)
    async with running_app(s, backend) as (client, app):
        body = json.dumps({"a": {"base64": base64.b64encode(clips["clean"]).decode()},
                           "b": {"base64": base64.b64encode(clips["dark"]).decode()}}).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/pair", "raw_path": b"/v1/pair", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json"), (b"host", b"test"),
                                              (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("test", 80)}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent = []

        async def receive():
            if messages:
                return messages.pop(0)
            while backend.calls == 0:  # the request reached the backend: now the client goes away
                await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await asyncio.wait_for(app(scope, receive, send), 60)
        assert backend.calls == 1 and backend.cancelled == 1  # dropped while waiting, not run
        assert not [m for m in sent if m["type"] == "http.response.start"]  # nobody to answer
        text = (await client.get("/metrics")).text
    assert metric_value(text, "aesrm_requests_dropped_total", reason="client_disconnected") == 1
