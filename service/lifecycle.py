"""Stopping background tasks for real.

One `task.cancel()` is not a guarantee on Python 3.11: `asyncio.wait_for` returns the inner result instead of
raising when the cancel and that result arrive in the same loop iteration (fixed in 3.12), and a library can
swallow a CancelledError the same way. A worker whose stop request was lost goes back to `queue.get()` and a
graceful shutdown waits forever. So cancel again until the tasks have ended, within a bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task | None], grace_s: float = 5.0, poll_s: float = 0.1) -> None:
    """Cancel `tasks` and return once all have finished (or `grace_s` has passed: then log and give up)."""
    pending = {t for t in tasks if t is not None and not t.done()}
    deadline = asyncio.get_running_loop().time() + grace_s
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=poll_s)
        if pending and asyncio.get_running_loop().time() > deadline:
            log.warning("tasks still running %.1fs after cancel: %s", grace_s, [t.get_name() for t in pending])
            return
