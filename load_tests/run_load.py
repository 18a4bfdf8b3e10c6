"""Bounded load + soak against a local stack started here (redis-server + the service on free 127.0.0.1 ports).

    .venv/bin/python -m load_tests.run_load --quick          # < 60 s
    .venv/bin/python -m load_tests.run_load --requests 2000 --concurrency 16 --soak-s 120 --soak-rps 20

Traffic mix: pair uploads, GRPO group uploads (G videos), explanation submits (+ one status poll). A share
of requests use fresh bytes (cache misses: real decode + inference), the rest repeat (cache hits).
Everything is bounded: a fixed request count at fixed concurrency, then a fixed-rate soak for a fixed time.
Prints p50/p95/p99 per kind, status/error-code counts and the server's RSS drift during the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np

from service.tools.processes import stop_all

ROOT = Path(__file__).resolve().parents[1]
KEY = "load-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Stack:
    """redis-server + service subprocesses on loopback; always torn down."""

    def __init__(self, extra_env: dict[str, str]) -> None:
        self.redis_port, self.port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.extra_env, self.procs = extra_env, []

    def __enter__(self) -> "Stack":
        redis = shutil.which("redis-server")
        if not redis:
            sys.exit("redis-server not found (apt-get install redis-server)")
        self.procs.append(subprocess.Popen([redis, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                            "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL))
        import hashlib

        env = dict(os.environ, AESRM_HOST="127.0.0.1", AESRM_PORT=str(self.port),
                   AESRM_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0", AESRM_ALLOW_UNTRAINED="true",
                   AESRM_API_KEY_HASHES=json.dumps([hashlib.sha256(KEY.encode()).hexdigest()]),
                   PYTHONPATH=str(ROOT), **self.extra_env)
        self.server = subprocess.Popen([sys.executable, "-m", "service.api.app"], env=env, cwd=ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(self.server)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError("server exited: " + self.server.stderr.read().decode()[-2000:])
            try:
                if httpx.get(self.base + "/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.__exit__()
        raise RuntimeError("server not ready in 90 s")

    def __exit__(self, *exc) -> None:
        stop_all(self.procs)


def make_clips(n: int) -> list[bytes]:
    from service.examples import degrade, encode, pan_frames, photo

    out = []
    for k in range(n):
        frames = pan_frames(photo(["bythewater", "colorfulcups", "path"][k % 3]), 24, 256, 144)
        out.append(encode(degrade(frames, ["noise", "blur", "dark"][k % 3], 0.2 + 0.1 * k)))
    return out


class Traffic:
    def __init__(self, clips: list[bytes], miss_ratio: float, group_size: int, explain: bool, seed: int = 0):
        self.clips, self.miss, self.g, self.explain = clips, miss_ratio, group_size, explain
        self.rng = random.Random(seed)
        self.fresh = 0
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.lat_ok: dict[str, list[float]] = defaultdict(list)  # 2xx only (admitted and served)
        self.lat_429: dict[str, list[float]] = defaultdict(list)
        self.timeline: list[tuple[float, float, str]] = []  # (start, latency, code): latency growth over time
        self.codes: dict[str, Counter] = defaultdict(Counter)

    def _video(self) -> bytes:
        clip = self.rng.choice(self.clips)
        if self.rng.random() < self.miss:
            self.fresh += 1
            return clip + self.fresh.to_bytes(8, "little")  # trailing bytes: new digest, same video
        return clip

    async def one(self, client: httpx.AsyncClient) -> None:
        r = self.rng.random()
        kind = "explain" if (self.explain and r < 0.1) else "group" if r < 0.3 else "pair"
        t = time.perf_counter()
        try:
            if kind == "pair":
                resp = await client.post("/v1/pair/upload", files={"a": ("a.mp4", self._video()),
                                                                   "b": ("b.mp4", self._video())})
            elif kind == "group":
                resp = await client.post("/v1/group/upload",
                                         files=[("videos", (f"{i}.mp4", self._video())) for i in range(self.g)])
            else:
                resp = await client.post("/v1/explain/upload", files={"a": ("a.mp4", self._video()),
                                                                      "b": ("b.mp4", self._video())})
                if resp.status_code == 202:
                    await client.get(resp.json()["links"]["self"])
            code = str(resp.status_code)
            if resp.status_code >= 400:
                code += ":" + resp.json().get("error", {}).get("code", "?")
        except httpx.HTTPError as exc:
            code = "client:" + type(exc).__name__
        elapsed = time.perf_counter() - t
        self.timeline.append((t, elapsed, code))
        self.lat[kind].append(elapsed)
        if code[0] == "2":
            self.lat_ok[kind].append(elapsed)
        elif code.startswith("429"):
            self.lat_429[kind].append(elapsed)
        self.codes[kind][code] += 1


async def bounded(traffic: Traffic, base: str, total: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        async def task():
            async with sem:
                await traffic.one(c)

        t = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(total)))
        return time.perf_counter() - t


async def soak(traffic: Traffic, base: str, pid: int, seconds: float, rps: float, max_outstanding: int) -> dict:
    """Fixed arrival rate for `seconds` (requests beyond max_outstanding are counted as shed client-side)."""
    rss: list[tuple[float, float]] = []
    shed = 0
    outstanding: set[asyncio.Task] = set()
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        t0 = time.perf_counter()
        n = 0
        next_rss = t0
        while (now := time.perf_counter()) - t0 < seconds:
            if now >= next_rss:
                rss.append((now - t0, rss_mb(pid)))
                next_rss += 1.0
            if n < (now - t0) * rps:
                n += 1
                if len(outstanding) >= max_outstanding:
                    shed += 1
                else:
                    task = asyncio.create_task(traffic.one(c))
                    outstanding.add(task)
                    task.add_done_callback(outstanding.discard)
            await asyncio.sleep(min(0.005, 1 / rps))
        await asyncio.gather(*outstanding)
        rss.append((time.perf_counter() - t0, rss_mb(pid)))
    ok = sorted((t, lat) for t, lat, code in traffic.timeline if code[0] == "2")
    growth = {}
    if len(ok) >= 6:  # admitted latency in the first vs last third of the soak: flat = bounded, rising = piling up
        k = len(ok) // 3
        growth = {"ok_p50_first_third_ms": round(float(np.median([x for _, x in ok[:k]])) * 1000, 1),
                  "ok_p50_last_third_ms": round(float(np.median([x for _, x in ok[-k:]])) * 1000, 1)}
    third = max(1, len(rss) // 3)
    first = float(np.median([m for _, m in rss[:third]]))
    last = float(np.median([m for _, m in rss[-third:]]))
    return {"seconds": seconds, "rps": rps, "sent": n - shed, "shed_client_side": shed,
            "rss_first_third_mb": round(first, 1), "rss_last_third_mb": round(last, 1),
            "rss_max_mb": round(max(m for _, m in rss), 1), "rss_drift_mb": round(last - first, 1), **growth}


def summarize(traffic: Traffic, wall: float | None = None) -> dict:
    out = {}
    for kind, lat in sorted(traffic.lat.items()):
        ms = np.asarray(lat) * 1000
        out[kind] = {"n": len(lat), "p50_ms": round(float(np.percentile(ms, 50)), 1),
                     "p95_ms": round(float(np.percentile(ms, 95)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
                     "codes": dict(sorted(traffic.codes[kind].items()))}
        for name, series in (("ok", traffic.lat_ok[kind]), ("429", traffic.lat_429[kind])):
            if series and len(series) != len(lat):
                v = np.asarray(series) * 1000
                out[kind][f"{name}_p50_ms"] = round(float(np.percentile(v, 50)), 1)
                out[kind][f"{name}_p99_ms"] = round(float(np.percentile(v, 99)), 1)
    if wall:
        out["throughput_rps"] = round(sum(len(v) for v in traffic.lat.values()) / wall, 1)
    return out


def print_table(title: str, summary: dict) -> None:
    print(f"\n== {title}")
    for kind, v in summary.items():
        if isinstance(v, dict):
            print(f"  {kind:8s} n={v['n']:5d}  p50={v['p50_ms']:8.1f}ms  p95={v['p95_ms']:8.1f}ms  "
                  f"p99={v['p99_ms']:8.1f}ms  codes={v['codes']}")
            split = {k: x for k, x in v.items() if k.startswith(("ok_", "429_"))}
            if split:
                print(f"           split by status: {split}")
        else:
            print(f"  {kind}: {v}")


async def main_async(a) -> dict:
    clips = make_clips(6)
    env = {"AESRM_MAX_IN_FLIGHT": str(a.max_in_flight), "AESRM_MAX_BATCH_WAIT_MS": "2"}
    with Stack(env) as stack:
        async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {KEY}"}) as c:
            paths = (await c.get("/openapi.json")).json()["paths"]
            model = (await c.get("/v1/model")).json()
        explain = "/v1/explain/upload" in paths and not a.no_explain
        warm = Traffic(clips, 1.0, a.group_size, False, seed=1)
        await bounded(warm, stack.base, 8, 2)  # warm-up (not reported)
        rss0 = rss_mb(stack.server.pid)
        load = Traffic(clips, a.miss_ratio, a.group_size, explain, seed=2)
        wall = await bounded(load, stack.base, a.requests, a.concurrency)
        report = {"stack": {"backend": model.get("backend"), "model": model.get("id"), "trained": model.get("trained"),
                            "max_in_flight": a.max_in_flight, "explain": explain, "cpus": os.cpu_count()},
                  "bounded": {"requests": a.requests, "concurrency": a.concurrency, "wall_s": round(wall, 2),
                              **summarize(load, wall)}}
        print(f"stack: {report['stack']}")
        print_table(f"bounded load: {a.requests} requests at concurrency {a.concurrency} ({wall:.1f}s)",
                    report["bounded"])
        if a.soak_s > 0:
            sk = Traffic(clips, a.miss_ratio, a.group_size, explain, seed=3)
            info = await soak(sk, stack.base, stack.server.pid, a.soak_s, a.soak_rps,
                              a.soak_max_outstanding or a.concurrency * 4)
            report["soak"] = {**info, **summarize(sk)}
            print_table(f"soak: {a.soak_s:.0f}s at {a.soak_rps} req/s", report["soak"])
        report["rss_mb"] = {"after_warmup": round(rss0, 1), "end": round(rss_mb(stack.server.pid), 1)}
        print(f"\nserver RSS: after warm-up {rss0:.0f} MB, end {report['rss_mb']['end']:.0f} MB")
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small bounded run + 20 s soak (< 60 s total)")
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--soak-s", type=float, default=90.0)
    p.add_argument("--soak-rps", type=float, default=10.0)
    p.add_argument("--soak-max-outstanding", type=int, default=0,
                   help="client-side cap on open soak requests (default 4 x concurrency); raise it for overload")
    p.add_argument("--miss-ratio", type=float, default=0.5, help="share of videos with fresh bytes")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-in-flight", type=int, default=32)
    p.add_argument("--no-explain", action="store_true")
    p.add_argument("--json", type=Path, help="write the report here")
    a = p.parse_args()
    if a.quick:
        a.requests, a.soak_s = min(a.requests, 150), min(a.soak_s, 20.0)
    report = asyncio.run(main_async(a))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
