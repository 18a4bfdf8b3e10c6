"""load_tests/locustfile.py runs in a Locust-only environment: it imports nothing but the standard library
and Locust (checked on its syntax tree), and it really runs (a throwaway venv with only `pip install locust`,
the README's command, driving a real uvicorn server for a few seconds with an API key)."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_client import serve

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "load_tests" / "locustfile.py"
LOCUST_SPEC = "locust>=2.30,<3"  # the one install command documented in load_tests/README.md
KEY = "locust-test-key"


def test_locustfile_imports_only_stdlib_and_locust():
    tree = ast.parse(LOCUSTFILE.read_text())
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            tops.add(node.module.split(".")[0])
    outside = tops - set(sys.stdlib_module_names) - {"__future__", "locust"}
    assert not outside, f"locustfile needs {outside}: not in a Locust-only environment"
    assert "sys.path" not in LOCUSTFILE.read_text()
    clips = sorted((ROOT / "load_tests" / "clips").glob("*.mp4"))
    assert len(clips) >= 3 and all(c.stat().st_size > 10_000 for c in clips)


@pytest.fixture(scope="module")
def locust_only_venv(tmp_path_factory) -> Path:
    """A venv holding only Locust and its dependencies (cached between runs under ~/.cache/aesrm)."""
    venv = Path.home() / ".cache" / "aesrm" / f"locust-only-py{sys.version_info.major}{sys.version_info.minor}"
    exe = venv / "bin" / "locust"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        out = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", LOCUST_SPEC], capture_output=True,
                             text=True, timeout=600)
        if out.returncode != 0:
            pytest.skip(f"pip could not install {LOCUST_SPEC} (no package index?): {out.stderr[-500:]}")
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import numpy"], capture_output=True)
    assert probe.returncode != 0, "the Locust-only venv must not have numpy (it proves nothing otherwise)"
    return exe


@pytest.fixture(scope="module")
def server(redis_url):
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    with serve(redis_url, AESRM_API_KEY_HASHES=json.dumps([digest])) as base:
        yield base


def test_locustfile_runs_from_a_locust_only_venv(locust_only_venv, server, tmp_path):
    cmd = [str(locust_only_venv), "-f", str(LOCUSTFILE), "--host", server, "--headless", "-u", "2", "-r", "2",
           "-t", "8s", "--csv", str(tmp_path / "run"), "--only-summary"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "AESRM_LOAD_KEY": KEY, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    rows = {r["Name"]: r for r in csv.DictReader((tmp_path / "run_stats.csv").open())}
    assert int(rows["pair"]["Request Count"]) > 0, rows
    assert int(rows["Aggregated"]["Failure Count"]) == 0, (tmp_path / "run_failures.csv").read_text()
