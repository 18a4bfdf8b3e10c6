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


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 256 << 20


def keep_freed_memory_mapped() -> bool:
    """Let glibc reuse freed tensor memory instead of returning it to the kernel after every op.

    A forward allocates a few 1-25 MB activations per layer. glibc serves blocks that size with a fresh
    mmap and unmaps them on free, so every layer pays page faults on new memory: 8 videos (both views)
    cost 177 ms of CPU to encode with glibc's defaults and 128-134 ms with these settings (2 threads,
    2-core box; the well-known reason PyTorch's CPU guides preload jemalloc/tcmalloc). One arena: a
    thread's own arena grows in 64 MB heaps that are unmapped again when they empty, so a forward on the
    inference thread still faulted ~15,000 pages per encode with the thresholds alone, none with one arena
    (in-process group scoring: inference 101-109 -> 84-89 ms). The process keeps up to _TRIM_THRESHOLD of
    freed heap; allocations above _MMAP_THRESHOLD (large batches) are mapped as before. Call it before
    the pools start their threads. glibc's own variables win: a parameter whose MALLOC_*_ variable is set
    (MALLOC_ARENA_MAX=8 on a many-core host where one arena's lock contends, say) is left as set.
    False where the C library is not glibc (nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        wanted = {"MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
                  "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), "MALLOC_ARENA_MAX": (_M_ARENA_MAX, 1)}
        return all([libc.mallopt(*param) for env, param in wanted.items() if env not in os.environ])
    except (OSError, AttributeError):  # musl and others: no mallopt, keep their allocator as it is
        return False


def configure_cpu_threads() -> None:
    """Waiting OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE unless set; it only takes
    effect if torch is not imported yet), numpy's BLAS runs on one thread (aggregation solves tiny
    systems; torch keeps its own OpenMP pool, sized by AESRM_TORCH_THREADS), and freed tensor memory is
    reused (keep_freed_memory_mapped)."""
    keep_freed_memory_mapped()
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
