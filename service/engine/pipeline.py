"""The request pipeline after fetch: cache -> decode (misses only) -> backend -> per-pair logits.

Order of work is chosen so a cache hit never pays for decoding: inputs are identified by content hash,
the cache is asked first, and only videos that appear in a missing pair are decoded, each exactly once
per request (duplicates by content share one decode) in a bounded thread pool off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import errors
from service.cache import ScoreCache, pair_key
from service.config import Settings
from service.contract import ModelContract, ScorerBackend
from service.engine.threads import configure_cpu_threads, lower_thread_priority
from service.ingest.decode import DecodeLimits, decode_views
from service.ingest.sources import LoadedInput, tensor_views
from service.metrics import Metrics


# Raw .npy tensors up to this size (8 x 128 x 128 x 3 is 393 kB) are sampled on the event loop: at the model's
# size that is one copy, and a thread hop per video costs more (it showed in the Triton overhead).
INLINE_TENSOR_BYTES = 1 << 20


@dataclass
class PairLogitsResult:
    """Logits for one requested (i, j): `ab` asked with i first, `ba` with j first (None if not asked);
    `novelty` [2] = (video i, video j) when the model has the signal (ModelContract.novelty)."""

    ab: np.ndarray
    ba: np.ndarray | None
    crit_ab: np.ndarray | None
    crit_ba: np.ndarray | None
    novelty: np.ndarray | None = None


@dataclass
class Outcome:
    pairs: dict[tuple[int, int], PairLogitsResult]
    item_errors: dict[int, errors.ServiceError]
    hits: int = 0
    misses: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class ScoringPipeline:
    def __init__(self, settings: Settings, backend: ScorerBackend, cache: ScoreCache, metrics: Metrics):
        self.settings, self.backend, self.cache, self.metrics = settings, backend, cache, metrics
        self._pool = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode",
                                        initializer=lower_thread_priority, initargs=(settings.worker_nice,))
        self._limits = DecodeLimits.from_settings(settings)
        self._decodes_waiting = 0
        configure_cpu_threads()  # before the backend imports torch: decode, model and numpy share the cores

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, inputs: list[LoadedInput | None], rows: list[tuple[int, int]], both_orders: bool,
                  labels: list[str | int] | None = None) -> Outcome:
        """Logits for each (i, j) in `rows`; inputs that are None already failed (caller holds their error).

        Inputs that fail to decode come back in `Outcome.item_errors` (input index -> error), each error
        already labelled with `labels[index]` (default: the index), so callers never relabel."""
        labels = labels if labels is not None else list(range(len(inputs)))
        contract = self.backend.contract()
        out = Outcome(pairs={}, item_errors={})
        t0 = time.perf_counter()
        keys = [pair_key(contract, inputs[i].digest, inputs[j].digest) for i, j in rows]
        unique = list(dict.fromkeys(k for k, _ in keys))
        cached = dict(zip(unique, await self.cache.get_many(unique)))
        out.timings["cache_ms"] = _ms(t0)
        self.metrics.stage("cache", time.perf_counter() - t0)

        todo: list[int] = []
        for n, ((i, j), (key, flipped)) in enumerate(zip(rows, keys)):
            result = _from_entry(cached.get(key), flipped, both_orders, contract.novelty)
            if result is None:
                todo.append(n)
            else:
                out.pairs[(i, j)] = result
        out.hits, out.misses = len(rows) - len(todo), len(todo)
        if not todo:
            return out

        t1 = time.perf_counter()
        needed = sorted({v for n in todo for v in rows[n]})
        decoded, out.item_errors = await self._decode_all(inputs, needed, contract, labels)
        out.timings["decode_ms"] = _ms(t1)
        todo = [n for n in todo if rows[n][0] in decoded and rows[n][1] in decoded]
        if not todo:
            return out

        index = {v: k for k, v in enumerate(sorted(decoded))}
        videos = {view.name: np.stack([decoded[v][view.name] for v in sorted(decoded)]) for view in contract.views}
        model_rows = []
        for n in todo:
            i, j = rows[n]
            model_rows.append((index[i], index[j]))
            if both_orders:
                model_rows.append((index[j], index[i]))
        logits = await self._score(videos, np.asarray(model_rows, dtype=np.int64))
        out.timings["queue_ms"] = logits.timing.queue_ms
        out.timings["inference_ms"] = logits.timing.inference_ms

        writes: dict[str, dict] = {}
        step = 2 if both_orders else 1
        for k, n in enumerate(todo):
            i, j = rows[n]
            r = k * step
            crit = logits.criteria
            res = PairLogitsResult(
                ab=logits.dimension[r], ba=logits.dimension[r + 1] if both_orders else None,
                crit_ab=None if crit is None else crit[r],
                crit_ba=None if (crit is None or not both_orders) else crit[r + 1],
                novelty=None if logits.novelty is None else np.asarray(logits.novelty[r], dtype=np.float32))
            out.pairs[(i, j)] = res
            key, flipped = keys[n]
            writes[key] = _merge_entry(cached.get(key), res, flipped)
        await self.cache.set_many(writes)
        return out

    async def _score(self, videos: dict[str, np.ndarray], rows: np.ndarray):
        try:
            return await asyncio.wait_for(self.backend.score(videos, rows), self.settings.inference_timeout_s)
        except asyncio.TimeoutError:
            raise errors.BackendTimeout("scoring backend did not answer in time") from None

    async def _decode_all(self, inputs, needed, contract, labels
                          ) -> tuple[dict[int, dict[str, np.ndarray]], dict[int, errors.ServiceError]]:
        """Each distinct content decoded once; (views by input index, errors by input index)."""
        by_digest: dict[str, list[int]] = {}
        for v in needed:
            by_digest.setdefault(inputs[v].digest, []).append(v)
        digests = list(by_digest)
        results = await asyncio.gather(
            *(self._decode(inputs[by_digest[d][0]], contract, labels[by_digest[d][0]]) for d in digests),
            return_exceptions=True)
        decoded: dict[int, dict[str, np.ndarray]] = {}
        failed: dict[int, errors.ServiceError] = {}
        for d, res in zip(digests, results):
            if isinstance(res, BaseException) and not isinstance(res, errors.ServiceError):
                raise res
            for v in by_digest[d]:
                if isinstance(res, errors.ServiceError):
                    # duplicates of a failed content share its error, under their own label
                    failed[v] = res if labels[v] == res.item else _relabelled(res, labels[v])
                else:
                    decoded[v] = res
        return decoded, failed

    async def _decode(self, loaded: LoadedInput, contract: ModelContract, item: str | int
                      ) -> dict[str, np.ndarray]:
        if self._decodes_waiting >= self.settings.decode_queue_size:
            raise errors.Overloaded("decode queue is full", retry_after_s=1.0)
        self._decodes_waiting += 1
        t = time.perf_counter()
        try:
            if loaded.is_tensor and len(loaded.data) <= INLINE_TENSOR_BYTES:
                return self._decode_sync(loaded, contract, item)  # a copy of T frames: cheaper than a hop
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, self._decode_sync, loaded, contract, item)
        finally:
            self._decodes_waiting -= 1
            self.metrics.stage("decode", time.perf_counter() - t)

    def _decode_sync(self, loaded: LoadedInput, contract: ModelContract, item: str | int
                     ) -> dict[str, np.ndarray]:
        """{view name: [T, H, W, 3]} for every view the model declares (service.ingest.views)."""
        s = self.settings
        if loaded.is_tensor:
            return tensor_views(loaded.data, contract.views, s.max_pixels, s.max_frames, item=item)
        views, stats = decode_views(loaded.data, contract.views, self._limits, item=item)
        self.metrics.decode_frames_per_sample.observe(stats.frames_decoded / contract.frames)
        return views


def _relabelled(err: errors.ServiceError, item: str | int) -> errors.ServiceError:
    """The same error for another input with the same content (a new instance: errors are not shared)."""
    return type(err)(err.message, item=item, retry_after_s=err.retry_after_s)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _from_entry(entry: dict | None, flipped: bool, both_orders: bool, novelty: bool = False
                ) -> PairLogitsResult | None:
    """Answer (i, j) from a canonical entry. `flipped`: i is the canonical 'hi' side. `novelty`: the model
    has the signal, so an entry without it (written before it existed) is a miss, never an answer without
    it: a cache hit and a miss return the same fields."""
    if not entry or (novelty and entry.get("nov") is None):
        return None
    fwd, rev = entry.get("fwd"), entry.get("rev")  # fwd = lo first, rev = hi first
    cf, cr = entry.get("cfwd"), entry.get("crev")
    ab, ba, cab, cba = (rev, fwd, cr, cf) if flipped else (fwd, rev, cf, cr)
    arr = lambda x: None if x is None else np.asarray(x, dtype=np.float32)  # noqa: E731
    nov = arr(entry.get("nov")) if novelty else None  # [lo, hi]: per video, the same for both orders
    nov = nov[::-1].copy() if (nov is not None and flipped) else nov
    if both_orders:
        if ab is None or ba is None:
            return None
        return PairLogitsResult(arr(ab), arr(ba), arr(cab), arr(cba), nov)
    if ab is not None:
        return PairLogitsResult(arr(ab), None, arr(cab), None, nov)
    if ba is not None:  # only the other order is cached: flip it
        return PairLogitsResult(-arr(ba), None, None if cba is None else -arr(cba), None, nov)
    return None


def _merge_entry(entry: dict | None, res: PairLogitsResult, flipped: bool) -> dict:
    new = dict(entry or {})
    lst = lambda x: None if x is None else [float(v) for v in x]  # noqa: E731
    first, second = ("rev", "fwd") if flipped else ("fwd", "rev")
    new[first], new["c" + first] = lst(res.ab), lst(res.crit_ab)
    if res.ba is not None:
        new[second], new["c" + second] = lst(res.ba), lst(res.crit_ba)
    if res.novelty is not None:  # stored canonically: [novelty of lo, novelty of hi]
        new["nov"] = lst(res.novelty[::-1] if flipped else res.novelty)
    return {k: v for k, v in new.items() if v is not None}
