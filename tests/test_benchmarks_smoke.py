"""The benchmark commands behind the README's figures still run end to end, at toy sizes.

They are not run by any other test, and one of them (load_tests/bench_grpo.py's naive path) was broken by a
rename for a whole session before anyone noticed: the README kept a figure no command could reproduce.
Nothing here is timed; each command must finish and print the figures it exists for, with real
subprocesses (redis-server, gateway, tritonserver) as in a real run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: int = 600) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_bench_grpo_runs_all_three_paths():
    out = _run("-m", "load_tests.bench_grpo", "--prompts", "1", "--group", "3", "--frames", "9",
               "--height", "64", "--width", "96")
    for row in ("(a) SDK tensor path", "(b) MP4 per group", "(c) naive server", "Spearman rank correlation"):
        assert row in out, out


def test_aesrm_bench_decode_prints_the_decoded_per_sampled_figure():
    out = _run("-m", "service.tools.bench", "--only", "decode", "--rounds", "1")
    assert out.count("decoded frames per sampled frame") == 2 and "less decode work" in out, out


def test_bench_triton_measures_every_path():
    pytest.importorskip("pytriton")
    out = _run("-m", "load_tests.bench_triton", "--requests", "3", "--concurrency", "2", "--shared-memory")
    for line in ("direct tritonclient gRPC infer", "thin gateway (np.load + 1 infer)", "vs the thin gateway",
                 "overhead ratio (grpc upload/direct)",
                 "overhead ratio (shared_memory upload/direct)", "batching gain (throughput)"):
        assert line in out, out


def test_http_hop_prints_both_modes():
    out = _run("-m", "load_tests.http_hop", "--requests", "3", "--idle-ms", "1")
    assert out.count("back to back: p50") == 2 and out.count("idle 1.0 ms before each: p50") == 2, out
