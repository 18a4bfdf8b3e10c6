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


async def test_decode_and_inference_threads_run_below_the_event_loop(clips):
    """worker_nice: the decode pool and the inference thread (and torch's OpenMP workers it starts) run at a
    higher niceness than the event loop, so short request-path work (cache hits, aggregation) is not queued
    behind decode and forward on a small box. Read from the kernel, per thread."""
    import os
    import threading

    if not sys.platform.startswith("linux"):
        import pytest
        pytest.skip("per-thread niceness is Linux-only")
    before = {t.native_id for t in threading.enumerate()}
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    tasks_before = set(os.listdir("/proc/self/task"))
    async with Engine(test_settings(allow_untrained=True, worker_nice=7, torch_threads=2)) as engine:
        await engine.pair(clips["clean"], clips["dark"])
        workers = [t for t in threading.enumerate() if t.native_id not in before
                   and t.name.startswith(("decode", "inference"))]
        assert {t.name.split("_")[0] for t in workers} == {"decode", "inference"}, workers
        for t in workers:
            assert os.getpriority(os.PRIO_PROCESS, t.native_id) == min(19, loop_nice + 7), t.name
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice
        python_tids = {str(t.native_id) for t in threading.enumerate()}
        native = set(os.listdir("/proc/self/task")) - tasks_before - python_tids  # e.g. torch's OpenMP pool
        # torch_threads=2: the inference thread starts one OpenMP worker at its first forward, which inherits
        assert min(19, loop_nice + 7) in {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in native}
