"""`aesrm-demo`: serve the embedded default model over HTTP and score an example pair against it.

The example pair is two real H.264 clips rendered from a shipped photograph (clean vs noisy); the result
printed is exactly what a client of POST /v1/pair/upload receives.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time

import httpx
import uvicorn

from service.api.app import create_app
from service.config import get_settings
from service.examples import example_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after printing the example result")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{settings.host}:{settings.port}"
    _wait_ready(base)
    clean, noisy = example_pair()
    r = httpx.post(f"{base}/v1/pair/upload", files={"a": ("clean.mp4", clean, "video/mp4"),
                                                    "b": ("noisy.mp4", noisy, "video/mp4")}, timeout=60)
    body = r.json()
    print(f"POST {base}/v1/pair/upload  a=clean.mp4 b=noisy.mp4 -> {r.status_code}")
    print(json.dumps(body, indent=2))
    if r.status_code == 200:
        p = body["preference"]
        print(f"\nP(clean preferred over noisy): overall={p['overall']:.3f} VA={p['VA']:.3f} "
              f"VF={p['VF']:.3f} VP={p['VP']:.3f}  [{body['model']['id']} {body['model']['version']}, "
              f"{body['model']['checkpoint']}, cache={body['cache']}]")
    if args.once:
        server.should_exit = True
        thread.join(10)
        raise SystemExit(0 if r.status_code == 200 else 1)
    print(f"\nServing on {base} (docs: {base}/docs, metrics: {base}/metrics). Ctrl-C to stop.")
    try:
        while thread.is_alive():
            thread.join(1)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(10)


def _wait_ready(base: str, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            r = httpx.get(f"{base}/health/ready", timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"service at {base} did not become ready in {timeout_s}s")


if __name__ == "__main__":
    main()
