"""Gateway-through-Triton vs direct tritonclient, and Triton's dynamic-batching gain, in one run.

    .venv/bin/python -m load_tests.bench_triton [--requests 60] [--concurrency 16] [--shared-memory]

Starts a real tritonserver (service.tools.triton_launcher) with aesrm_proxy and the gateway (uvicorn, real HTTP,
AESRM_BACKEND=triton) in a subprocess, then measures on the SAME frames (raw uint8 .npy tensors already at
the model's T x H x W; for a model with several input views, every view prepared as the SDK does and sent
as one .npz, so the gateway's decode is minimal and the comparison isolates the gateway):
1. latency p50/p99 of POST /v1/pair (both orders) vs a direct gRPC infer of what a client needs for the
   same answer (1 row when the model config declares antisymmetric, else both orders as 2 rows), requests
   interleaved one by one; with --shared-memory a second gateway using system shared memory in the same
   rounds. Overhead ratio = gateway p50 / direct p50. Every request uses new videos: no cache hits. In the
   same rounds the thin gateway a user would write (load_tests.naive_server thin: same uvicorn and multipart
   body, np.load, one gRPC infer, no cache/hash/checks/metrics) shows what an HTTP hop in front of Triton
   costs on this box at all; gateway p50 / thin p50 compares ours with it.
2. batching gain: direct single-pair infers, throughput at concurrency C vs 1 (the dynamic batcher merges),
   and the gateway's own throughput at concurrency C vs 1.
Prints only measured numbers. An existing server can be used with --triton-url (repository must serve it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()} cores"


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def _fmt(name: str, lat_s: list[float]) -> str:
    ms = [x * 1000 for x in lat_s]
    return f"{name:<34} p50 {_pct(ms, 50):7.2f} ms   p99 {_pct(ms, 99):7.2f} ms   mean {statistics.mean(ms):7.2f} ms"


def _video(rng: np.random.Generator, views: dict[str, tuple[int, int, int]]) -> dict[str, np.ndarray]:
    """One video as the model takes it: {view name: uint8 [T, H, W, 3]} for every input view."""
    out = {}
    for name, (t, h, w) in views.items():
        base = rng.integers(0, 256, (1, h, w, 3), dtype=np.int16)
        out[name] = np.clip(base + rng.integers(-15, 15, (t, h, w, 3), dtype=np.int16), 0, 255).astype(np.uint8)
    return out


def _upload(video: dict[str, np.ndarray]) -> tuple[str, bytes]:
    """What the SDK uploads for it: .npy frames for a whole-frame-only model, else an .npz of the views."""
    from service.client.frames import npy_bytes

    return ("v.npy", npy_bytes(video["frames"])) if len(video) == 1 else ("v.npz", npy_bytes(video))


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


def _start_gateway(triton_url: str, shm: bool, thin: bool = False) -> tuple[subprocess.Popen, str]:
    """Our gateway (AESRM_BACKEND=triton) or, with `thin`, load_tests.naive_server's thin one."""
    port = free_port()
    env = dict(os.environ, AESRM_BACKEND="triton", AESRM_TRITON_URL=triton_url, AESRM_PORT=str(port),
               AESRM_TRITON_SHARED_MEMORY=str(shm).lower(),
               AESRM_MAX_IN_FLIGHT="1024", AESRM_QUEUE_SIZE="256", PYTHONPATH=str(REPO_ROOT))
    cmd = ([sys.executable, "-m", "load_tests.naive_server", "thin", "--port", str(port), "--triton-url", triton_url]
           if thin else [sys.executable, "-m", "uvicorn", "service.api.app:create_app", "--factory",
                         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"])
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(url + ("/docs" if thin else "/health/ready"), timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("gateway exited")
        time.sleep(0.25)
    proc.terminate()
    raise RuntimeError("gateway not ready")


async def _direct_infer(client, model: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray]):
    """One infer of rows (a[i], b[i]): every view's <view>_a / <view>_b tensor."""
    from tritonclient.grpc import InferInput, InferRequestedOutput

    ins = []
    for name in a:
        for side, arr in (("a", a[name]), ("b", b[name])):
            ins.append(InferInput(f"{name}_{side}", list(arr.shape), "UINT8"))
            ins[-1].set_data_from_numpy(arr)
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


async def bench(triton_url: str, gateway_urls: dict[str, str], thin_url: str, model: str, n: int, conc: int) -> None:
    from tritonclient.grpc import aio as grpcclient

    client = grpcclient.InferenceServerClient(triton_url)
    cfg = (await client.get_model_config(model, as_json=True))["config"]
    views = {i["name"][:-2]: tuple(int(d) for d in i["dims"][:3]) for i in cfg["input"] if i["name"].endswith("_a")}
    t, h, w = views["frames"]
    rng = np.random.default_rng(0)
    pool = [_video(rng, views) for _ in range(8 * n + 8)]  # distinct videos: no cache hits anywhere
    npy = [_upload(v) for v in pool]
    b64 = [base64.b64encode(x[1]).decode() for x in npy]
    http = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64))

    params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
    antisymmetric = params.get("antisymmetric", "false").lower() == "true"
    timings: list[dict] = []

    def via(url: str, a: int, b: int, upload: bool = True):
        """Multipart upload of the .npy / .npz bytes (what the SDK sends for in-memory videos), or base64 JSON."""
        async def call() -> None:
            if upload:
                r = await http.post(url + "/v1/pair/upload", files={"a": npy[a], "b": npy[b]},
                                    data={"both_orders": "true"})
            else:
                r = await http.post(url + "/v1/pair", json={"a": {"base64": b64[a]}, "b": {"base64": b64[b]},
                                                           "both_orders": True})
            assert r.status_code == 200 and r.json()["cache"] == "miss", r.text
            timings.append(r.json()["timings_ms"])
        return call

    async def via_thin(i: int) -> None:
        r = await http.post(thin_url + "/v1/pair/upload", files={"a": npy[4 * i + 2], "b": npy[4 * i + 3]})
        assert r.status_code == 200, r.text

    async def direct_pair(i: int) -> None:
        """What a direct client needs for the same answer: (a,b) only when the model declares
        antisymmetric (the reverse is the negation), else both orders as 2 rows."""
        a, b = pool[4 * i], pool[4 * i + 1]
        if antisymmetric:
            await _direct_infer(client, model, {k: v[None] for k, v in a.items()}, {k: v[None] for k, v in b.items()})
        else:
            await _direct_infer(client, model, {k: np.stack([a[k], b[k]]) for k in a},
                                {k: np.stack([b[k], a[k]]) for k in a})

    async def direct_single(i: int) -> None:
        j = (2 * i) % (2 * n)  # Triton has no cache: reusing frames is fine here
        await _direct_infer(client, model, {k: v[None] for k, v in pool[j].items()},
                            {k: v[None] for k, v in pool[j + 1].items()})

    # warm-up (first requests pay lazy init in torch / the gateway's pools)
    for i in range(3):
        await direct_pair(n + i % 2)
        for url in gateway_urls.values():
            await via(url, 4 * n + i, 4 * n + 3)()
        await via_thin(n + i % 2)

    print(f"model {model}: T={t} H={h} W={w} views {list(views)} antisymmetric={antisymmetric}, "
          f"{n} requests per measurement, "
          f"distinct frames each ({load()})")
    print("\n1) Gateway overhead at concurrency 1, interleaved request by request (same frames; the direct call "
          f"sends {'1 row: the model is antisymmetric' if antisymmetric else '2 rows: both orders'})")
    first = next(iter(gateway_urls))
    names = [f"{g} upload" for g in gateway_urls] + [f"{first} base64 JSON"]
    lat: dict[str, list[float]] = {"direct": [], "thin": [], **{k: [] for k in names}}
    parts: dict[str, list[dict]] = {k: [] for k in names}
    for i in range(n):
        calls = {"direct": lambda: direct_pair(i), "thin": lambda: via_thin(i)}
        for k, (name, url) in enumerate(gateway_urls.items()):  # each gateway its own fresh videos
            calls[f"{name} upload"] = via(url, 4 * i + (2 * k) % 4, 4 * i + (2 * k) % 4 + 1)
        calls[f"{first} base64 JSON"] = via(gateway_urls[first], 6 * n + 8 + 2 * i, 6 * n + 9 + 2 * i, upload=False)
        for name, call in calls.items():
            timings.clear()
            t0 = time.perf_counter()
            await call()
            lat[name].append(time.perf_counter() - t0)
            if name in parts:
                parts[name] += timings
    print(_fmt("direct tritonclient gRPC infer", lat["direct"]))
    print(_fmt("thin gateway (np.load + 1 infer)", lat["thin"])
          + f"   {_pct(lat['thin'], 50) / _pct(lat['direct'], 50):.2f}x direct: a gateway a user would write")
    for name in names:
        print(_fmt(f"gateway /v1/pair ({name})", lat[name]))
        med = {k: statistics.median(t.get(k) or 0.0 for t in parts[name]) for k in parts[name][0] if k.endswith("_ms")}
        print(f"{'  gateway-reported medians (ms)':<34} " + "  ".join(f"{k[:-3]} {v:.1f}" for k, v in med.items()))
        ratio = _pct(lat[name], 50) / _pct(lat["direct"], 50)
        print(f"{f'overhead ratio ({name}/direct)':<34} p50 {ratio:.2f}x (goal <= 1.15x)   p99 "
              f"{_pct(lat[name], 99) / _pct(lat['direct'], 99):.2f}x   "
              f"(+{(_pct(lat[name], 50) - _pct(lat['direct'], 50)) * 1000:.2f} ms p50) ({load()})")
        print(f"{f'  vs the thin gateway':<34} p50 {_pct(lat[name], 50) / _pct(lat['thin'], 50):.2f}x   "
              f"({(_pct(lat[name], 50) - _pct(lat['thin'], 50)) * 1000:+.2f} ms p50)")
    lat_g = lat[names[0]]
    gw_url = next(iter(gateway_urls.values()))

    async def via_gateway(i: int) -> None:  # videos this gateway has not seen: cache misses
        await via(gw_url, 4 * n + 4 + 2 * i, 4 * n + 5 + 2 * i)()

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
    lat_gc, wall_gc = await _run_closed_loop(n, conc, via_gateway)
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
    ap.add_argument("--shared-memory", action="store_true",
                    help="also a second gateway using system shared memory, measured in the same rounds")
    args = ap.parse_args(argv)
    server = None
    if args.triton_url is None:
        server = TritonServer(_prepare_repo(), models=[args.model]).start()
        url = server.grpc_url
    else:
        url = args.triton_url
    gateways: dict[str, subprocess.Popen] = {}
    try:
        urls = {}
        for name in (["grpc", "shared_memory"] if args.shared_memory else ["grpc"]):
            gateways[name], urls[name] = _start_gateway(url, name == "shared_memory")
        gateways["thin"], thin_url = _start_gateway(url, False, thin=True)
        print(f"tritonserver {url} (log {server.log_path if server else '-'}), gateways {urls}, thin {thin_url}, "
              f"cpus={os.cpu_count()} ({load()})")
        asyncio.run(bench(url, urls, thin_url, args.model, args.requests, args.concurrency))
    finally:
        for proc in gateways.values():
            proc.terminate()
            proc.wait(15)
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
