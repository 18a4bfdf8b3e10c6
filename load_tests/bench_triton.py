"""Gateway-through-Triton vs direct tritonclient, and Triton's dynamic-batching gain, in one run.

    .venv/bin/python -m load_tests.bench_triton [--requests 60] [--concurrency 16] [--shared-memory]

Starts a real tritonserver (service.tools.triton_launcher) with aesrm_proxy and the gateway (uvicorn, real HTTP,
AESRM_BACKEND=triton) in a subprocess, then measures on the SAME frames (raw uint8 .npy tensors already at
the model's T x H x W, so the gateway's decode is minimal and the comparison isolates the gateway):
1. latency p50/p99 of POST /v1/pair (both orders = 2 rows) vs a direct gRPC infer of the same 2 rows;
   overhead ratio = gateway p50 / direct p50. Every request uses new videos: no cache hits.
2. batching gain: direct single-pair infers, throughput at concurrency C vs 1 (the dynamic batcher merges),
   and the gateway's own throughput at concurrency C vs 1.
Prints only measured numbers. An existing server can be used with --triton-url (repository must serve it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from service.tools.triton_launcher import REPO_ROOT, TritonServer, free_port


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def _fmt(name: str, lat_s: list[float]) -> str:
    ms = [x * 1000 for x in lat_s]
    return f"{name:<34} p50 {_pct(ms, 50):7.2f} ms   p99 {_pct(ms, 99):7.2f} ms   mean {statistics.mean(ms):7.2f} ms"


def _video(rng: np.random.Generator, t: int, h: int, w: int) -> np.ndarray:
    base = rng.integers(0, 256, (1, h, w, 3), dtype=np.int16)
    return np.clip(base + rng.integers(-15, 15, (t, h, w, 3), dtype=np.int16), 0, 255).astype(np.uint8)


def _npy_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


def _prepare_repo() -> Path:
    """A temp repository whose aesrm_proxy config matches the checkpoint the gateway would serve."""
    from service.model.checkpoint import DEFAULT_CHECKPOINT

    repo = Path(tempfile.mkdtemp(prefix="aesrm-bench-repo-"))
    shutil.copytree(REPO_ROOT / "model_repository" / "aesrm_proxy", repo / "aesrm_proxy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, str(REPO_ROOT / "model_repository" / "sync_config.py"), "--repo", str(repo)]
    subprocess.run(cmd + ([] if DEFAULT_CHECKPOINT.is_file() else ["--untrained"]), check=True, cwd=REPO_ROOT,
                   stdout=subprocess.DEVNULL)
    return repo


def _start_gateway(triton_url: str, shm: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, AESRM_BACKEND="triton", AESRM_TRITON_URL=triton_url, AESRM_PORT=str(port),
               AESRM_TRITON_SHARED_MEMORY=str(shm).lower(),
               AESRM_MAX_IN_FLIGHT="1024", AESRM_QUEUE_SIZE="256", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.api.app:create_app", "--factory",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("gateway exited")
        time.sleep(0.25)
    proc.terminate()
    raise RuntimeError("gateway not ready")


async def _direct_infer(client, model: str, fa: np.ndarray, fb: np.ndarray):
    from tritonclient.grpc import InferInput, InferRequestedOutput

    ins = [InferInput("frames_a", list(fa.shape), "UINT8"), InferInput("frames_b", list(fb.shape), "UINT8")]
    ins[0].set_data_from_numpy(fa)
    ins[1].set_data_from_numpy(fb)
    outs = [InferRequestedOutput("dimension_logits"), InferRequestedOutput("criterion_logits")]
    res = await client.infer(model, ins, outputs=outs, client_timeout=60)
    return res.as_numpy("dimension_logits")


async def _run_closed_loop(n: int, concurrency: int, fn) -> tuple[list[float], float]:
    """n calls of fn(i) with `concurrency` workers; (latencies, wall seconds)."""
    lat: list[float] = []
    nxt = iter(range(n))

    async def worker():
        for i in nxt:
            t = time.perf_counter()
            await fn(i)
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, time.perf_counter() - t0


async def bench(triton_url: str, gateway_url: str, model: str, n: int, conc: int) -> None:
    from tritonclient.grpc import aio as grpcclient

    client = grpcclient.InferenceServerClient(triton_url)
    cfg = (await client.get_model_config(model, as_json=True))["config"]
    t, h, w, _ = (int(d) for d in cfg["input"][0]["dims"])
    rng = np.random.default_rng(0)
    pool = [_video(rng, t, h, w) for _ in range(4 * n + 4)]  # distinct videos: no cache hits anywhere
    b64 = [_npy_b64(v) for v in pool]
    http = httpx.AsyncClient(base_url=gateway_url, timeout=120, limits=httpx.Limits(max_connections=64))

    timings: list[dict] = []

    async def via_gateway(i: int) -> None:
        r = await http.post("/v1/pair", json={"a": {"base64": b64[2 * i]}, "b": {"base64": b64[2 * i + 1]},
                                              "both_orders": True})
        assert r.status_code == 200 and r.json()["cache"] == "miss", r.text
        timings.append(r.json()["timings_ms"])

    async def direct_pair(i: int) -> None:  # the same 2 rows the gateway sends: (a,b) and (b,a)
        a, b = pool[2 * i], pool[2 * i + 1]
        await _direct_infer(client, model, np.stack([a, b]), np.stack([b, a]))

    async def direct_single(i: int) -> None:
        j = (2 * i) % (2 * n)  # Triton has no cache: reusing frames is fine here
        await _direct_infer(client, model, pool[j][None], pool[j + 1][None])

    # warm-up (first requests pay lazy init in torch / the gateway's pools)
    for i in range(3):
        await direct_pair(n + i % 2)
    await via_gateway(n + 1)

    print(f"model {model}: T={t} H={h} W={w}, {n} requests per measurement, distinct frames each")
    print("\n1) Gateway overhead at concurrency 1 (same frames, both orders = 2 rows per request)")
    lat_d, _ = await _run_closed_loop(n, 1, direct_pair)
    print(_fmt("direct tritonclient gRPC infer", lat_d))
    timings.clear()
    lat_g, _ = await _run_closed_loop(n - 2, 1, via_gateway)
    print(_fmt("gateway POST /v1/pair -> Triton", lat_g))
    parts = {k: statistics.median(t.get(k) or 0.0 for t in timings) for k in timings[0] if k.endswith("_ms")}
    print(f"{'  gateway-reported medians (ms)':<34} " + "  ".join(f"{k[:-3]} {v:.1f}" for k, v in parts.items()))
    ratio = _pct(lat_g, 50) / _pct(lat_d, 50)
    print(f"{'overhead ratio (gateway/direct)':<34} p50 {ratio:.2f}x   p99 {_pct(lat_g, 99) / _pct(lat_d, 99):.2f}x"
          f"   (+{(_pct(lat_g, 50) - _pct(lat_d, 50)) * 1000:.2f} ms p50)")

    print(f"\n2) Dynamic batching gain: single-pair infers, concurrency {conc} vs 1")
    lat1, wall1 = await _run_closed_loop(n, 1, direct_single)
    s0 = (await client.get_inference_statistics(model, as_json=True))["model_stats"][0]
    latc, wallc = await _run_closed_loop(n * 2, conc, direct_single)
    thr1, thrc = n / wall1, 2 * n / wallc
    print(_fmt("concurrency 1", lat1) + f"   {thr1:7.1f} pairs/s")
    print(_fmt(f"concurrency {conc}", latc) + f"   {thrc:7.1f} pairs/s")
    print(f"{'batching gain (throughput)':<34} {thrc / thr1:.2f}x")
    s1 = (await client.get_inference_statistics(model, as_json=True))["model_stats"][0]
    execs = int(s1.get("execution_count", 0)) - int(s0.get("execution_count", 0))
    infers = int(s1.get("inference_count", 0)) - int(s0.get("inference_count", 0))
    print(f"{f'Triton at concurrency {conc}':<34} {infers} pairs in {execs} executions "
          f"(mean dynamic batch {infers / max(execs, 1):.2f})")
    lat_gc, wall_gc = await _run_closed_loop(n, conc, lambda i: via_gateway(n + 2 + i))  # fresh videos
    thr_g1 = len(lat_g) / sum(lat_g)
    print(_fmt(f"gateway concurrency {conc}", lat_gc) + f"   {n / wall_gc:7.1f} req/s (both orders)")
    print(f"{f'gateway throughput c{conc} / c1':<34} {n / wall_gc / thr_g1:.2f}x")
    await http.aclose()
    await client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--model", default="aesrm_proxy")
    ap.add_argument("--triton-url", default=None, help="use a running Triton instead of starting one")
    ap.add_argument("--shared-memory", action="store_true", help="gateway uses system shared memory")
    args = ap.parse_args(argv)
    server = None
    if args.triton_url is None:
        server = TritonServer(_prepare_repo(), models=[args.model]).start()
        url = server.grpc_url
    else:
        url = args.triton_url
    gateway = None
    try:
        gateway, gw_url = _start_gateway(url, args.shared_memory)
        print(f"tritonserver {url} (log {server.log_path if server else '-'}), gateway {gw_url} "
              f"(shared memory {'on' if args.shared_memory else 'off'}), cpus={os.cpu_count()}")
        asyncio.run(bench(url, gw_url, args.model, args.requests, args.concurrency))
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(15)
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
