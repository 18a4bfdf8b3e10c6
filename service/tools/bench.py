"""`aesrm-bench`: each figure next to an honest baseline, the ratio measured in the same run, and the load.

Run from a source checkout (the baselines are servers in load_tests/); needs redis-server on PATH.
Every server is a separate process on 127.0.0.1 driven over real HTTP; rounds of ours and the baseline
alternate and medians are reported, so a noisy shared box moves both sides alike. The 1-minute load
average (os.getloadavg) is printed with every figure: on a loaded box, compare ratios, not absolutes.

1. decode: decoded frames per sampled frame and decode time per video, ours (one frame per segment,
   keyframes, non-reference frames skipped, all B frames where the slice headers prove it exact) vs
   decode-every-frame-then-pick, on 480p 5 s H.264 clips with B-frames (libx264 veryfast) at GOP 1 s and 2 s.
2. GRPO group G=8 of 480p 5 s clips, every request a cache miss: requests/s of ours vs the naive server
   (load_tests/naive_server.py: each video decoded once fully, same frames and checkpoint, one forward per
   pair, one order, no cache) at concurrency 4 and 1; our aggregate_ms p99 from the responses.
3. cache hit, POST /v1/pair with base64 JSON: p50 of ours vs the floor server (same uvicorn: parse body,
   hash, one Redis GET, return stored JSON), small (2 x 320x180, 2 s) and large (2 x 480p, 5 s) bodies.
4. encoder: the embedded model's encoder on ONNX Runtime (the gateway's default) vs eager PyTorch (what a
   trainer's own server runs), same checkpoint and thread count, in this process: CPU and wall time for the
   8 videos of a group and for the 2 of a pair.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx
import numpy as np

from service.examples import encode, pan_frames, photo
from service.ingest.decode import DecodeLimits, decode_views
from service.ingest.frames import uniform_indices
from service.ingest.views import render_frames
from service.model.network import ProxyConfig
from service.tools.processes import stop_all

ROOT = Path(__file__).resolve().parents[2]
KEY = "bench-key"
LIMITS = DecodeLimits(max_pixels=3840 * 2160, max_duration_s=600, max_frames=100_000)
T, SIDE = 8, 128
VIEWS = ProxyConfig().views()  # the shipped architecture's views (whole frames + fragments from 2.2.0)


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()} cores"


def clip(seconds: float, width: int, height: int, gop_s: float, seed: int, fps: int = 24) -> bytes:
    """A real camera pan over a real photo, libx264 `veryfast` (B-frames, b-pyramid): generator-like."""
    frames = pan_frames(photo(("path", "bythewater", "colorfulcups")[seed % 3]), int(seconds * fps), width,
                        height, zoom=1.15 + 0.05 * (seed % 5))
    return encode(frames, "h264", fps=fps, gop=int(gop_s * fps),
                  options={"preset": "veryfast", "crf": "23", "threads": "1"})


def full_decode_sample(data: bytes) -> dict[str, np.ndarray]:
    """The naive server's sampler (load_tests/naive_server.py): every frame decoded, T picked, the shipped
    model's views made of them."""
    with av.open(io.BytesIO(data)) as c:
        frames = list(c.decode(video=0))
    return render_frames([frames[i] for i in uniform_indices(len(frames), T)], VIEWS)


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def bench_decode(rounds: int) -> None:
    print(f"\n[1] decode, 480p 5 s H.264 24 fps with B-frames, T={T}, views {[v.name for v in VIEWS]} ({load()})")
    for gop in (1.0, 2.0):
        data = clip(5, 854, 480, gop, seed=0)
        _, stats = decode_views(data, VIEWS, LIMITS)
        ours, full = [], []
        for _ in range(rounds):
            ours.append(_cpu(lambda: decode_views(data, VIEWS, LIMITS)))
            full.append(_cpu(lambda: full_decode_sample(data)))
        o, f = statistics.median(ours), statistics.median(full)
        print(f"  GOP {gop:g} s: decoded frames per sampled frame {stats.frames_decoded / T:.2f} (goal <= 3, "
              f"walk skips {stats.extra['walk_skip']}) "
              f"vs {120 / T:.1f} full decode; CPU per video {o * 1e3:.1f} ms vs {f * 1e3:.1f} ms -> "
              f"{f / o:.1f}x less decode work ({load()})")


def bench_encoder(rounds: int) -> None:
    from service.engine.threads import configure_cpu_threads

    configure_cpu_threads()  # the gateway's OpenMP / allocator settings, before torch is imported
    import torch

    from service.backends.encoder_runtime import OnnxEncoder, TorchEncoder
    from service.config import Settings
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy

    threads = Settings().torch_threads
    torch.set_num_threads(threads)
    model, manifest = load_proxy(DEFAULT_CHECKPOINT)
    encoders = {"onnxruntime": OnnxEncoder(model, threads), "torch": TorchEncoder(model)}
    rng = np.random.default_rng(0)
    print(f"\n[4] embedded encoder, checkpoint {manifest['version']}, {threads} threads, views "
          f"{[v.name for v in model.config.views()]} ({load()})")
    for n in (8, 2):
        views = {v.name: rng.integers(0, 256, (n, v.frames, v.height, v.width, 3), dtype=np.uint8)
                 for v in model.config.views()}
        cpu: dict[str, list[float]] = {k: [] for k in encoders}
        wall: dict[str, list[float]] = {k: [] for k in encoders}
        for name, enc in encoders.items():
            enc(views)  # warm-up
        for _ in range(rounds):
            for name, enc in encoders.items():  # alternated
                w, c = time.perf_counter(), time.process_time()
                for _ in range(5):
                    enc(views)
                cpu[name].append((time.process_time() - c) / 5)
                wall[name].append((time.perf_counter() - w) / 5)
        oc, tc = (statistics.median(cpu[k]) * 1e3 for k in encoders)
        ow, tw = (statistics.median(wall[k]) * 1e3 for k in encoders)
        print(f"  {n} videos: ONNX Runtime CPU {oc:.1f} ms, wall {ow:.1f} ms vs PyTorch CPU {tc:.1f} ms, wall "
              f"{tw:.1f} ms -> {tc / oc:.2f}x less CPU, {tw / ow:.2f}x faster ({load()})")


# ---- servers --------------------------------------------------------------------------------------------

def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """redis-server, our gateway (python -m service.api.app) and the baselines, all on loopback."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.logs = tempfile.TemporaryDirectory(prefix="aesrm-bench-")
        self.redis_url = ""
        self.urls: dict[str, str] = {}
        self.pids: dict[str, int] = {}

    def _spawn(self, name: str, cmd: list[str], env: dict | None = None) -> None:
        log = open(Path(self.logs.name) / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        self.pids[name] = self.procs[-1].pid

    def cpu_s(self, name: str) -> float:
        """CPU seconds (user + system, all threads) the server process has used so far."""
        fields = Path(f"/proc/{self.pids[name]}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Servers:
        redis = shutil.which("redis-server")
        if not redis:
            sys.exit("redis-server not found on PATH")
        rp = _port()
        self._spawn("redis", [redis, "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        self.redis_url = f"redis://127.0.0.1:{rp}/0"
        ports = {name: _port() for name in ("ours", "naive", "floor")}
        env = dict(os.environ, PYTHONPATH=str(ROOT), AESRM_HOST="127.0.0.1", AESRM_PORT=str(ports["ours"]),
                   AESRM_REDIS_URL=self.redis_url,
                   AESRM_API_KEY_HASHES=json.dumps([hashlib.sha256(KEY.encode()).hexdigest()]))
        self._spawn("ours", [sys.executable, "-m", "service.api.app"], env)
        base = [sys.executable, "-m", "load_tests.naive_server"]
        # the same OpenMP setting our gateway applies to itself (service.engine.threads): on a shared box a
        # spinning torch pool would otherwise inflate the baseline's CPU and flatter the ratio
        self._spawn("naive", base + ["naive", "--port", str(ports["naive"])],
                    dict(os.environ, PYTHONPATH=str(ROOT), OMP_WAIT_POLICY="PASSIVE"))
        self._spawn("floor", base + ["floor", "--port", str(ports["floor"]), "--redis-url", self.redis_url],
                    dict(os.environ, PYTHONPATH=str(ROOT)))
        self.urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
        deadline = time.time() + 120
        for name, url in self.urls.items():
            path = "/health/ready" if name == "ours" else "/docs"
            while True:
                try:
                    if httpx.get(url + path, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or any(p.poll() is not None for p in self.procs):
                    self.__exit__()
                    sys.exit(f"{name} did not start; logs in {self.logs.name}")
                time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        stop_all(self.procs)
        self.logs.cleanup()


def _aggregate_cpu_ms(repeat: int = 200) -> float:
    """CPU time of the aggregate stage for one G=8 group, both orders (as the gateway runs it), median."""
    from service.contract import ModelContract
    from service.engine.pipeline import PairLogitsResult
    from service.engine.responses import group_items
    from service.engine.threads import configure_cpu_threads

    configure_cpu_threads()
    c = ModelContract("bench", "1", T, SIDE, SIDE, criteria=tuple(f"c{k}" for k in range(12)))
    rng = np.random.default_rng(0)
    scored = {(i, j): PairLogitsResult(*(rng.normal(size=n).astype(np.float32) for n in (3, 3, 12, 12)))
              for i in range(8) for j in range(i + 1, 8)}
    times = []
    for _ in range(repeat):
        t = time.thread_time()
        group_items(c, 8, scored, False, "bradley_terry", (1.0, 1.0, 1.0))
        times.append(time.thread_time() - t)
    return statistics.median(times) * 1e3


def _ref(data: bytes) -> dict:
    return {"base64": base64.b64encode(data).decode()}


async def _drive(url: str, bodies: list[dict], concurrency: int, path: str) -> tuple[float, list[dict]]:
    """Send `bodies` with `concurrency` in flight; (requests per second, response JSONs)."""
    queue: asyncio.Queue = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    out: list[dict] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            r = await client.post(path, json=queue.get_nowait())
            if r.status_code != 200:
                raise RuntimeError(f"{url}{path}: {r.status_code} {r.text[:300]}")
            out.append(r.json())

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300) as c:
        t = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - t), out


async def bench_group(servers: Servers, rounds: int, requests: int) -> None:
    pool = [clip(5, 854, 480, (1.0, 2.0)[k % 2], seed=k) for k in range(8)]  # GOP 1 s and 2 s
    fresh = iter(range(1, 10**9))

    def bodies(n: int) -> list[dict]:  # trailing bytes: a new digest (a cache miss), the same video
        return [{"videos": [_ref(v + next(fresh).to_bytes(8, "little")) for v in pool]} for _ in range(n)]

    await _drive(servers.urls["ours"], bodies(1), 1, "/v1/group")  # warm-up both
    await _drive(servers.urls["naive"], bodies(1), 1, "/v1/group")
    print(f"\n[2] GRPO group G=8, 480p 5 s H.264 (GOP 1-2 s, B-frames), every request a miss ({load()})")
    cpu: dict[str, list[float]] = {"ours": [], "naive": []}  # CPU seconds per group, all rounds
    for conc in (4, 1):
        rate: dict[str, list[float]] = {"ours": [], "naive": []}
        agg: list[float] = []
        n = {"ours": 2 * requests, "naive": requests} if conc > 1 else {"ours": requests, "naive": max(1, requests // 2)}
        for _ in range(rounds):
            for name in ("ours", "naive"):
                c0 = servers.cpu_s(name)
                r, res = await _drive(servers.urls[name], bodies(n[name]), conc, "/v1/group")
                cpu[name].append((servers.cpu_s(name) - c0) / n[name])
                rate[name].append(r)
                if name == "ours":
                    agg += [x["timings_ms"]["aggregate_ms"] for x in res]
        o, b = statistics.median(rate["ours"]), statistics.median(rate["naive"])
        goal = 5 if conc == 4 else 8
        print(f"  concurrency {conc}: ours {o:.2f} req/s (both orders) vs naive {b:.2f} req/s (one order) -> "
              f"{o / b:.1f}x (goal >= {goal}x; rounds {[round(x, 2) for x in rate['ours']]} vs "
              f"{[round(x, 2) for x in rate['naive']]}) ({load()})")
        if conc == 4:
            agg.sort()
            print(f"  aggregate_ms at concurrency 4: p50 {agg[len(agg) // 2]:.2f} p99 "
                  f"{agg[min(len(agg) - 1, int(0.99 * len(agg)))]:.2f} ms (goal p99 <= 10) over {len(agg)} groups; "
                  f"its CPU per group {_aggregate_cpu_ms():.2f} ms, the rest is waiting for a core ({load()})")
    co, cb = statistics.median(cpu["ours"]), statistics.median(cpu["naive"])
    print(f"  server CPU per group (all threads, unaffected by other load): ours {co:.2f} s vs naive {cb:.2f} s "
          f"-> {cb / co:.1f}x less work per reward")
    text = httpx.get(servers.urls["ours"] + "/metrics").text
    s = c = 0.0
    for line in text.splitlines():
        if line.startswith("aesrm_decode_frames_per_sample_sum"):
            s = float(line.split()[-1])
        elif line.startswith("aesrm_decode_frames_per_sample_count"):
            c = float(line.split()[-1])
    if c:
        print(f"  server metric aesrm_decode_frames_per_sample: mean {s / c:.2f} over {c:.0f} videos")


async def bench_cache(servers: Servers, rounds: int, repeat: int) -> None:
    print(f"\n[3] cache hit, POST /v1/pair base64 JSON over HTTP, p50 ({load()})")
    sizes = {"small (2 x 320x180, 2 s)": (2, 320, 180), "large (2 x 480p, 5 s)": (5, 854, 480)}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        for label, (sec, w, h) in sizes.items():
            body = {"a": _ref(clip(sec, w, h, 1.0, seed=11)), "b": _ref(clip(sec, w, h, 1.0, seed=12))}
            raw = json.dumps(body).encode()
            first = await c.post(servers.urls["ours"] + "/v1/pair", content=raw,
                                 headers={"content-type": "application/json"})
            first.raise_for_status()
            await c.put(servers.urls["floor"] + "/store", json={"request": body, "response": first.json()})
            lat: dict[str, list[float]] = {"ours": [], "floor": []}
            for _ in range(rounds):
                for name in ("ours", "floor"):
                    for _ in range(repeat):
                        t = time.perf_counter()
                        r = await c.post(servers.urls[name] + "/v1/pair", content=raw,
                                         headers={"content-type": "application/json"})
                        lat[name].append(time.perf_counter() - t)
                        if r.status_code != 200 or (name == "ours" and r.json()["cache"] != "hit"):
                            raise RuntimeError(f"{name}: not a hit: {r.status_code} {r.text[:200]}")
            o, f = statistics.median(lat["ours"]), statistics.median(lat["floor"])
            print(f"  {label}, body {len(raw) / 1e3:.0f} kB: ours {o * 1e3:.2f} ms vs floor {f * 1e3:.2f} ms -> "
                  f"{o / f:.2f}x (goal <= 1.5x) ({load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure (medians)")
    parser.add_argument("--requests", type=int, default=4, help="group requests per round and concurrency")
    parser.add_argument("--repeat", type=int, default=30, help="cache-hit requests per round")
    parser.add_argument("--only", choices=["decode", "group", "cache", "encoder"], nargs="*")
    args = parser.parse_args()
    only = set(args.only or ["decode", "group", "cache", "encoder"])
    print(f"aesrm-bench: {os.cpu_count()} cores, {load()}")
    if "decode" in only:
        bench_decode(args.rounds * 2)
    if only & {"group", "cache"}:
        if not (ROOT / "load_tests" / "naive_server.py").exists():
            sys.exit("run from a source checkout: the baselines live in load_tests/")
        with Servers() as servers:
            if "group" in only:
                asyncio.run(bench_group(servers, args.rounds, args.requests))
            if "cache" in only:
                asyncio.run(bench_cache(servers, args.rounds, args.repeat))
    if "encoder" in only:
        bench_encoder(args.rounds * 3)
    print(f"\ndone ({load()})")


if __name__ == "__main__":
    main()
