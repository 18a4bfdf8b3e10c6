"""The package's shape: an engine usable without HTTP, a light client, training outside the serving process."""

from __future__ import annotations

import subprocess
import sys

from service.engine import Engine
from tests.conftest import test_settings


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in out.stdout.split()} | set(out.stdout.split())


def test_client_sdk_imports_no_server_dependency():
    mods = _imported_after("import service.client, service.client.sdk, service.client.grpo")
    assert not mods & {"av", "torch", "tritonclient", "redis", "fastapi", "starlette", "orjson", "uvicorn"}


def test_gateway_never_imports_training_or_tools():
    mods = _imported_after("from service.api.app import create_app; create_app()")
    assert not {m for m in mods if m.startswith(("service.training", "service.tools"))}


async def test_engine_scores_a_pair_and_a_group_without_http(clips):
    async with Engine(test_settings(allow_untrained=True)) as engine:
        assert await engine.ready()
        await engine.start()  # idempotent
        pair = await engine.pair(clips["clean"], clips["dark"])
        flipped = await engine.pair(clips["dark"], clips["clean"])
        group = await engine.group([clips["clean"], clips["dark"], clips["noisy"], b"not a video"],
                                   ids=["c", "d", "n", "x"])
    await engine.close()  # idempotent after the context closed it
    assert abs(pair.preference.overall + flipped.preference.overall - 1.0) < 1e-6  # both orders -> antisymmetric
    assert [r.id for r in group.results] == ["c", "d", "n", "x"]
    assert group.results[3].error is not None and group.results[3].error.code == "video_undecodable"
    assert all(r.reward is not None for r in group.results[:3])
