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
