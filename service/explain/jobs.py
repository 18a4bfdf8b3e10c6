"""Explanation job store: Redis (shared by all gateway replicas) or an in-process fallback (one process).

Layout (prefix aesrm:explain:v1):
  job:{id}        hash  status (plain string) + JSON-encoded fields; TTL = explain_job_ttl_s, refreshed on
                        every state change, so a job is forgotten ttl seconds after it last changed.
  job:{id}:events list  progress/text/result/end events (JSON) in order; index = SSE event id.
  fp:{fingerprint}      -> job id of the live (queued/running/succeeded) job for identical requests.
  known:{id}            tombstone outliving the job by a day, so an expired id says "expired", not "unknown".
State changes are compare-and-set Lua scripts: whoever moves a job to a terminal state first wins (a cancel
from another replica vs the worker finishing), and only the winner appends the terminal events.
Keys are built only from ids that passed `check_job_id` (32 hex digits, what new_job_id makes), so a client
cannot address another key (`X:events`); only a Redis outage (connection, timeout, loading) becomes 503 —
a command error would be our bug and is not dressed up as a retryable outage.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError, ConnectionError as RedisConnectionError, MasterDownError
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeout

from service import errors
from service.explain.schemas import TERMINAL

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_EVENT_INDEX = 999_999_999  # SSE cursors (event ids) above this are malformed, not "no events yet"
CURSOR_PATTERN = r"^(-1|[0-9]{1,9})?$"  # a Last-Event-ID: -1 .. MAX_EVENT_INDEX (empty = none)
_OUTAGE = (RedisConnectionError, RedisTimeout, BusyLoadingError, ReadOnlyError, MasterDownError, OutOfMemoryError,
           OSError)  # the server is unreachable, loading, failing over or full: retrying later helps
PREFIX = "aesrm:explain:v1"
TOMBSTONE_S = 24 * 3600
LIVE = ("queued", "running", "succeeded")  # states an identical request may reuse


class JobStore(Protocol):
    async def create(self, fingerprint: str, meta: dict) -> tuple[dict, bool]:
        """(job, created): an existing live job with the same fingerprint is returned instead."""

    async def get(self, job_id: str) -> dict | None: ...

    async def was_known(self, job_id: str) -> bool:
        """True if the id existed once (so a missing job is expired rather than unknown)."""

    async def transition(self, job_id: str, to: str, allowed_from: tuple[str, ...], **fields) -> str | None:
        """Set status `to` (+fields) if the current status is in allowed_from. Returns the status before
        (== a member of allowed_from when applied), or None if the job does not exist (expired)."""

    async def add_event(self, job_id: str, kind: str, data: dict) -> None: ...

    async def events(self, job_id: str, start: int) -> list[dict]: ...

    async def delete(self, job_id: str) -> None: ...

    async def close(self) -> None: ...


def new_job_id() -> str:
    return uuid.uuid4().hex


def check_job_id(job_id: str) -> str:
    """The id if well formed (422 invalid_request otherwise): the only ids store keys are built from."""
    if not isinstance(job_id, str) or not re.fullmatch(JOB_ID_PATTERN, job_id):
        raise errors.InvalidRequest("malformed job id (expected 32 lowercase hex digits)")
    return job_id


def check_cursor(index: int) -> int:
    if not 0 <= index <= MAX_EVENT_INDEX + 1:
        raise errors.InvalidRequest(f"event cursor out of range [-1, {MAX_EVENT_INDEX}]")
    return index


def _record(job_id: str, fingerprint: str, meta: dict, ttl: int) -> dict:
    now = time.time()
    return {"job_id": job_id, "status": "queued", "fingerprint": fingerprint, "meta": meta, "created_at": now,
            "updated_at": now, "started_at": None, "finished_at": None, "expires_at": now + ttl,
            "error": None, "result": None}


def _event(kind: str, data: dict) -> dict:
    return {"kind": kind, "data": data, "t": time.time()}


class MemoryJobStore:
    """Same semantics in one process (AESRM_REDIS_URL unset): for dev and single-replica use only."""

    def __init__(self, ttl_s: int) -> None:
        self.ttl = ttl_s
        self._jobs: dict[str, dict] = {}
        self._events: dict[str, list[dict]] = {}
        self._fp: dict[str, str] = {}
        self._known: dict[str, float] = {}

    def _sweep(self) -> None:
        now = time.time()
        for jid in [j for j, rec in self._jobs.items() if rec["expires_at"] <= now]:
            self._jobs.pop(jid, None)
            self._events.pop(jid, None)
        for fp in [f for f, jid in self._fp.items() if jid not in self._jobs]:
            self._fp.pop(fp)
        for jid in [j for j, exp in self._known.items() if exp <= now]:
            self._known.pop(jid)

    async def create(self, fingerprint: str, meta: dict) -> tuple[dict, bool]:
        self._sweep()
        old = self._jobs.get(self._fp.get(fingerprint, ""))
        if old is not None and old["status"] in LIVE:
            return dict(old), False
        rec = _record(new_job_id(), fingerprint, meta, self.ttl)
        self._jobs[rec["job_id"]], self._events[rec["job_id"]] = rec, []
        self._fp[fingerprint] = rec["job_id"]
        self._known[rec["job_id"]] = time.time() + self.ttl + TOMBSTONE_S
        return dict(rec), True

    async def get(self, job_id: str) -> dict | None:
        self._sweep()
        rec = self._jobs.get(job_id)
        return None if rec is None else dict(rec)

    async def was_known(self, job_id: str) -> bool:
        self._sweep()
        return job_id in self._known

    async def transition(self, job_id: str, to: str, allowed_from: tuple[str, ...], **fields) -> str | None:
        self._sweep()
        rec = self._jobs.get(job_id)
        if rec is None:
            return None
        before = rec["status"]
        if before not in allowed_from:
            return before
        now = time.time()
        rec.update(fields, status=to, updated_at=now, expires_at=now + self.ttl)
        if to in ("failed", "cancelled") and self._fp.get(rec["fingerprint"]) == job_id:
            self._fp.pop(rec["fingerprint"])
        return before

    async def add_event(self, job_id: str, kind: str, data: dict) -> None:
        if job_id in self._jobs:
            self._events[job_id].append(_event(kind, data))

    async def events(self, job_id: str, start: int) -> list[dict]:
        return list(self._events.get(job_id, [])[start:])

    async def delete(self, job_id: str) -> None:
        rec = self._jobs.pop(job_id, None)
        self._events.pop(job_id, None)
        self._known.pop(job_id, None)
        if rec and self._fp.get(rec["fingerprint"]) == job_id:
            self._fp.pop(rec["fingerprint"])

    async def close(self) -> None:
        self._jobs.clear()


_CREATE = """
local existing = redis.call('GET', KEYS[1])
if existing then
  local st = redis.call('HGET', ARGV[4] .. ':job:' .. existing, 'status')
  if st == 'queued' or st == 'running' or st == 'succeeded' then return existing end
end
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[3])
return ARGV[1]
"""

_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return false end
if not string.find(',' .. ARGV[3] .. ',', ',' .. cur .. ',', 1, true) then return cur end
redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[4] then
  if ARGV[2] == 'failed' or ARGV[2] == 'cancelled' then redis.call('DEL', KEYS[3])
  else redis.call('EXPIRE', KEYS[3], ARGV[1]) end
end
return cur
"""


class RedisJobStore:
    """State in Redis so any replica can answer polls, stream events and cancel; failures -> 503."""

    def __init__(self, url: str, ttl_s: int, timeout_s: float) -> None:
        self.ttl = ttl_s
        self._client = aioredis.from_url(url, socket_timeout=max(timeout_s, 1.0),
                                         socket_connect_timeout=max(timeout_s, 1.0), health_check_interval=30)
        self._create = self._client.register_script(_CREATE)
        self._transition = self._client.register_script(_TRANSITION)

    @staticmethod
    def _k(*parts: str) -> str:
        return ":".join((PREFIX,) + parts)

    async def _call(self, coro):
        try:
            return await coro
        except _OUTAGE as exc:
            raise errors.BackendUnavailable(f"explanation job store unavailable: {type(exc).__name__}",
                                            retry_after_s=2.0) from None

    @staticmethod
    def _flat(fields: dict) -> list:
        out: list = []
        for k, v in fields.items():
            out += [k, v if k == "status" else orjson.dumps(v)]
        return out

    async def create(self, fingerprint: str, meta: dict) -> tuple[dict, bool]:
        rec = _record(new_job_id(), fingerprint, meta, self.ttl)
        keys = [self._k("fp", fingerprint), self._k("job", rec["job_id"]), self._k("known", rec["job_id"])]
        args = [rec["job_id"], self.ttl, self.ttl + TOMBSTONE_S, PREFIX] + self._flat(rec)
        got = (await self._call(self._create(keys=keys, args=args))).decode()
        if got == rec["job_id"]:
            return rec, True
        old = await self.get(got)
        if old is None:  # expired between the script and this read: make a fresh one
            return await self.create(fingerprint, meta)
        return old, False

    async def get(self, job_id: str) -> dict | None:
        raw = await self._call(self._client.hgetall(self._k("job", job_id)))
        if not raw:
            return None
        return {k.decode(): (v.decode() if k == b"status" else orjson.loads(v)) for k, v in raw.items()}

    async def was_known(self, job_id: str) -> bool:
        return bool(await self._call(self._client.exists(self._k("known", job_id))))

    async def transition(self, job_id: str, to: str, allowed_from: tuple[str, ...], **fields) -> str | None:
        now = time.time()
        fields = dict(fields, updated_at=now, expires_at=now + self.ttl)
        rec = await self.get(job_id)
        if rec is None:
            return None
        keys = [self._k("job", job_id), self._k("job", job_id, "events"), self._k("fp", rec["fingerprint"])]
        args = [self.ttl, to, ",".join(allowed_from), job_id] + self._flat(fields)
        before = await self._call(self._transition(keys=keys, args=args))
        return None if before is None else before.decode()

    async def add_event(self, job_id: str, kind: str, data: dict) -> None:
        key = self._k("job", job_id, "events")
        pipe = self._client.pipeline(transaction=False)
        pipe.rpush(key, orjson.dumps(_event(kind, data)))
        pipe.expire(key, self.ttl)
        await self._call(pipe.execute())

    async def events(self, job_id: str, start: int) -> list[dict]:
        raw = await self._call(self._client.lrange(self._k("job", job_id, "events"), start, -1))
        return [orjson.loads(x) for x in raw]

    async def delete(self, job_id: str) -> None:
        rec = await self.get(job_id)
        keys = [self._k("job", job_id), self._k("job", job_id, "events"), self._k("known", job_id)]
        if rec is not None:
            fp = self._k("fp", rec["fingerprint"])
            if (await self._call(self._client.get(fp))) == job_id.encode():
                keys.append(fp)
        await self._call(self._client.delete(*keys))

    async def close(self) -> None:
        await self._client.aclose()


def build_store(settings) -> JobStore:
    if settings.redis_url:
        return RedisJobStore(settings.redis_url, settings.explain_job_ttl_s, settings.redis_timeout_s)
    return MemoryJobStore(settings.explain_job_ttl_s)


def is_terminal(status: str) -> bool:
    return status in TERMINAL
