"""The engine's pipeline without a server: a small fake backend behind the real micro-batcher, real PyAV
decode of real encoded clips, the in-process cache. Fast, and about what the pipeline promises: each content
decoded once, a cache hit costs no decode and no forward, errors labelled where they arise."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service import errors
from service.cache import LRUCache
from service.contract import ModelContract
from service.engine.pipeline import ScoringPipeline
from service.engine.responses import dimension_scores
from service.ingest.sources import from_bytes
from service.metrics import Metrics
from tests.conftest import metric_value, test_settings
from tests.fakes import FakeBackend


@pytest.fixture
async def pipeline():
    s = test_settings()
    metrics = Metrics()
    backend = FakeBackend(s, metrics)
    await backend.start()
    p = ScoringPipeline(s, backend, LRUCache(100, 3600, metrics), metrics)
    yield p, backend, metrics
    p.close()
    await backend.close()


def _load(data: bytes):
    return from_bytes(data, 1 << 30)


async def test_duplicate_contents_are_decoded_once_and_a_cache_hit_skips_decode_and_forward(pipeline, clips):
    p, backend, metrics = pipeline
    inputs = [_load(clips["clean"]), _load(clips["dark"]), _load(clips["clean"])]  # 0 and 2 are the same bytes
    out = await p.run(inputs, [(0, 1), (2, 1), (0, 2)], both_orders=True)
    assert out.misses == 3 and out.hits == 0 and not out.item_errors
    assert backend.forwards == 1
    decodes = metric_value(metrics.registry_text(), "aesrm_stage_duration_seconds_count", stage="decode")
    assert decodes == 2  # two distinct contents
    np.testing.assert_allclose(out.pairs[(0, 1)].ab, out.pairs[(2, 1)].ab)
    np.testing.assert_allclose(out.pairs[(0, 1)].ab, -out.pairs[(0, 1)].ba, atol=1e-6)

    again = await p.run([_load(clips["dark"]), _load(clips["clean"])], [(0, 1)], both_orders=True)
    assert again.hits == 1 and again.misses == 0 and backend.forwards == 1  # no new forward
    assert metric_value(metrics.registry_text(), "aesrm_stage_duration_seconds_count", stage="decode") == decodes
    np.testing.assert_allclose(again.pairs[(0, 1)].ab, out.pairs[(0, 1)].ba)  # reversed order from the cache


async def test_decode_errors_come_back_labelled_by_the_caller_for_each_input(pipeline, clips):
    p, _, _ = pipeline
    bad = b"this is not a video at all" * 10
    inputs = [_load(clips["clean"]), _load(bad), _load(bad)]
    out = await p.run(inputs, [(0, 1), (0, 2)], both_orders=False, labels=["ref", "x", "y"])
    assert set(out.item_errors) == {1, 2} and not out.pairs
    assert [out.item_errors[i].item for i in (1, 2)] == ["x", "y"]  # each its own label, no relabelling after
    assert out.item_errors[1] is not out.item_errors[2]
    assert all(e.code == "video_undecodable" for e in out.item_errors.values())


async def test_a_backend_job_whose_caller_left_is_dropped_before_inference_and_counted(clips):
    s = test_settings(max_batch_videos=2)
    metrics = Metrics()
    backend = FakeBackend(s, metrics, work_ms=300)  # one forward of 2 videos holds the inference thread
    await backend.start()
    try:
        videos = np.zeros((2, 8, 64, 64, 3), np.uint8)
        rows = np.array([[0, 1]])
        first = asyncio.ensure_future(backend.score({"frames": videos}, rows))
        for _ in range(1000):  # wait (by events, not time) until the first forward has started
            if backend.forwards:
                break
            await asyncio.sleep(0.001)
        second = asyncio.ensure_future(backend.score({"frames": videos + 1}, rows))
        await asyncio.sleep(0)
        second.cancel()  # caller gone (timeout / client disconnect) while queued
        await first
        third = await backend.score({"frames": videos + 2}, rows)  # the loop has moved past the cancelled job
        assert third.dimension.shape == (1, 3)
        assert backend.forwards == 2  # first and third; the cancelled one never reached the model
        assert metric_value(metrics.registry_text(), "aesrm_requests_dropped_total",
                            reason="cancelled_before_inference") == 1
    finally:
        await backend.close()


def test_dimension_scores_are_named_by_the_contract_not_by_position():
    c = ModelContract(model_id="m", model_version="1", frames=8, height=64, width=64, dimensions=("VP", "VA", "VF", "motion"))
    d = dimension_scores(c, [0.1, 0.2, 0.3, 0.4], 0.5)
    assert (d.VA, d.VF, d.VP, d.overall) == (0.2, 0.3, 0.1, 0.5)
    assert d.model_dump()["motion"] == 0.4  # an extra dimension of the model travels with the response
    with pytest.raises(errors.BackendError):
        dimension_scores(ModelContract(model_id="m", model_version="1", frames=8, height=64, width=64,
                                       dimensions=("VA", "VF")), [0.1, 0.2], 0.3)


async def test_decode_cost_metric_counts_decoded_frames_per_sampled_frame_of_each_video(pipeline, clips):
    p, _, metrics = pipeline
    await p.run([_load(clips["clean"]), _load(clips["dark"])], [(0, 1)], both_orders=False)
    text = metrics.registry_text()
    assert metric_value(text, "aesrm_decode_frames_per_sample_count") == 2  # one observation per video
    per_sample = metric_value(text, "aesrm_decode_frames_per_sample_sum") / 2
    assert 1.0 <= per_sample < 48 / 8  # at least the sampled frame itself, and fewer than a full decode


def _encode_page_faults(setting: bool, env: dict | None = None) -> tuple[float, int]:
    """(minor page faults per encode, malloc arenas in use) for 4 encodes of 8 random videos (both views) by
    the shipped model on a thread of its own, in a new process (the allocator setting is process-wide and
    cannot be undone). The arenas are counted from glibc's malloc_info (one <heap nr=...> per arena)."""
    import os
    import subprocess
    import sys

    code = (
        "import resource, sys, numpy as np, torch\n"
        "from service.engine.threads import keep_freed_memory_mapped\n"
        f"assert keep_freed_memory_mapped() if {setting} else True\n"
        "from service.model.checkpoint import load_proxy\n"
        "m, _ = load_proxy(); torch.set_num_threads(1)\n"
        "r = np.random.default_rng(0)\n"
        "v = {k: torch.from_numpy(r.integers(0, 255, (8, 8, 128, 128, 3), dtype=np.uint8)) for k in ('frames', 'fragments')}\n"
        "def run():\n"  # on a thread of its own, as the gateway's inference thread
        "    global faults\n"
        "    with torch.inference_mode():\n"
        "        for _ in range(2): m.encode_views(v)\n"
        "        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "        for _ in range(4): m.encode_views(v)\n"
        "    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 4\n"
        "import threading; t = threading.Thread(target=run); t.start(); t.join()\n"
        "import ctypes, tempfile; libc = ctypes.CDLL('libc.so.6'); libc.fopen.restype = ctypes.c_void_p\n"
        "path = tempfile.mktemp(); f = libc.fopen(path.encode(), b'w')\n"
        "libc.malloc_info(0, ctypes.c_void_p(f)); libc.fclose(ctypes.c_void_p(f))\n"
        "print(faults, open(path).read().count('<heap nr='))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout.split()
    return float(out[0]), int(out[1])


def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again():
    # a forward allocates and frees multi-MB activations layer after layer; with glibc's defaults torch's
    # pattern gets fresh mappings whose pages fault in again on every encode (~25,000 faults, 100 MB, on a
    # worker thread here); with keep_freed_memory_mapped() the freed memory is reused
    (default, default_arenas), (kept, kept_arenas) = _encode_page_faults(False), _encode_page_faults(True)
    assert default > 5000 and kept < default / 4, (default, kept)  # 0-3,072 with, 25,600 without (here)
    assert kept_arenas == 1  # the inference thread allocates from the main arena
    # glibc's own variable wins: with thread arenas allowed again, the inference thread gets an arena of its
    # own and faults again. (Its faults, 7,938 per encode on one day of this box and 4,102 on another,
    # came within 1,000 of the setting's occasional 0-3,072, so the arena count is what is asserted.)
    arenas, n_arenas = _encode_page_faults(True, {"MALLOC_ARENA_MAX": "8"})
    assert n_arenas > 1 and default_arenas > 1, (n_arenas, default_arenas, arenas, kept)
