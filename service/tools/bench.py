"""`aesrm-bench`: performance figures measured in one run, printed as ratios against a baseline.

1. Sparse sampling: decode cost of a 60 s vs a 5 s clip (ours), and full decode of the 60 s clip.
2. Group G=8 rewards: our pipeline (decode each video once, one batched forward, both orders) vs a naive
   reward server (each pair decoded fully from the files, one pair at a time, one order, no cache).
3. Cache hit: pair request answered from Redis vs a bare Redis GET round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
import numpy as np

from service.api.app import create_app
from service.config import Settings
from service.examples import degrade, encode, pan_frames, photo
from service.ingest.decode import DecodeLimits, decode_sample
from service.ingest.frames import fit_array, uniform_indices

LIMITS = DecodeLimits(max_pixels=3840 * 2160, max_duration_s=600, max_frames=100_000)


def _clip(seconds: int, fps: int = 24, gop: int = 48, seed: int = 0) -> bytes:
    keyframes = pan_frames(photo("path"), seconds * 2, 640, 360)
    frames = np.repeat(keyframes, fps // 2, axis=0)
    return encode(degrade(frames, "noise", 0.05, seed=seed), "h264", fps=fps, gop=gop)


def _full_decode_sample(data: bytes, t: int, h: int, w: int) -> np.ndarray:
    """The naive path: decode every frame, then pick T."""
    import io

    import av

    with av.open(io.BytesIO(data)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    picked = np.stack([frames[i] for i in uniform_indices(len(frames), t)])
    return fit_array(picked, w, h)


def _time(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_sparse(repeat: int) -> dict:
    short, long = _clip(5), _clip(60)
    s5 = statistics.median(_time(lambda: decode_sample(short, 8, 128, 128, LIMITS), repeat))
    s60 = statistics.median(_time(lambda: decode_sample(long, 8, 128, 128, LIMITS), repeat))
    f60 = statistics.median(_time(lambda: _full_decode_sample(long, 8, 128, 128), max(1, repeat // 3)))
    _, stats = decode_sample(long, 8, 128, 128, LIMITS)
    print("\n[1] sparse sampling (H.264 640x360, 24 fps, GOP 2 s, T=8)")
    print(f"  5 s clip: {s5 * 1e3:7.1f} ms   60 s clip: {s60 * 1e3:7.1f} ms   -> 60s/5s cost ratio {s60 / s5:.2f}x "
          f"(clip length ratio 12x; {stats.frames_decoded} of 1440 frames decoded)")
    print(f"  60 s clip full decode: {f60 * 1e3:7.1f} ms   -> sparse is {f60 / s60:.1f}x faster")
    return {"s5": s5, "s60": s60, "full60": f60}


async def bench_group(settings: Settings, groups: int) -> dict:
    import torch

    app = create_app(settings)
    vids = [[_clip(4, seed=1000 * g + k) for k in range(8)] for g in range(groups + 1)]
    async with app.router.lifespan_context(app):
        state = app.state.engine
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            async def one(g):
                files = [("videos", (f"{k}.mp4", v, "video/mp4")) for k, v in enumerate(vids[g])]
                r = await client.post("/v1/group/upload", files=files)
                assert r.status_code == 200, r.text
            await one(groups)  # warm-up
            t = time.perf_counter()
            for g in range(groups):
                await one(g)
            ours = (time.perf_counter() - t) / groups

        model = state.backend._model  # naive baseline runs the same weights, pair by pair
        c = state.backend.contract()

        def naive(g):
            for i in range(8):
                for j in range(i + 1, 8):
                    a = _full_decode_sample(vids[g][i], c.frames, c.height, c.width)
                    b = _full_decode_sample(vids[g][j], c.frames, c.height, c.width)
                    with torch.inference_mode():
                        model(torch.from_numpy(a[None]), torch.from_numpy(b[None]))
        n_naive = max(1, groups // 3)
        t = time.perf_counter()
        for g in range(n_naive):
            naive(g)
        base = (time.perf_counter() - t) / n_naive
    print("\n[2] group G=8 (4 s H.264 clips, 28 pairs)")
    print(f"  ours (both orders, decode once, batched): {ours * 1e3:8.1f} ms/group  {8 / ours:6.1f} videos/s")
    print(f"  naive (full decode per pair, one order):  {base * 1e3:8.1f} ms/group  {8 / base:6.1f} videos/s")
    print(f"  -> throughput ratio {base / ours:.1f}x")
    return {"ours": ours, "naive": base}


async def bench_cache(settings: Settings, repeat: int) -> dict:
    import redis.asyncio as aioredis

    app = create_app(settings)
    a, b = _clip(2, seed=1), _clip(2, seed=2)
    files = {"a": ("a.mp4", a, "video/mp4"), "b": ("b.mp4", b, "video/mp4")}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.post("/v1/pair/upload", files=files)
            hits = []
            for _ in range(repeat):
                t = time.perf_counter()
                r = await client.post("/v1/pair/upload", files=files)
                hits.append(time.perf_counter() - t)
                assert r.json()["cache"] == "hit"
    rc = aioredis.from_url(settings.redis_url)
    await rc.set("aesrm:bench", b"x" * 200)
    rtt = []
    for _ in range(repeat):
        t = time.perf_counter()
        await rc.get("aesrm:bench")
        rtt.append(time.perf_counter() - t)
    await rc.aclose()
    h, r = statistics.median(hits), statistics.median(rtt)
    print("\n[3] cache hit (pair of 2 s clips, multipart upload over ASGI)")
    print(f"  cache-hit request p50 {h * 1e3:.2f} ms   bare Redis GET p50 {r * 1e3:.3f} ms   -> ratio {h / r:.1f}x")
    return {"hit": h, "redis": r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--groups", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(redis_url=args.redis_url, max_batch_wait_ms=1.0)
    print(f"aesrm-bench (torch threads={settings.torch_threads}, decode workers={settings.decode_workers})")
    bench_sparse(args.repeat)
    asyncio.run(bench_group(Settings(redis_url=None, lru_size=1, max_batch_wait_ms=1.0), args.groups))
    asyncio.run(bench_cache(settings, args.repeat * 5))


if __name__ == "__main__":
    main()
