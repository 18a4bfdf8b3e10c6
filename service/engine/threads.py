"""CPU thread pools sized so they do not fight: one process runs PyAV decode threads, the model's intra-op
threads (torch / OpenMP) and numpy on the event loop, on a few shared cores.

Measured on the 2-core box under load: with the model's OpenMP threads spinning while they wait (libgomp's
default), a forward of 8 videos used 715 ms of CPU instead of 160 ms, CPU the decode threads needed; with
numpy's BLAS worker threads, a 1.7 ms Bradley-Terry aggregation took 200+ ms while a forward ran.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)


def configure_cpu_threads() -> None:
    """Waiting OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE unless set; it only takes
    effect if torch is not imported yet), and numpy's BLAS runs on one thread (aggregation solves tiny
    systems; torch keeps its own OpenMP pool, sized by AESRM_TORCH_THREADS)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    elif os.environ.get("OMP_WAIT_POLICY") is None:
        log.debug("torch already imported: OpenMP wait policy left at its default")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # server extra not installed: nothing to pin
        return
    threadpool_limits(1, user_api="blas")


def lower_thread_priority(nice: int) -> None:
    """Raise the calling thread's niceness by `nice` (a ThreadPoolExecutor initializer).

    The event loop runs the short, latency-bound work (HTTP parsing, cache hits, the ~0.3 ms aggregation) and
    the pools run the long, throughput-bound work (decode, forward); with both runnable on 2 cores the
    scheduler otherwise shares the cores evenly and a 0.3 ms aggregation waits 10+ ms for its turn. Linux
    niceness is per thread, and threads started later by this one (torch's OpenMP workers, created at the
    first forward on the inference thread) inherit it. No-op elsewhere, or when nice is 0; raising
    niceness needs no privilege."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # a sandbox without setpriority: same priority, as before
        log.warning("could not lower the priority of thread %s: %s", tid, exc)
