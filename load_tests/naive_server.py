"""Honest baselines for `aesrm-bench`, each a small uvicorn server driven over HTTP exactly like ours.

    python -m load_tests.naive_server naive --port 8101            # a trainer's own reward server
    python -m load_tests.naive_server floor --port 8102 --redis-url redis://127.0.0.1:6379/15
    python -m load_tests.naive_server thin --port 8103 --triton-url 127.0.0.1:8001   # bench_triton's thin gateway

naive: what a GRPO trainer writes in an afternoon, done sensibly. POST /v1/group with the same JSON body as
ours ({"videos": [{"base64": ...}, ...]}); each video is decoded ONCE, every frame (PyAV, default
threading), the same T frames picked uniformly (only those converted, with the service's own resizer), the
same checkpoint and torch thread count, one forward per unordered pair in one order, win-rate rewards, no
cache. The handler is a plain `def`, so uvicorn/FastAPI runs concurrent requests in its thread pool
(PyAV and torch release the GIL): concurrency is not handicapped.

floor: the least a cache hit can cost. POST /v1/pair with our body ({"a": {"base64"}, "b": {"base64"}}):
parse the body (orjson), base64-decode (pybase64, the SIMD decoder ours uses: with the standard library's the
floor would be slower than our gateway on 480p bodies) and hash both videos (BLAKE3-128, our identity), one
Redis GET, return the stored JSON bytes. PUT /store stores the JSON for the next hits of that body.

thin: the HTTP gateway in front of Triton a user would write (load_tests.bench_triton compares ours with
it). POST /v1/pair/upload with our multipart body (parts `a`, `b`: the .npz of prepared views the SDK
uploads): np.load each part, one async gRPC infer of the row (a, b), return the dimension logits. No cache,
hash, checks or metrics.
"""

from __future__ import annotations

import argparse
import base64
import io

import av
import blake3
import numpy as np
import orjson
import pybase64
import uvicorn
from fastapi import FastAPI, File, Request, Response, UploadFile


def naive_sample(data: bytes, views) -> dict[str, np.ndarray]:
    """Every frame decoded, the model's T picked, the model's views made of them (service.ingest.views)."""
    from service.ingest.frames import uniform_indices
    from service.ingest.views import render_frames

    t = views[0].frames
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        if stream.frames:  # count known from the container: keep only the picked frames
            want = set(uniform_indices(stream.frames, t).tolist())
            kept = {i: f for i, f in enumerate(c.decode(stream)) if i in want}
            picked = [kept[i] for i in uniform_indices(stream.frames, t) if i in kept]
        else:
            frames = list(c.decode(stream))
            picked = [frames[i] for i in uniform_indices(len(frames), t)]
    while len(picked) < t:
        picked.append(picked[-1])
    return render_frames(picked, views)


def naive_app(threads: int) -> FastAPI:
    import torch

    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy

    from service.engine.threads import keep_freed_memory_mapped

    # the allocator setting our gateway uses (25 % less CPU per forward): without it the baseline's 28
    # forwards per group would cost more than they need and flatter our ratio
    keep_freed_memory_mapped()
    torch.set_num_threads(threads)
    model, _ = load_proxy(DEFAULT_CHECKPOINT)
    views = model.config.views()
    app = FastAPI()

    @app.post("/v1/group")
    def group(body: dict) -> dict:
        clips = [{k: torch.from_numpy(v)[None] for k, v in naive_sample(base64.b64decode(b["base64"]), views).items()}
                 for b in body["videos"]]
        g = len(clips)
        prob = np.full((g, g), np.nan)
        with torch.inference_mode():
            for i in range(g):
                for j in range(i + 1, g):
                    dim, _ = model.forward_views(clips[i], clips[j])
                    p = float(torch.sigmoid(dim.mean()))
                    prob[i, j], prob[j, i] = p, 1 - p
        rewards = np.nanmean(prob, axis=1)
        return {"results": [{"index": n, "reward": float(r)} for n, r in enumerate(rewards)]}

    return app


def floor_app(redis_url: str) -> FastAPI:
    import redis.asyncio as aioredis

    app = FastAPI()
    client = aioredis.from_url(redis_url)

    def key(body: dict) -> str:
        lo, hi = sorted(blake3.blake3(pybase64.b64decode(body[s]["base64"], validate=True)).hexdigest(length=16)
                        for s in ("a", "b"))
        return f"aesrm:floor:{lo}:{hi}"

    @app.post("/v1/pair")
    async def pair(request: Request) -> Response:
        stored = await client.get(key(orjson.loads(await request.body())))
        if stored is None:
            return Response(b'{"error": "miss"}', status_code=404, media_type="application/json")
        return Response(stored, media_type="application/json")

    @app.put("/store")
    async def store(request: Request) -> Response:
        body = orjson.loads(await request.body())
        await client.set(key(body["request"]), orjson.dumps(body["response"]))
        return Response(status_code=204)

    return app


def thin_app(triton_url: str, model: str) -> FastAPI:
    from tritonclient.grpc import InferInput
    from tritonclient.grpc import aio as grpcclient

    app = FastAPI()
    state: dict = {}

    @app.post("/v1/pair/upload")
    async def pair(a: UploadFile = File(...), b: UploadFile = File(...)) -> Response:
        if "client" not in state:  # created on the server's own event loop
            state["client"] = grpcclient.InferenceServerClient(triton_url)
        inputs = []
        for side, part in (("a", a), ("b", b)):
            loaded = np.load(io.BytesIO(await part.read()))  # .npz of views, or the .npy of whole frames
            views = {"frames": loaded} if isinstance(loaded, np.ndarray) else {n: loaded[n] for n in loaded.files}
            for name, arr in views.items():
                inputs.append(InferInput(f"{name}_{side}", [1, *arr.shape], "UINT8"))
                inputs[-1].set_data_from_numpy(arr[None])
        res = await state["client"].infer(model, inputs)
        return Response(orjson.dumps({"logits": res.as_numpy("dimension_logits")[0].tolist()}),
                        media_type="application/json")

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("app", choices=["naive", "floor", "thin"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (naive)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--triton-url", default="127.0.0.1:8001", help="Triton gRPC endpoint (thin)")
    ap.add_argument("--model", default="aesrm_proxy", help="Triton model (thin)")
    args = ap.parse_args()
    app = {"naive": lambda: naive_app(args.threads), "floor": lambda: floor_app(args.redis_url),
           "thin": lambda: thin_app(args.triton_url, args.model)}[args.app]()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
