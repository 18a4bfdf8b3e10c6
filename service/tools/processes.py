"""Child processes of the benchmarks (redis-server, gateways, baseline servers): always torn down."""

from __future__ import annotations

import subprocess


def stop_all(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """Terminate in reverse start order (servers before the Redis they use); kill what ignores SIGTERM."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
