"""Shared fixtures: a real Redis server, real encoded videos, and the app served over real HTTP/ASGI."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import av
import httpx
import numpy as np
import pytest
import redis

from service.api.app import create_app
from service.config import Settings
from service.examples import degrade, encode, pan_frames, photo

ASSETS = Path(__file__).parent / "assets"


def asset_source(name: str) -> SimpleNamespace:
    """A real photo of tests/assets as a training source (id, levels: both pyramid levels the photo itself,
    which is already small), decoded with PyAV as the training code's sources are."""
    with av.open(str(ASSETS / f"{name}.jpg")) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    return SimpleNamespace(id=name, levels=[img, img])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real redis-server process on a free port (so tests can kill and restart it)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server not installed (tests/run.sh installs it)")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """REDIS_URL when given (CI/dev box), else a redis-server we start ourselves."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer().start()
    yield server.url
    server.stop()


def fresh_redis_db(url: str, db: int) -> str:
    """The same real Redis server, logical database `db`, emptied: for a module whose assertions need a cold
    cache and job store (other modules score and explain the same clips with the same checkpoint)."""
    fresh = url.rsplit("/", 1)[0] + f"/{db}"
    redis.Redis.from_url(fresh).flushdb()
    return fresh


@pytest.fixture(scope="session")
def clips() -> dict[str, bytes]:
    """Real encoded clips of real photos (PyAV): clean and degraded versions, several codecs."""
    base = pan_frames(photo("bythewater"), 48, 320, 180)
    other = pan_frames(photo("colorfulcups"), 48, 320, 200)
    return {
        "clean": encode(base),
        "noisy": encode(degrade(base, "noise", 0.8)),
        "blurry": encode(degrade(base, "blur", 1.0)),
        "dark": encode(degrade(base, "dark", 0.9)),
        "other": encode(other),
        "vp9": encode(base, "vp9"),
        "av1": encode(other, "av1"),
        "frames_npy": _npy(other[::3]),
    }


def _npy(frames: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, frames, allow_pickle=False)
    return buf.getvalue()


def test_settings(**overrides) -> Settings:
    base = dict(max_batch_wait_ms=1.0, decode_workers=2)
    base.update(overrides)
    return Settings(**base)


test_settings.__test__ = False  # a factory, not a test


def views_for(contract, videos: np.ndarray) -> dict[str, np.ndarray]:
    """ScorerBackend.score input for `videos` [V, T, H, W, 3]: every view of the contract, the whole-frame
    view as given and each other view a shifted copy (different pixels: swapped inputs would show)."""
    return {v.name: videos if k == 0 else np.ascontiguousarray(np.roll(videos, 17 * k, axis=3))
            for k, v in enumerate(contract.views)}


@contextlib.asynccontextmanager
async def running_app(settings: Settings, backend=None) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The app with its lifespan run, and an httpx client speaking ASGI to it."""
    app = create_app(settings, backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            yield client, app


def metric_value(text: str, name: str, **labels) -> float:
    """Sum of a sample's values in Prometheus text output (labels must all match)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
