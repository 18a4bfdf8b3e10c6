"""Triton backend: the gateway scores through a Triton Inference Server over gRPC (asyncio, binary tensors).

Why it looks like this:
- The contract (views, T, H, W, criteria, model id/version, checkpoint) is *discovered* from Triton's model
  config in ``start()``: each input pair ``<view>_a`` / ``<view>_b`` is a view, its kind named by the
  ``views`` parameter (service.ingest.views; none = whole frames only). Nothing about the model is
  duplicated in gateway code, so a redeployed model cannot silently disagree with what the gateway samples.
  When the model comes back after an outage, ``ready()`` discovers it again (a redeployed version changes
  the contract and therefore the cache keys).
- Pairs are sent as <view>_a/<view>_b chunks of at most max_batch_size, concurrently, so Triton's dynamic
  batcher (not the gateway) forms the GPU batches across all requests.
- Retries only on transient gRPC codes (UNAVAILABLE, RESOURCE_EXHAUSTED) with a short backoff; a timed-out
  call is not retried (it would add load exactly when the server is slow). Failures become
  BackendUnavailable (503 + Retry-After) / BackendTimeout (504) / BackendError (502).
- A model whose config declares ``antisymmetric`` (logits(b, a) == -logits(a, b)) is asked each unordered
  pair once, in one order; the reverse order is the negation. Both-order requests cost no extra inference.
- The optional `novelty` output (per-video distance from the training distribution, [2] = side a, side b)
  is requested only when the model config declares it, so models without it (aesrm_base, proxy 1.1.0) work
  unchanged; in the reverse order the two sides simply swap.
- Optional system shared memory when gateway and Triton share a host: inputs/outputs travel through
  /dev/shm regions from a small pool instead of the gRPC payload.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping

import numpy as np

from service import errors
from service.config import Settings
from service.contract import DIMENSIONS, BackendTiming, ModelContract, PairLogits, parse_views
from service.metrics import Metrics

log = logging.getLogger(__name__)

TRANSIENT = {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"}
INPUTS = ("frames_a", "frames_b")  # every model has the whole-frame view; more views add <view>_a / <view>_b
OUTPUTS = ("dimension_logits", "criterion_logits", "novelty")  # the last two optional (AesRM-Base has neither)
MAX_MSG = 2**31 - 1


def contract_from_config(cfg: dict) -> tuple[ModelContract, int]:
    """ModelContract + max_batch_size from a Triton model config (as_json) -- the single source of truth."""
    ins = {i["name"]: i for i in cfg.get("input", [])}
    outs = {o["name"]: o for o in cfg.get("output", [])}
    missing = [n for n in INPUTS if n not in ins] + [n for n in OUTPUTS[:1] if n not in outs]
    if missing:
        raise errors.BackendError(f"Triton model {cfg.get('name')} lacks tensors {missing}")
    shapes = {}
    for name in ins:
        view = name[:-2]
        if not name.endswith("_a") or view + "_b" not in ins:
            continue
        dims = [int(d) for d in ins[name]["dims"]]
        if len(dims) != 4 or dims[3] != 3 or min(dims) <= 0 or [int(d) for d in ins[view + "_b"]["dims"]] != dims:
            raise errors.BackendError(f"{name} dims {dims}: need fixed [T,H,W,3], the same for {view}_b")
        shapes[view] = (dims[0], dims[1], dims[2])
    p = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
    try:  # which view each input pair is (service.ingest.views); a model without `views` takes whole frames
        views = parse_views(p.get("views") or "frames:letterbox", shapes)
    except ValueError as exc:
        raise errors.BackendError(f"Triton model {cfg.get('name')}: {exc}") from None
    unused = sorted(set(ins) - {f"{v.name}_{s}" for v in views for s in "ab"})
    if unused:
        raise errors.BackendError(f"Triton model {cfg.get('name')} has inputs {unused} that no view feeds")
    dims = list(shapes["frames"])
    criteria = tuple(c for c in p.get("criteria", "").split(",") if c)
    n_crit = [int(d) for d in outs["criterion_logits"]["dims"]] if "criterion_logits" in outs else [0]
    if n_crit != [len(criteria)]:
        raise errors.BackendError(f"criterion_logits dims {n_crit} but {len(criteria)} criteria in parameters")
    if "novelty" in outs and [int(d) for d in outs["novelty"]["dims"]] != [2]:
        raise errors.BackendError(f"novelty dims {outs['novelty']['dims']}: need [2] (side a, side b)")
    trained = p.get("trained", "false").lower() == "true"
    sha = p.get("checkpoint_sha256", "")[:12]
    ckpt = os.path.basename(p.get("checkpoint", "")) or p.get("model_id", cfg.get("name", "model"))
    contract = ModelContract(
        model_id=p.get("model_id", cfg.get("name", "")), model_version=p.get("model_version", ""),
        frames=dims[0], height=dims[1], width=dims[2],
        dimensions=tuple(d for d in p.get("dimensions", ",".join(DIMENSIONS)).split(",") if d),
        criteria=criteria, criterion_dimension=tuple(c for c in p.get("criterion_dimension", "").split(",") if c),
        checkpoint=f"{ckpt}@{sha}" if (trained and sha) else ("untrained-random-init" if not trained else ckpt),
        trained=trained, antisymmetric=p.get("antisymmetric", "false").lower() == "true",
        novelty="novelty" in outs, calibrated=p.get("calibrated", "false").lower() == "true", views=views)
    return contract, int(cfg.get("max_batch_size", 0))


class _ShmPool:
    """Fixed-size system shared-memory regions (one per in-flight chunk), registered with Triton.

    Registrations vanish when Triton restarts, so ``invalidate()`` marks them for re-registration.
    """

    def __init__(self, rows: int, input_bytes: list[int], n_dims: int, n_crit: int, size: int) -> None:
        """input_bytes: one video's bytes for each input tensor, in the order they are sent."""
        import tritonclient.utils.shared_memory as shm

        self._shm, self.rows = shm, rows
        self.in_offsets = [rows * sum(input_bytes[:k]) for k in range(len(input_bytes))]
        self.in_bytes, self.dim_bytes = rows * sum(input_bytes), rows * n_dims * 4
        self.crit_bytes, self.nov_bytes = rows * max(n_crit, 1) * 4, rows * 2 * 4
        self.byte_size = self.in_bytes + self.dim_bytes + self.crit_bytes + self.nov_bytes
        self._free: asyncio.Queue = asyncio.Queue()
        self.regions: list[tuple[str, object]] = []
        for _ in range(size):
            name = f"aesrm_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            handle = shm.create_shared_memory_region(name, "/" + name, self.byte_size)
            self.regions.append((name, handle))
            self._free.put_nowait((name, handle))
        self.registered = False

    async def register(self, client) -> None:
        for name, _ in self.regions:
            await client.unregister_system_shared_memory(name)
            await client.register_system_shared_memory(name, "/" + name, self.byte_size)
        self.registered = True

    def invalidate(self) -> None:
        self.registered = False

    async def acquire(self):
        return await self._free.get()

    def release(self, region) -> None:
        self._free.put_nowait(region)

    def destroy(self) -> None:
        for _, handle in self.regions:
            try:
                self._shm.destroy_shared_memory_region(handle)
            except Exception:  # noqa: BLE001
                pass
        self.regions = []


class TritonBackend:
    name = "triton"
    remote = True

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self._s, self._metrics = settings, metrics
        self._client = None
        self._contract: ModelContract | None = None
        self._max_batch = 1
        self._shm: _ShmPool | None = None
        self._shm_lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(settings.triton_max_concurrency)  # calls in flight to Triton
        self._waiting = 0  # calls waiting for a slot: bounded by queue_size like the micro-batcher's queue
        self._was_ready = False

    # ---- lifecycle -------------------------------------------------------------------------------------
    def _new_client(self):
        from tritonclient.grpc import aio as grpcclient

        # Reconnect quickly after a Triton restart (gRPC's default backoff grows to 120 s).
        args = [("grpc.max_send_message_length", MAX_MSG), ("grpc.max_receive_message_length", MAX_MSG),
                ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000), ("grpc.keepalive_time_ms", 30000),
                ("grpc.keepalive_timeout_ms", 10000)]
        return grpcclient.InferenceServerClient(self._s.triton_url, channel_args=args)

    async def start(self) -> None:
        """Connect and discover the contract; raises BackendUnavailable until the model is ready."""
        if self._client is None:
            self._client = self._new_client()
        t = self._s.triton_timeout_s
        try:
            if not await self._client.is_model_ready(self._s.triton_model, self._s.triton_model_version,
                                                     client_timeout=t):
                raise errors.BackendUnavailable(f"Triton model {self._s.triton_model} not ready")
            resp = await self._client.get_model_config(self._s.triton_model, self._s.triton_model_version,
                                                       as_json=True, client_timeout=t)
        except errors.ServiceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise errors.BackendUnavailable(f"Triton at {self._s.triton_url}: {_msg(exc)}", retry_after_s=2.0) from None
        contract, max_batch = contract_from_config(resp["config"])
        if self._contract is not None and contract != self._contract:
            log.warning("Triton model contract changed: %s -> %s", self._contract, contract)
        self._contract, self._max_batch = contract, max(1, max_batch)
        self._was_ready = True
        if self._s.triton_shared_memory and self._shm is None:
            c = self._contract
            self._shm = _ShmPool(self._max_batch, [v.frames * v.height * v.width * 3 for v in c.views for _ in "ab"],
                                 len(c.dimensions), len(c.criteria), size=self._s.triton_max_concurrency)
            await self._shm.register(self._client)
        log.info("triton backend: %s v%s (%s) views %s max_batch=%d shm=%s", self._contract.model_id,
                 self._contract.model_version, self._contract.checkpoint, self._contract.sampling_key,
                 self._max_batch, self._shm is not None)

    async def close(self) -> None:
        if self._client is not None:
            if self._shm is not None:
                for name, _ in self._shm.regions:
                    try:
                        await self._client.unregister_system_shared_memory(name, client_timeout=1.0)
                    except Exception:  # noqa: BLE001 - server may be gone
                        pass
            await self._client.close()
            self._client = None
        if self._shm is not None:
            self._shm.destroy()
            self._shm = None

    def contract(self) -> ModelContract:
        if self._contract is None:
            raise errors.BackendUnavailable("Triton model contract not discovered yet")
        return self._contract

    async def ready(self) -> bool:
        """Ready = Triton live and *this* model ready (a loading/unloaded model is not ready)."""
        if self._client is None or self._contract is None:
            return False
        try:
            ok = bool(await self._client.is_server_live(client_timeout=1.0)) and bool(
                await self._client.is_model_ready(self._s.triton_model, self._s.triton_model_version,
                                                  client_timeout=1.0))
            if ok and not self._was_ready:  # back after an outage: the model may have been redeployed
                if self._shm is not None:
                    self._shm.invalidate()  # and a restarted server forgot our regions
                await self.start()
            self._was_ready = ok
            return ok
        except Exception:  # noqa: BLE001
            self._was_ready = False
            return False

    # ---- scoring -----------------------------------------------------------------------------------------
    async def score(self, videos: Mapping[str, np.ndarray], pairs: np.ndarray) -> PairLogits:
        c = self.contract()
        for v in c.views:
            got = videos.get(v.name)
            if got is None or got.shape[1:] != (v.frames, v.height, v.width, 3) or got.dtype != np.uint8:
                raise errors.BackendError(f"view {v.name}: {None if got is None else (got.shape, got.dtype)} "
                                          "does not match the model contract")
        n_videos = len(videos["frames"])
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        asked, back, sign = _one_order(pairs) if c.antisymmetric else (pairs, None, None)
        t0 = time.perf_counter()
        chunks = [asked[i:i + self._max_batch] for i in range(0, len(asked), self._max_batch)]
        results = await asyncio.gather(*(self._infer_chunk(videos, ch) for ch in chunks))
        dim = np.concatenate([r[0] for r in results])
        crit = np.concatenate([r[1] for r in results]) if c.criteria else None
        nov = np.concatenate([r[2] for r in results]) if c.novelty else None
        if back is not None:  # logits(b, a) = -logits(a, b): every requested row from the one asked order
            dim = dim[back] * sign
            crit = None if crit is None else crit[back] * sign
            nov = None if nov is None else np.where(sign < 0, nov[back][:, ::-1], nov[back])  # sides swap
        queue_s = max(r[3] for r in results)
        infer_s = time.perf_counter() - t0 - queue_s
        if self._metrics is not None:
            self._metrics.batch_size.observe(n_videos)
            self._metrics.batch_pairs.observe(len(asked))
            self._metrics.stage("queue", queue_s)
            self._metrics.stage("inference", infer_s)
        return PairLogits(dim, crit, BackendTiming(queue_ms=queue_s * 1000, inference_ms=infer_s * 1000,
                                                   batch_videos=n_videos), novelty=nov)

    async def _slot(self) -> float:
        """Wait for a free call slot (seconds waited); refuse at once when queue_size calls already wait."""
        if self._sem.locked() and self._waiting >= self._s.queue_size:
            raise errors.Overloaded("Triton call queue is full", retry_after_s=1.0)
        t = time.perf_counter()
        self._waiting += 1
        self._gauge()
        try:
            await self._sem.acquire()
        except asyncio.CancelledError:  # the caller timed out or went away before inference
            if self._metrics is not None:
                self._metrics.dropped.labels("cancelled_before_inference").inc()
            raise
        finally:
            self._waiting -= 1
            self._gauge()
        return time.perf_counter() - t

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._waiting)

    async def _infer_chunk(self, videos: Mapping[str, np.ndarray], rows: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float]:
        tensors = [(f"{v.name}_{side}", np.ascontiguousarray(videos[v.name][rows[:, k]]))
                   for v in self.contract().views for k, side in enumerate("ab")]
        waited = await self._slot()
        try:
            return (*await self._call(tensors), waited)
        finally:
            self._sem.release()

    async def _call(self, tensors: list[tuple[str, np.ndarray]]
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """One inference call; retries transient gRPC failures only (a timed-out call is not retried)."""
        delay, retries, reregistered = 0.05, 0, False
        while True:
            try:
                if self._shm is not None:
                    return await self._infer_shm(tensors)
                return await self._infer_grpc(tensors)
            except errors.ServiceError:
                raise
            except Exception as exc:  # noqa: BLE001
                status = _status(exc)
                if self._shm is not None and status == "StatusCode.UNAVAILABLE":
                    self._shm.invalidate()  # a restarted Triton forgets our regions
                if self._shm is not None and not reregistered and "shared memory" in _msg(exc).lower():
                    self._shm.invalidate()  # restarted while we were idle: register again, once
                    reregistered = True
                    continue
                if status in TRANSIENT and retries < self._s.triton_retries:
                    retries += 1
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                raise _map_error(exc, self._s.triton_url) from None

    def _inputs(self, tensors: list[tuple[str, np.ndarray]]):
        from tritonclient.grpc import InferInput, InferRequestedOutput

        ins = [InferInput(name, list(arr.shape), "UINT8") for name, arr in tensors]
        c = self.contract()
        want = (True, bool(c.criteria), c.novelty)
        return ins, [InferRequestedOutput(n) for n, w in zip(OUTPUTS, want) if w]

    async def _infer_grpc(self, tensors: list[tuple[str, np.ndarray]]):
        ins, outs = self._inputs(tensors)
        for i, (_, arr) in zip(ins, tensors):
            i.set_data_from_numpy(arr)
        res = await self._client.infer(self._s.triton_model, ins, model_version=self._s.triton_model_version,
                                       outputs=outs, client_timeout=self._s.triton_timeout_s)
        c = self.contract()
        crit = res.as_numpy("criterion_logits").astype(np.float32) if c.criteria else None
        nov = res.as_numpy("novelty").astype(np.float32) if c.novelty else None
        return res.as_numpy("dimension_logits").astype(np.float32), crit, nov

    async def _infer_shm(self, tensors: list[tuple[str, np.ndarray]]):
        pool = self._shm
        if not pool.registered:
            async with self._shm_lock:
                if not pool.registered:
                    await pool.register(self._client)
        region = await pool.acquire()
        try:
            name, handle = region
            n, nd, c = len(tensors[0][1]), len(self.contract().dimensions), max(len(self.contract().criteria), 1)
            ins, outs = self._inputs(tensors)
            for i, (_, arr), off in zip(ins, tensors, pool.in_offsets):
                pool._shm.set_shared_memory_region(handle, [arr], offset=off)
                i.set_shared_memory(name, arr.nbytes, offset=off)
            d_off, c_off = pool.in_bytes, pool.in_bytes + pool.dim_bytes
            n_off = c_off + pool.crit_bytes
            has_crit, has_nov = bool(self.contract().criteria), self.contract().novelty
            outs[0].set_shared_memory(name, n * nd * 4, offset=d_off)
            if has_crit:
                outs[1].set_shared_memory(name, n * c * 4, offset=c_off)
            if has_nov:
                outs[-1].set_shared_memory(name, n * 2 * 4, offset=n_off)
            await self._client.infer(self._s.triton_model, ins, model_version=self._s.triton_model_version,
                                     outputs=outs, client_timeout=self._s.triton_timeout_s)
            dim = pool._shm.get_contents_as_numpy(handle, np.float32, [n, nd], offset=d_off).copy()
            crit = pool._shm.get_contents_as_numpy(handle, np.float32, [n, c], offset=c_off).copy() \
                if has_crit else None
            nov = pool._shm.get_contents_as_numpy(handle, np.float32, [n, 2], offset=n_off).copy() if has_nov else None
            return dim, crit, nov
        finally:
            pool.release(region)


def _one_order(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a model that declares `antisymmetric`: the distinct unordered pairs to ask (lower index first),
    and for each requested row its asked row and sign (-1 where the request is the reverse order)."""
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    asked, back = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
    sign = np.where(pairs[:, 0] <= pairs[:, 1], 1.0, -1.0).astype(np.float32)[:, None]
    return asked, back.reshape(-1), sign


def _status(exc: Exception) -> str:
    st = getattr(exc, "status", None)
    return str(st() if callable(st) else st or "")


def _msg(exc: Exception) -> str:
    m = getattr(exc, "message", None)
    return str(m() if callable(m) else exc)


def _map_error(exc: Exception, url: str) -> errors.ServiceError:
    status, msg = _status(exc), _msg(exc)
    if status == "StatusCode.DEADLINE_EXCEEDED":
        return errors.BackendTimeout(f"Triton did not answer in time: {msg}", retry_after_s=1.0)
    if status in TRANSIENT or status == "StatusCode.CANCELLED" or "not ready" in msg or "unavailable" in msg.lower():
        return errors.BackendUnavailable(f"Triton at {url} unavailable: {msg}", retry_after_s=2.0)
    return errors.BackendError(f"Triton error {status}: {msg}")
