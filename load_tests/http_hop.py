"""What one HTTP hop of an upload costs on this box, back to back and after the box idled.

    .venv/bin/python -m load_tests.http_hop [--requests 60] [--idle-ms 30]

Starts a bare FastAPI endpoint (same uvicorn as the gateway) that only reads two multipart parts of 786 kB
(the size of one prepared-views upload) and returns, and posts the same body with httpx: once back to back,
once with the client idle `--idle-ms` before each request, as the gateway is while Triton computes. The
difference is the cost of waking idle processes (on a VM, idle vCPUs halt): every HTTP gateway in front of
Triton adds such a hop to a direct gRPC client's round trip (README, Triton benchmark reading).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import httpx
from fastapi import FastAPI, File, UploadFile

from service.tools.triton_launcher import free_port

app = FastAPI()


@app.post("/up")
async def up(a: UploadFile = File(...), b: UploadFile = File(...)) -> dict:
    return {"bytes": len(await a.read()) + len(await b.read())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--idle-ms", type=float, default=30.0)
    args = ap.parse_args(argv)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "load_tests.http_hop:app", "--port", str(port),
                             "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}/up"
    files = {"a": ("a.npz", os.urandom(786_000)), "b": ("b.npz", os.urandom(786_000))}
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(200):
                try:
                    client.post(url, files=files).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            for rnd in range(2):
                for idle in (0.0, args.idle_ms / 1000):
                    lat = []
                    for _ in range(args.requests):
                        time.sleep(idle)
                        t = time.perf_counter()
                        assert client.post(url, files=files).json()["bytes"] == 1_572_000
                        lat.append(time.perf_counter() - t)
                    print(f"round {rnd + 1}, {'idle ' + str(args.idle_ms) + ' ms before each' if idle else 'back to back'}"
                          f": p50 {statistics.median(lat) * 1000:.2f} ms (load {os.getloadavg()[0]:.1f}/"
                          f"{os.cpu_count()} cores)")
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
