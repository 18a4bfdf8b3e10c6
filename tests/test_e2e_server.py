"""End to end through a real uvicorn process (the `aesrm-serve` entry point) over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import free_port


@pytest.fixture(scope="module")
def server(redis_url):
    port = free_port()
    env = dict(os.environ, AESRM_PORT=str(port), AESRM_REDIS_URL=redis_url, AESRM_MAX_BATCH_WAIT_MS="1")
    proc = subprocess.Popen([sys.executable, "-m", "service.api.app"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(proc.stdout.read().decode())
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not become ready")
    yield base
    proc.terminate()
    proc.wait(10)


def test_real_server_scores_pair_and_group_and_exposes_metrics(server, clips):
    r = httpx.post(server + "/v1/pair/upload", files={"a": ("a.mp4", clips["clean"]), "b": ("b.mp4", clips["blurry"])},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["preference"]["overall"] > 0.5
    files = [("videos", (f"{n}.mp4", clips[k])) for n, k in enumerate(["clean", "noisy", "dark"])]
    g = httpx.post(server + "/v1/group/upload", files=files, timeout=30)
    assert g.status_code == 200 and len(g.json()["results"]) == 3
    m = httpx.get(server + "/metrics").text
    for name in ("aesrm_request_duration_seconds_bucket", "aesrm_stage_duration_seconds_bucket",
                 "aesrm_batch_size_bucket", "aesrm_cache_requests_total", "aesrm_in_flight_requests"):
        assert name in m
    assert 'route="/v1/pair/upload"' in m
    assert httpx.get(server + "/docs").status_code == 200
    assert "/v1/group" in httpx.get(server + "/openapi.json").json()["paths"]
