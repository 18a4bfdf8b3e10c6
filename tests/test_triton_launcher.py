"""The README's Triton command, run as written (ports swapped for free ones): the launcher starts a real
tritonserver and prints the gRPC, HTTP and metrics addresses, and each printed address answers."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytest.importorskip("pytriton", reason="the `triton` extra (nvidia-pytriton) is not installed")
ROOT = Path(__file__).resolve().parents[1]


def readme_launcher_command() -> list[str]:
    """The launcher line of the README's Triton section, continuation lines joined."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if "-m service.tools.triton_launcher" in ln and ln.startswith(".venv/")]
    return shlex.split(line.split("#")[0])


def test_readme_triton_command_prints_ports_that_answer(tmp_path):
    argv = readme_launcher_command()
    assert argv[0] == ".venv/bin/python"
    ports = {}
    for flag in ("--grpc-port", "--http-port", "--metrics-port"):  # the README fixes all three
        i = argv.index(flag)
        ports[flag] = argv[i + 1] = str(free_port())
    proc = subprocess.Popen([sys.executable, *argv[1:], "--log", str(tmp_path / "triton.log")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            if line.startswith("tritonserver ready:"):
                break
        assert line.startswith("tritonserver ready:"), line + (tmp_path / "triton.log").read_text()[-3000:]
        printed = dict(re.findall(r"(\w+)=(\S+)", line))
        assert printed["grpc"] == f"127.0.0.1:{ports['--grpc-port']}"
        assert printed["http"] == f"http://127.0.0.1:{ports['--http-port']}"
        assert printed["metrics"] == f"http://127.0.0.1:{ports['--metrics-port']}/metrics"
        with urllib.request.urlopen(printed["http"] + "/v2/models/aesrm_proxy/ready", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(printed["metrics"], timeout=5) as r:
            assert 'nv_inference_request_success{model="aesrm_proxy"' in r.read().decode()
        from tritonclient.grpc import InferenceServerClient

        assert InferenceServerClient(printed["grpc"]).is_model_ready("aesrm_proxy")
    finally:
        proc.send_signal(signal.SIGTERM)  # the launcher stops tritonserver on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0
