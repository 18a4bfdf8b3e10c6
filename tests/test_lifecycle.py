"""Shutdown must not hang when a task's cancellation is lost (Python 3.11 wait_for race, libraries)."""

from __future__ import annotations

import asyncio

from service.lifecycle import stop_tasks


async def _swallows_first_cancel(started: asyncio.Event) -> None:
    """A worker loop like ours after a lost cancel: it goes back to waiting for work."""
    queue: asyncio.Queue = asyncio.Queue()
    started.set()
    try:
        await queue.get()
    except asyncio.CancelledError:
        pass  # lost, as asyncio.wait_for on 3.11 can lose it
    await queue.get()


async def test_stop_tasks_ends_a_task_whose_first_cancel_was_swallowed():
    started = asyncio.Event()
    task = asyncio.create_task(_swallows_first_cancel(started), name="stubborn")
    await started.wait()

    task.cancel()  # what a single cancel() leaves behind
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done, "the task should still be waiting after one lost cancel"

    await asyncio.wait_for(stop_tasks([task, None], grace_s=2.0), 5.0)
    assert task.cancelled()


async def test_stop_tasks_gives_up_after_the_grace_period():
    release = asyncio.Event()

    async def stubborn_until_released() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(stubborn_until_released())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await stop_tasks([task], grace_s=0.3)
    assert 0.3 <= loop.time() - t0 < 2.0 and not task.done()
    release.set()  # the test's own clean-up
    await asyncio.wait_for(task, 2.0)
