"""A real gateway process (`python -m service.api.app`, uvicorn) on a free port, configured by AESRM_* env."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.tools.triton_launcher import REPO_ROOT, TritonServer
from tests.conftest import free_port


@contextlib.contextmanager
def synced_triton(repo: Path, *sync_args: str) -> Iterator[TritonServer]:
    """A real tritonserver serving a copy of model_repository/aesrm_proxy in `repo`, its parameters synced by
    model_repository/sync_config.py with `sync_args` (e.g. --checkpoint CKPT, --untrained); stopped on exit."""
    shutil.copytree(REPO_ROOT / "model_repository" / "aesrm_proxy", repo / "aesrm_proxy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, str(REPO_ROOT / "model_repository" / "sync_config.py"), "--repo", str(repo),
                    *sync_args], check=True, cwd=REPO_ROOT)
    server = TritonServer(repo, models=["aesrm_proxy"], log_path=repo / "triton.log")
    try:
        server.start(timeout_s=120)
    except Exception as exc:
        pytest.fail(f"tritonserver did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def gateway(log_dir: Path, **env: str) -> Iterator[tuple[str, int, subprocess.Popen]]:
    """(base URL, port, process) once /health/ready answers 200; the log goes to log_dir/server.log."""
    port = free_port()
    full = dict(os.environ, AESRM_PORT=str(port), AESRM_MAX_BATCH_WAIT_MS="1", **env)
    log_path = log_dir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.api.app"], env=full, stdout=log,
                                stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                        break
                if proc.poll() is not None:
                    pytest.fail(log_path.read_text())
                time.sleep(0.2)
            else:
                pytest.fail("server did not become ready")
            yield base, port, proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
