"""Micro-batching for in-process inference: concurrent requests share one forward pass.

A request is (videos {view: [V,T,H,W,3]}, pairs [P,2]). The batcher takes the first waiting request, waits at most
`max_wait_ms` for more until `max_videos` is reached, concatenates them (offsetting pair indices), runs one
forward on a dedicated inference thread and hands each request its slice. The queue is bounded: when it is
full the request is refused at once (429) instead of growing latency without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import errors
from service.contract import BackendTiming, PairLogits
from service.engine.threads import lower_thread_priority
from service.lifecycle import stop_tasks
from service.metrics import Metrics

log = logging.getLogger(__name__)

Videos = Mapping[str, np.ndarray]  # view name -> uint8 [V, T, H, W, 3] (ScorerBackend.score)
RunBatch = Callable[[Videos, np.ndarray], PairLogits]


@dataclass
class _Job:
    videos: Videos
    pairs: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def count(self) -> int:
        return len(next(iter(self.videos.values())))


class MicroBatcher:
    def __init__(self, run: RunBatch, *, max_videos: int, max_wait_ms: float, queue_size: int,
                 metrics: Metrics, thread_nice: int = 0) -> None:
        self._run = run
        self._max_videos, self._max_wait = max_videos, max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference",
                                            initializer=lower_thread_priority, initargs=(thread_nice,))
        self._task: asyncio.Task | None = None
        self._carry: _Job | None = None  # a job that did not fit the last batch; runs next, keeping FIFO

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    async def close(self) -> None:
        await stop_tasks([self._task])
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(errors.BackendUnavailable("backend shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable, *args):
        """fn(*args) on the inference thread (set-up that must run where the forwards will)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, videos: Videos, pairs: np.ndarray) -> PairLogits:
        if not self.running:
            raise errors.BackendUnavailable("inference loop is not running")
        job = _Job(videos, pairs, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise errors.Overloaded("inference queue is full", retry_after_s=1.0) from None
        self._metrics.queue_depth.set(self._queue.qsize())
        return await job.future

    async def _collect(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        total = jobs[0].count
        deadline = time.perf_counter() + self._max_wait
        while total < self._max_videos:
            try:
                job = self._queue.get_nowait() if self._max_wait == 0 else await asyncio.wait_for(
                    self._queue.get(), max(0.0, deadline - time.perf_counter()))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if total + job.count > self._max_videos:
                self._carry = job
                break
            jobs.append(job)
            total += job.count
        self._metrics.queue_depth.set(self._queue.qsize())
        return self._live(jobs)

    def _live(self, jobs: list[_Job]) -> list[_Job]:
        """Jobs whose caller still waits; the others (timed out, client gone) are dropped and counted."""
        live = [j for j in jobs if not j.future.cancelled()]
        if len(live) < len(jobs):
            self._metrics.dropped.labels("cancelled_before_inference").inc(len(jobs) - len(live))
        return live

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._carry is not None:
                jobs, self._carry = self._live([self._carry]), None
            else:
                jobs = await self._collect()
            if not jobs:
                continue
            started = time.perf_counter()
            for job in jobs:
                self._metrics.stage("queue", started - job.enqueued)
            videos, pairs, splits = _concat(jobs)
            n_videos = sum(job.count for job in jobs)
            self._metrics.batch_size.observe(n_videos)
            self._metrics.batch_pairs.observe(len(pairs))
            try:
                out = await loop.run_in_executor(self._executor, self._run, videos, pairs)
            except Exception as exc:  # one bad batch must not kill the loop
                log.exception("inference failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(errors.BackendError(f"inference failed: {type(exc).__name__}"))
                continue
            elapsed = time.perf_counter() - started
            self._metrics.stage("inference", elapsed)
            for job, (lo, hi) in zip(jobs, splits):
                if not job.future.done():
                    crit = None if out.criteria is None else out.criteria[lo:hi]
                    nov = None if out.novelty is None else out.novelty[lo:hi]
                    job.future.set_result(PairLogits(out.dimension[lo:hi], crit, BackendTiming(
                        queue_ms=(started - job.enqueued) * 1000, inference_ms=elapsed * 1000,
                        batch_videos=n_videos), novelty=nov))


def _concat(jobs: list[_Job]) -> tuple[dict[str, np.ndarray], np.ndarray, list[tuple[int, int]]]:
    pairs, splits = [], []
    v_off = p_off = 0
    for job in jobs:
        pairs.append(job.pairs + v_off)
        splits.append((p_off, p_off + len(job.pairs)))
        v_off += job.count
        p_off += len(job.pairs)
    views = {name: np.concatenate([job.videos[name] for job in jobs]) for name in jobs[0].videos}
    return views, np.concatenate(pairs), splits
