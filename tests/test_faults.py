"""Fault injection with real processes: Redis killed/restarted under load, slow backend, Triton restart.

Each scenario is bounded (seconds, request counts) and prints its figures.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections import Counter

import numpy as np
import pytest

from service.api.admission import find_admission
from service.api.security import hash_key
from service.backends import build_backend
from service.metrics import Metrics
from tests.conftest import RedisServer, metric_value, running_app, test_settings
from tests.fakes import DelayedBackend, FakeBackend

KEY = "fault-test-key"
H = {"Authorization": f"Bearer {KEY}"}


def _pad(clip: bytes, n: int) -> bytes:
    return clip + b"\0" * (n + 1)


async def test_redis_killed_and_restarted_under_load_fails_no_request(clips):
    """Cache and rate limiter both live in Redis; with Redis gone for ~2 s no scoring request may fail."""
    server = RedisServer().start()
    s = test_settings(allow_untrained=True, redis_url=server.url, redis_timeout_s=0.1, redis_retry_after_s=0.5,
                      api_key_hashes=[hash_key(KEY)], rate_limit_per_minute=100_000)
    codes: Counter = Counter()
    lat: list[float] = []
    phases: dict[str, Counter] = {"before": Counter(), "down": Counter(), "after": Counter()}
    phase = "before"
    try:
        async with running_app(s) as (client, app):
            stop = time.monotonic() + 6.0
            counter = iter(range(10**6))

            async def worker(w: int):
                while time.monotonic() < stop:
                    n = next(counter)
                    # 2 of 3 requests repeat a pair (cache hits while Redis is up), 1 of 3 is new
                    a = clips["clean"] if n % 3 else _pad(clips["clean"], n)
                    files = {"a": ("a.mp4", a), "b": ("b.mp4", clips["noisy"])}
                    t = time.perf_counter()
                    r = await client.post("/v1/pair/upload", files=files, headers=H)
                    lat.append(time.perf_counter() - t)
                    codes[r.status_code] += 1
                    phases[phase][r.json().get("cache", r.status_code)] += 1

            async def chaos():
                nonlocal phase
                await asyncio.sleep(1.5)
                server.stop()  # SIGKILL
                phase = "down"
                await asyncio.sleep(2.0)
                server.start()  # same port
                phase = "after"

            await asyncio.gather(chaos(), *(worker(w) for w in range(3)))
            m = (await client.get("/metrics")).text
            limiter = app.state.rate_limiter
    finally:
        server.stop()
    p = lambda q: float(np.percentile(lat, q)) * 1000  # noqa: E731
    print(f"\nredis kill/restart: codes={dict(codes)} phases={ {k: dict(v) for k, v in phases.items()} } "
          f"p50={p(50):.0f}ms p99={p(99):.0f}ms max={max(lat) * 1000:.0f}ms; cache errors="
          f"{metric_value(m, 'aesrm_cache_requests_total', result='error'):.0f} bypass="
          f"{metric_value(m, 'aesrm_cache_requests_total', result='bypass'):.0f}; limiter local decisions="
          f"{limiter.fallbacks}")
    assert set(codes) == {200} and sum(codes.values()) > 30
    assert phases["after"]["hit"] > 0  # cache back in use after the restart
    assert metric_value(m, "aesrm_cache_requests_total", result="error") > 0  # the outage was real
    assert limiter.fallbacks > 0


async def test_slow_backend_times_out_fast_without_pile_up(clips):
    """Backend slower than inference_timeout_s: every request gets 504 + Retry-After near the timeout,
    concurrently (not one after another), nothing stays in flight, and the service recovers."""
    s = test_settings(allow_untrained=True, inference_timeout_s=0.3)
    backend = DelayedBackend(build_backend(s, Metrics()), delay_s=60.0)
    async with running_app(s, backend) as (client, app):
        async def one(n):
            t = time.perf_counter()
            r = await client.post("/v1/pair/upload", files={"a": ("a", _pad(clips["clean"], n)),
                                                            "b": ("b", clips["dark"])})
            return r.status_code, r.headers.get("retry-after"), time.perf_counter() - t

        t0 = time.perf_counter()
        res = await asyncio.gather(*(one(n) for n in range(12)))
        wall = time.perf_counter() - t0
        adm = find_admission(app)
        assert {c for c, _, _ in res} == {504} and all(ra == "1" for _, ra, _ in res)
        # answered at the timeout, all at once: far sooner than the backend's 60 s (no wall-clock tightness)
        assert max(x for _, _, x in res) < 20 and wall < 20, (res, wall)
        assert adm.in_flight == 0 and backend.cancelled == backend.calls == 12
        backend.delay_s = 0.0  # backend healthy again
        r = await client.post("/v1/pair/upload", files={"a": ("a", clips["clean"]), "b": ("b", clips["dark"])})
        assert r.status_code == 200
    print(f"\nslow backend: 12 concurrent -> 504 in max {max(x for _, _, x in res) * 1000:.0f}ms, wall {wall * 1000:.0f}ms")


async def test_slow_model_on_the_inference_thread_does_not_pile_up(clips):
    """The forward itself is slow (can't be cancelled): timed-out jobs are dropped from the micro-batch queue,
    the queue stays bounded (429 beyond queue_size) and drains; later requests succeed."""
    s = test_settings(allow_untrained=True, inference_timeout_s=0.5, queue_size=6, max_batch_videos=2)
    backend = FakeBackend(s, work_ms=150)  # 2 videos per forward -> 300 ms per batch
    codes: Counter = Counter()
    async with running_app(s, backend) as (client, app):
        async def one(n):
            r = await client.post("/v1/pair/upload", files={"a": ("a", _pad(clips["clean"], n)),
                                                            "b": ("b", clips["dark"])})
            codes[r.status_code] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(16)))
        wall = time.perf_counter() - t0
        queue = backend._batcher._queue  # noqa: SLF001 - the bounded queue under test
        for _ in range(40):
            if queue.qsize() == 0:
                break
            await asyncio.sleep(0.1)
        assert queue.qsize() == 0 and find_admission(app).in_flight == 0
        await asyncio.sleep(0.4)  # let the in-progress forward finish
        r = await client.post("/v1/pair/upload", files={"a": ("a", clips["clean"]), "b": ("b", clips["dark"])})
        assert r.status_code == 200
    print(f"\nslow model thread: codes={dict(codes)} wall={wall:.2f}s")
    assert set(codes) <= {200, 429, 504} and codes[504] > 0  # timeouts/refusals cut the tail, nothing else


def _triton_ready_to_test() -> str | None:
    """Why the Triton fault test can't run here yet (None = it can)."""
    from pathlib import Path

    if importlib.util.find_spec("service.tools.triton_launcher") is None:
        return "service/tools/triton_launcher.py missing"
    if importlib.util.find_spec("service.backends.triton") is None:
        return "service/backends/triton.py missing"
    if not (Path(__file__).resolve().parents[1] / "model_repository" / "aesrm_proxy" / "config.pbtxt").is_file():
        return "model_repository/aesrm_proxy/config.pbtxt missing"
    if importlib.util.find_spec("service.model.checkpoint") is None:
        return "service/model/checkpoint.py missing (the Triton model loads the proxy through it)"
    if importlib.util.find_spec("pytriton") is None:
        return "nvidia-pytriton not installed"
    return None


@pytest.mark.skipif(_triton_ready_to_test() is not None, reason=str(_triton_ready_to_test()))
async def test_triton_killed_and_restarted_gives_fast_503_then_recovers(clips):
    """Real tritonserver (service.tools.triton_launcher): SIGKILL it -> scoring answers 503 + Retry-After quickly
    while /health/ready stays 200 with backend_ready false; start it again on the same ports -> scoring
    recovers with no app restart."""
    from pathlib import Path

    from service.tools.triton_launcher import TritonServer

    repo = Path(__file__).resolve().parents[1] / "model_repository"
    server = TritonServer(repo, models=("aesrm_proxy",)).start(180)
    s = test_settings(allow_untrained=True, backend="triton", triton_url=server.grpc_url, triton_timeout_s=2.0,
                      triton_retries=1, inference_timeout_s=5.0)
    n = iter(range(10**6))

    async def pair(client):
        k = next(n)
        t = time.perf_counter()
        r = await client.post("/v1/pair/upload", files={"a": ("a", _pad(clips["clean"], k)),
                                                        "b": ("b", _pad(clips["noisy"], k))})
        return r, time.perf_counter() - t

    try:
        async with running_app(s) as (client, _):
            r, _ = await pair(client)
            assert r.status_code == 200, r.text
            server.kill()
            down = [await pair(client) for _ in range(5)]
            ready = await client.get("/health/ready")
            codes = [r.status_code for r, _ in down]
            worst = max(x for _, x in down)
            assert codes == [503] * 5, [(r.status_code, r.text[:200]) for r, _ in down]
            assert all(r.headers.get("retry-after") for r, _ in down) and worst < 2.5
            assert ready.status_code == 200 and ready.json()["backend_ready"] is False  # gateway stays in service
            t_restart = time.perf_counter()
            await asyncio.to_thread(server.start, 180)
            t_ready = time.perf_counter()
            for _ in range(60):
                r, _ = await pair(client)
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.5)
            recovered = time.perf_counter() - t_ready
            assert r.status_code == 200, r.text
            assert (await client.get("/health/ready")).json()["backend_ready"] is True
    finally:
        server.stop()
    print(f"\ntriton kill: {codes} worst {worst * 1000:.0f}ms; server restart took {t_ready - t_restart:.1f}s; "
          f"first 200 {recovered:.2f}s after Triton was ready")
