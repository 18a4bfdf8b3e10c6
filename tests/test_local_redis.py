"""deploy/local/run.sh's Redis choice (deploy/local/redis.sh), with real redis-server processes: the local
run uses a dedicated redis-server of its own (never whatever answers on 6379) and refuses a database that
holds keys which are not AesRM's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "local" / "redis.sh"

if not shutil.which("redis-cli"):
    pytest.fail("redis-cli not installed (Debian redis-tools, pulled in by redis-server)", pytrace=False)


def ensure(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "AESRM_REDIS_URL"}
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "{SCRIPT}"; ensure_local_redis; '
                           'echo "URL=$AESRM_REDIS_URL"'], capture_output=True, text=True, timeout=30,
                          env={**base, "AESRM_LOCAL_REDIS_DIR": str(tmp_path), **env})


def test_run_sh_uses_the_helper():
    text = (ROOT / "deploy" / "local" / "run.sh").read_text()
    assert 'source "$(dirname "$0")/redis.sh"' in text and "ensure_local_redis" in text
    assert "6379" not in text


def test_starts_a_dedicated_server_then_reuses_it(tmp_path):
    port = free_port()
    first = ensure(tmp_path, AESRM_LOCAL_REDIS_PORT=str(port))
    pidfile = tmp_path / f"redis-{port}.pid"
    try:
        assert first.returncode == 0, first.stderr
        assert f"URL=redis://127.0.0.1:{port}/0" in first.stdout
        assert "started a dedicated redis-server" in first.stderr
        client = redis.Redis(port=port)
        assert client.ping()
        client.set("aesrm:pair:v1:test", b"x")  # our own keys don't make it refuse
        again = ensure(tmp_path, AESRM_LOCAL_REDIS_PORT=str(port))
        assert again.returncode == 0 and f"URL=redis://127.0.0.1:{port}/0" in again.stdout, again.stderr
        assert "started" not in again.stderr  # reused, not a second server
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def test_refuses_a_redis_holding_foreign_keys(tmp_path):
    other = RedisServer().start()  # someone else's Redis, e.g. the one on 6379
    try:
        redis.Redis(port=other.port).set("session:42", "not ours")
        r = ensure(tmp_path, AESRM_LOCAL_REDIS_PORT=str(other.port))
        assert r.returncode != 0 and "URL=" not in r.stdout
        assert "holds keys that are not AesRM's" in r.stderr and "session:42" in r.stderr
        r = ensure(tmp_path, AESRM_REDIS_URL=f"redis://127.0.0.1:{other.port}/0")  # also when set by hand
        assert r.returncode != 0 and "session:42" in r.stderr
        r = ensure(tmp_path, AESRM_REDIS_URL=f"redis://127.0.0.1:{other.port}/3")  # an empty db of it is fine
        assert r.returncode == 0 and f"URL=redis://127.0.0.1:{other.port}/3" in r.stdout, r.stderr
        assert redis.Redis(port=other.port).get("session:42") == b"not ours"
    finally:
        other.stop()


def test_explicit_url_that_does_not_answer_is_an_error(tmp_path):
    r = ensure(tmp_path, AESRM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert r.returncode != 0 and "does not answer" in r.stderr
    assert not list(tmp_path.glob("redis-*.pid"))  # nothing started behind the user's back
