"""The explanation service: its own bounded queue, N worker tasks, per-job timeout, cancellation.

Isolation from the fast reward routes (the point of this module):
- Explanation jobs wait in their own queue (explain_queue_size; full -> 429) and run on their own
  explain_workers tasks, so an explanation backlog never queues in front of a /v1/pair request.
- Proxy evidence comes through a *second* ScoringPipeline sharing the backend and the score cache (so a
  pair already scored by the fast path is not recomputed, and vice versa) but with its own decode thread
  pool (explain_workers threads), never the fast path's decode pool. Rendering runs on a private
  one-thread executor.
- The embedded backend's micro-batcher and its single inference thread ARE shared: each running job
  submits at most one pair (2 videos) there, so a fast request waits at most one small forward per running
  job (explain_workers, default 1), never the explanation backlog. tests/test_explain_isolation.py
  measures this bound.
Job bytes stay in the accepting replica's memory (queued work is not shared); state, events and results
live in the JobStore so any replica can answer polls, stream SSE and cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import orjson

from service import errors
from service.config import Settings
from service.explain.evidence import TIE_BAND, proxy_explanation
from service.explain.jobs import JobStore, build_store, check_cursor, check_job_id, is_terminal
from service.explain.schemas import ExplainResult
from service.ingest.sources import LoadedInput
from service.lifecycle import stop_tasks
from service.metrics import Metrics
from service.engine.pipeline import ScoringPipeline

log = logging.getLogger(__name__)

Emit = Callable[[str, dict], Awaitable[None]]
CANCEL_POLL_S = 0.25  # how quickly a cancel issued on another replica reaches the running job


@dataclass
class Job:
    job_id: str
    a: LoadedInput
    b: LoadedInput


class Runner(Protocol):
    def identity(self) -> str:
        """Everything that changes the answer (model, version, checkpoint, sampling): part of the fingerprint."""

    async def run(self, job: Job, emit: Emit) -> ExplainResult: ...

    async def close(self) -> None: ...


class ProxyRunner:
    """Verdicts from the proxy model's heads, obtained through the shared-cache scoring pipeline."""

    def __init__(self, settings: Settings, backend, cache, metrics: Metrics) -> None:
        self.settings, self.backend = settings, backend
        own = settings.model_copy(update={"decode_workers": settings.explain_workers})
        self.pipeline = ScoringPipeline(own, backend, cache, metrics)  # own decode pool, shared cache
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="explain-render")

    def identity(self) -> str:
        c = self.backend.contract()
        return f"proxy:{c.model_id}:{c.model_version}:{c.checkpoint}:{c.sampling_key}:tie{TIE_BAND}"

    async def run(self, job: Job, emit: Emit) -> ExplainResult:
        await emit("progress", {"stage": "scoring", "fraction": 0.1})
        out = await self.pipeline.run([job.a, job.b], [(0, 1)], both_orders=True, labels=["a", "b"])
        if out.item_errors:
            raise out.item_errors[min(out.item_errors)]
        res = out.pairs[(0, 1)]
        await emit("progress", {"stage": "evidence", "fraction": 0.7, "cache": "hit" if out.hits else "miss"})
        result = await asyncio.get_running_loop().run_in_executor(
            self._executor, proxy_explanation, self.backend.contract(), self.backend.name, res.ab, res.ba,
            res.crit_ab, res.crit_ba, self.settings.dimension_weights, TIE_BAND, res.novelty)
        for s in result.sections:  # streamed criterion by criterion, like a generative explainer would
            await emit("text", {"criterion": s.criterion, "dimension": s.dimension, "text": s.text + "\n"})
        return result

    async def close(self) -> None:
        self.pipeline.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def build_runner(settings: Settings, backend, cache, metrics: Metrics) -> Runner:
    if settings.explain_backend == "triton":
        from service.explain.cot import CotRunner

        return CotRunner(settings)
    return ProxyRunner(settings, backend, cache, metrics)


class ExplainService:
    def __init__(self, settings: Settings, backend, cache, metrics: Metrics, store: JobStore | None = None,
                 runner: Runner | None = None) -> None:
        self.settings, self.metrics = settings, metrics
        self.store = store or build_store(settings)
        self.runner = runner or build_runner(settings, backend, cache, metrics)
        self._queue: asyncio.Queue[Job] = asyncio.Queue()  # bounded by _waiting below (reserve-then-put)
        self._waiting = 0
        self._workers: list[asyncio.Task] = []
        self._running: dict[str, asyncio.Task] = {}

    # --- lifecycle ---
    def start(self) -> None:
        self._workers = [asyncio.create_task(self._worker(), name=f"explain-worker-{n}")
                         for n in range(self.settings.explain_workers)]

    async def close(self) -> None:
        await stop_tasks(self._workers)
        pending = [j.job_id for j in _drain(self._queue)]
        with contextlib.suppress(Exception):  # best effort: tell pollers instead of leaving "queued" forever
            await asyncio.wait_for(asyncio.gather(*(
                self._finish(jid, "failed", ("queued", "running"), "shutdown", "gateway shutting down")
                for jid in pending)), 2.0)
        await self.runner.close()
        await self.store.close()

    # --- API used by the routes ---
    def fingerprint(self, a: LoadedInput, b: LoadedInput) -> str:
        body = {"v": 1, "runner": self.runner.identity(), "a": a.digest, "b": b.digest,
                "weights": list(self.settings.dimension_weights)}
        return hashlib.sha256(orjson.dumps(body)).hexdigest()

    async def submit(self, a: LoadedInput, b: LoadedInput, meta: dict) -> tuple[dict, bool]:
        """Queue a job (or reuse an identical live one). Raises Overloaded (429) when the queue is full."""
        cap = self.settings.explain_queue_size
        if self._waiting >= cap:
            self.metrics.explain_jobs.labels("rejected").inc()
            raise errors.Overloaded(f"explanation queue is full ({cap} waiting)", retry_after_s=self._retry_after())
        self._waiting += 1  # reserve before any await so concurrent submits cannot overshoot
        queued = False
        try:
            rec, created = await self.store.create(self.fingerprint(a, b), meta)
            if not created:
                self.metrics.explain_jobs.labels("reused").inc()
                return rec, False
            await self.store.add_event(rec["job_id"], "status", {"status": "queued"})
            self._queue.put_nowait(Job(rec["job_id"], a, b))
            queued = True
            return rec, True
        finally:
            if not queued:
                self._waiting -= 1
            self.metrics.explain_queue_depth.set(self._waiting)

    async def get(self, job_id: str) -> dict:
        rec = await self.store.get(check_job_id(job_id))
        if rec is None:
            raise await self._not_found(job_id)
        return rec

    async def cancel(self, job_id: str) -> dict:
        check_job_id(job_id)
        before = await self._finish(job_id, "cancelled", ("queued", "running"), "cancelled", "cancelled by client")
        if before is None:
            raise await self._not_found(job_id)
        if before not in ("queued", "running", "cancelled"):
            raise errors.JobNotCancellable(f"job {job_id} already {before}")
        task = self._running.get(job_id)
        if task is not None:  # running here: stop now (other replicas notice within CANCEL_POLL_S)
            task.cancel()
        return await self.get(job_id)

    async def stream(self, job_id: str, start: int = 0, poll_s: float = 0.05,
                     keepalive_s: float = 15.0) -> AsyncIterator[tuple[int, dict | None]]:
        """(index, event) from `start` until the 'end' event; (index, None) is a keep-alive tick.
        Reads the shared store, so any replica can serve any job's stream."""
        check_cursor(start)
        await self.get(job_id)  # 422 / 404 before the stream starts
        idx, quiet, last_check, terminal_seen = start, 0.0, time.monotonic(), 0
        limit = time.monotonic() + self.settings.explain_timeout_s + self.settings.explain_job_ttl_s
        while time.monotonic() < limit:
            events = await self.store.events(job_id, idx)
            for ev in events:
                yield idx, ev
                idx += 1
                if ev["kind"] == "end":
                    return
            if events:
                quiet = 0.0
                continue
            if time.monotonic() - last_check > 1.0:  # job gone, or resumed past its end event
                last_check = time.monotonic()
                rec = await self.store.get(job_id)
                if rec is None:
                    yield idx, {"kind": "end", "data": {"status": "expired"}, "t": time.time()}
                    return
                terminal_seen += is_terminal(rec["status"])
                if terminal_seen >= 2:  # terminal twice, a second apart, and still no new events
                    return
            await asyncio.sleep(poll_s)
            quiet += poll_s
            if quiet >= keepalive_s:
                quiet = 0.0
                yield idx, None

    # --- internals ---
    def _retry_after(self) -> float:
        per_job = max(1.0, min(self.settings.explain_timeout_s, 5.0))
        return max(1.0, self._waiting * per_job / self.settings.explain_workers)

    async def _not_found(self, job_id: str) -> errors.ServiceError:
        if await self.store.was_known(job_id):
            return errors.JobNotFound(f"job {job_id} expired (kept {self.settings.explain_job_ttl_s} s after "
                                      "its last change)")
        return errors.JobNotFound(f"unknown job id {job_id}")

    async def _finish(self, job_id: str, status: str, allowed: tuple[str, ...], code: str | None = None,
                      message: str = "", result: ExplainResult | None = None) -> str | None:
        """Move to a terminal state; only the winner of the compare-and-set appends the terminal events."""
        fields: dict = {"finished_at": time.time()}
        if code is not None:
            fields["error"] = {"code": code, "message": message}
        if result is not None:
            fields["result"] = result.model_dump(mode="json")
        before = await self.store.transition(job_id, status, allowed, **fields)
        if before is not None and before in allowed:
            outcome = {"failed": code if code in ("timeout", "shutdown") else "failed"}.get(status, status)
            self.metrics.explain_jobs.labels(outcome).inc()
            if result is not None:
                await self.store.add_event(job_id, "result", fields["result"])
            elif code is not None:
                await self.store.add_event(job_id, "error", fields["error"])
            await self.store.add_event(job_id, "end", {"status": status})
        return before

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            self._waiting -= 1
            self.metrics.explain_queue_depth.set(self._waiting)
            try:
                await self._run_one(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a store outage must not kill the worker
                log.exception("explanation job %s crashed", job.job_id)

    async def _run_one(self, job: Job) -> None:
        before = await self.store.transition(job.job_id, "running", ("queued",), started_at=time.time())
        if before != "queued":  # cancelled while queued, or expired (tiny TTL)
            if before is None:
                self.metrics.explain_jobs.labels("expired").inc()
            return
        await self.store.add_event(job.job_id, "status", {"status": "running"})

        async def emit(kind: str, data: dict) -> None:
            await self.store.add_event(job.job_id, kind, data)

        started = time.perf_counter()
        inner = asyncio.create_task(self.runner.run(job, emit))
        self._running[job.job_id] = inner
        watcher = asyncio.create_task(self._watch_cancel(job.job_id, inner))
        try:
            # asyncio.wait, not wait_for: the deadline decides the outcome even if a cancellation gets
            # swallowed somewhere inside the run (wait_for would then return the late result)
            done, _ = await asyncio.wait({inner}, timeout=self.settings.explain_timeout_s)
            if not done:
                inner.cancel()
                await self._finish(job.job_id, "failed", ("running",), "timeout",
                                   f"explanation took longer than explain_timeout_s={self.settings.explain_timeout_s}")
                return
            result = inner.result()
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # the worker itself is being shut down
                inner.cancel()
                raise
            await self._finish(job.job_id, "cancelled", ("running",), "cancelled", "cancelled")
        except errors.ServiceError as exc:
            await self._finish(job.job_id, "failed", ("running",), exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - recorded on the job, never raised into the worker
            log.exception("explanation job %s failed", job.job_id)
            await self._finish(job.job_id, "failed", ("running",), "internal", type(exc).__name__)
        else:
            await self._finish(job.job_id, "succeeded", ("running",), result=result)
        finally:
            watcher.cancel()
            self._running.pop(job.job_id, None)
            self.metrics.explain_duration.observe(time.perf_counter() - started)

    async def _watch_cancel(self, job_id: str, inner: asyncio.Task) -> None:
        """Notice a cancel (or expiry) recorded by another replica and stop the local run."""
        with contextlib.suppress(Exception):
            while not inner.done():
                await asyncio.sleep(CANCEL_POLL_S)
                rec = await self.store.get(job_id)
                if rec is None or is_terminal(rec["status"]):
                    inner.cancel()
                    return


def _drain(queue: asyncio.Queue) -> list[Job]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out
