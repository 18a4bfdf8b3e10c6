"""GRPO rewards on the AesRM service: grouped by prompt identity, never by position.

Why: group-relative rewards are only right when every sample is compared with the other samples *of the
same prompt*. Samplers shuffle (Flow-GRPO spreads the K repeats of a prompt over the batch and the ranks),
so samples are grouped by an explicit group id (Flow-GRPO prompt id / metadata, verl ``uid``) or, without
one, a stable hash of the prompt; within a group they are sent in content order, so the order of the batch
never changes a reward (bit for bit). All groups of a batch go in ONE ``POST /v1/groups/upload`` (one
pipeline run, one backend batch), videos prepared on the worker (``service.client.frames``).

Nothing is made up. ``BatchRewards`` holds NaN plus ``ok=False`` and an error code for every sample that
could not be scored: its own video failed (``video_undecodable``...), its group failed
(``not_enough_valid_videos``), or it is alone in its group (``group_size``: a group of one has no relative
signal; use reference mode). Adapters turn that into what each trainer expects (``service.client.trainers``):
TRL gets ``None`` (TRL leaves such rows out of the group baseline and gives them zero advantage), trainers
that need a number get the caller's ``penalty`` plus an ``ok`` mask / error column to log.
Whole-request failures (service down after retries, auth) raise ``AesRMError``: a training step should
stop rather than train on rewards nobody computed.

Incomplete groups on a rank: ``gather=True`` (default when torch.distributed is initialised) collects the
samples of split groups over torch.distributed (``service.client.dist``, gloo works), or pass
``reference=`` to score every sample against a reference video (P(sample > reference)), which needs no
other sample.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.client.frames import Contract, Layout, ValueRange, npy_bytes, prepare
from service.client.sdk import AesRMClient, AsyncAesRMClient, _payload, _ref
from service.schemas import GroupsResponse

DIMENSIONS = ("VA", "VF", "VP")


def group_key(prompt: Any, group_id: Any = None) -> str:
    """The group a sample belongs to: the explicit id when given, else a stable hash of the prompt
    (chat prompts compare by value; the same in every process, unlike hash())."""
    if group_id is not None:
        return f"id:{group_id}"
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=repr)
    return "p:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass
class BatchRewards:
    """Per-sample results in the caller's order. ``rewards``/``dimensions`` are NaN where ``ok`` is False."""

    rewards: np.ndarray
    dimensions: dict[str, np.ndarray]
    ok: np.ndarray
    errors: list[str | None]
    keys: list[str]
    response_bytes: int = 0
    request_bytes: int = 0
    calls: int = 0

    def filled(self, penalty: float) -> np.ndarray:
        """Rewards with ``penalty`` where a sample could not be scored (use with ``ok`` to log them)."""
        return np.where(self.ok, self.rewards, float(penalty))

    def dimension_filled(self, name: str, penalty: float) -> np.ndarray:
        return np.where(self.ok, self.dimensions[name], float(penalty))

    @property
    def error_rate(self) -> float:
        return float(1.0 - self.ok.mean()) if len(self.ok) else 0.0


def empty_rewards(keys: list[str]) -> BatchRewards:
    n = len(keys)
    return BatchRewards(np.full(n, np.nan), {d: np.full(n, np.nan) for d in DIMENSIONS}, np.zeros(n, bool),
                        [None] * n, keys)


@dataclass
class Prepared:
    """One sample ready to upload: bytes (prepared .npy or an encoded file) and its content digest."""

    data: bytes | Any  # Any: ServerPath / VideoURL go by reference
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        blob = self.data if isinstance(self.data, bytes) else repr(self.data).encode()
        self.digest = hashlib.blake2b(blob, digest_size=16).hexdigest()


class Preparer:
    """Turns whatever the trainer holds into upload bytes: tensors/arrays are sampled and resized here to
    the model contract (read once from GET /v1/model); files/bytes/paths go as they are."""

    def __init__(self, contract: Contract | None = None, *, layout: Layout | None = None,
                 value_range: ValueRange = "auto") -> None:
        self.contract, self.layout, self.value_range = contract, layout, value_range

    def ensure(self, client: AesRMClient) -> None:
        if self.contract is None:
            self.contract = Contract.of(client.model())

    async def aensure(self, client: AsyncAesRMClient) -> None:
        if self.contract is None:
            self.contract = Contract.of(await client.model())

    def __call__(self, video: Any) -> Prepared:
        if isinstance(video, (bytes, bytearray, memoryview)):
            return Prepared(bytes(video))
        if isinstance(video, Path):
            return Prepared(video.read_bytes())
        if hasattr(video, "shape"):  # numpy array or torch tensor
            if self.contract is None:
                raise RuntimeError("Preparer has no model contract: call ensure(client) first")
            return Prepared(npy_bytes(prepare(video, self.contract, layout=self.layout,
                                              value_range=self.value_range)))
        p = _payload(video, 0)  # ServerPath / VideoURL / str (TypeError with a hint)
        return Prepared(p if not isinstance(p, tuple) else p[1])


# ---------------------------------------------------------------- one batch -> one /v1/groups request

@dataclass
class Plan:
    """The request for a batch: groups sorted by key, members sorted by content (order-free)."""

    groups: list[tuple[str, list[int]]]  # (key, caller indices in upload order)
    references: dict[str, Prepared]

    def manifest(self, aggregation: str, both_orders: bool | None) -> dict:
        return {"aggregation": aggregation, "both_orders": both_orders,
                "groups": [{"id": key, "count": len(members), "reference": key in self.references}
                           for key, members in self.groups]}


def plan(keys: Sequence[str], prepared: Sequence[Prepared], references: dict[str, Prepared] | None = None
         ) -> Plan:
    by_key: dict[str, list[int]] = {}
    for n, k in enumerate(keys):
        by_key.setdefault(k, []).append(n)
    groups = [(k, sorted(by_key[k], key=lambda n: (prepared[n].digest, n))) for k in sorted(by_key)]
    return Plan(groups, dict(references or {}))


def build_request(pl: Plan, prepared: Sequence[Prepared], aggregation: str, both_orders: bool | None) -> dict:
    """Multipart upload when every input is bytes; JSON (base64 / server path / URL refs) otherwise."""
    datas = [prepared[n].data for _, m in pl.groups for n in m] + [pl.references[k].data for k, _ in pl.groups
                                                                    if k in pl.references]
    if all(isinstance(d, bytes) for d in datas):
        files, data = build_upload(pl, prepared, aggregation, both_orders)
        return {"url": "/v1/groups/upload", "files": files, "data": data}
    ref = lambda d: _ref(d if not isinstance(d, bytes) else ("x", d), None)  # noqa: E731
    body = {"aggregation": aggregation, "both_orders": both_orders,
            "groups": [{"id": k, "videos": [ref(prepared[n].data) for n in m],
                        "reference": ref(pl.references[k].data) if k in pl.references else None}
                       for k, m in pl.groups]}
    return {"url": "/v1/groups", "json": body}


def build_upload(pl: Plan, prepared: Sequence[Prepared], aggregation: str, both_orders: bool | None
                 ) -> tuple[list, dict]:
    files = []
    for key, members in pl.groups:
        files += [("videos", (f"{n}.npy" if _is_npy(prepared[n].data) else f"{n}.bin", prepared[n].data))
                  for n in members]
        if key in pl.references:
            files.append(("videos", ("reference.bin", pl.references[key].data)))
    return files, {"manifest": json.dumps(pl.manifest(aggregation, both_orders))}


def apply_response(pl: Plan, res: GroupsResponse, out: BatchRewards) -> None:
    """Write one response into `out` (caller order); errors become NaN + ok=False + code."""
    by_id = {g.id: g for g in res.groups}
    for key, members in pl.groups:
        g = by_id.get(key)
        if g is None or g.error is not None:
            code = g.error.code if g is not None else "missing_in_response"
            for n in members:
                out.errors[n] = code
            continue
        for pos, n in enumerate(members):
            item = g.results[pos]
            if item.error is not None or item.reward is None or not math.isfinite(item.reward):
                out.errors[n] = item.error.code if item.error is not None else "no_reward"
                continue
            out.rewards[n], out.ok[n] = float(item.reward), True
            dims = item.vs_reference if g.aggregation == "reference" else item.dimensions
            if dims is not None:
                for d in DIMENSIONS:
                    out.dimensions[d][n] = float(getattr(dims, d))


def _is_npy(data: Any) -> bool:
    return isinstance(data, bytes) and data[:6] == b"\x93NUMPY"


def _chunks(pl: Plan, max_videos: int) -> list[Plan]:
    """Split a plan into requests of at most `max_videos` videos (whole groups only)."""
    out: list[Plan] = []
    cur: list[tuple[str, list[int]]] = []
    size = 0
    for key, members in pl.groups:
        need = len(members) + (key in pl.references)
        if cur and size + need > max_videos:
            out.append(Plan(cur, pl.references))
            cur, size = [], 0
        cur.append((key, members))
        size += need
    if cur:
        out.append(Plan(cur, pl.references))
    return out


# ---------------------------------------------------------------- the scorer

class GroupScorer:
    """Score a batch of samples with their group keys; sync (``score``) and async (``ascore``).

    ``reference``: one video for every group, or a dict key -> video (reference mode).
    ``max_videos_per_call``: groups are packed into requests of at most this many videos (the server
    accepts 8 x AESRM_MAX_GROUP_SIZE); the async path keeps them in flight together.
    """

    def __init__(self, client: AesRMClient | AsyncAesRMClient, *, aggregation: str = "bradley_terry",
                 both_orders: bool | None = None, layout: Layout | None = None, value_range: ValueRange = "auto",
                 reference: Any = None, max_videos_per_call: int = 64, contract: Contract | None = None) -> None:
        self.client, self.aggregation, self.both_orders = client, aggregation, both_orders
        self.prep = Preparer(contract, layout=layout, value_range=value_range)
        self.reference, self.max_videos = reference, max_videos_per_call
        self._ref_cache: dict[int, Prepared] = {}

    def prepare(self, videos: Sequence[Any]) -> list[Prepared]:
        return [self.prep(v) for v in videos]

    def references(self, keys: Sequence[str]) -> dict[str, Prepared]:
        if self.reference is None:
            return {}
        if isinstance(self.reference, dict):
            return {k: self._ref(self.reference[k]) for k in set(keys) if k in self.reference}
        ref = self._ref(self.reference)
        return {k: ref for k in set(keys)}

    def _ref(self, video: Any) -> Prepared:
        if id(video) not in self._ref_cache:
            self._ref_cache[id(video)] = self.prep(video)
        return self._ref_cache[id(video)]

    def score_prepared(self, keys: Sequence[str], prepared: Sequence[Prepared]) -> BatchRewards:
        """Blocking: one request per `max_videos_per_call` videos, in sequence."""
        out = empty_rewards(list(keys))
        pl = plan(keys, prepared, self.references(keys))
        for part in _chunks(pl, self.max_videos):
            req = build_request(part, prepared, self.aggregation, self.both_orders)
            r = self.client._call("POST", req.pop("url"), **req)
            _account(out, req, r)
            apply_response(part, GroupsResponse.model_validate(r.json()), out)
        return out

    async def ascore_prepared(self, keys: Sequence[str], prepared: Sequence[Prepared]) -> BatchRewards:
        """Async: all requests of the batch in flight at once."""
        import asyncio

        out = empty_rewards(list(keys))
        pl = plan(keys, prepared, self.references(keys))

        async def one(part: Plan) -> None:
            req = build_request(part, prepared, self.aggregation, self.both_orders)
            r = await self.client._call("POST", req.pop("url"), **req)
            _account(out, req, r)
            apply_response(part, GroupsResponse.model_validate(r.json()), out)

        await asyncio.gather(*(one(p) for p in _chunks(pl, self.max_videos)))
        return out

    def score(self, videos: Sequence[Any], keys: Sequence[str]) -> BatchRewards:
        if len(videos) != len(keys):
            raise ValueError("need one group key per video")
        self.prep.ensure(self.client)  # type: ignore[arg-type]
        return self.score_prepared(keys, self.prepare(videos))

    async def ascore(self, videos: Sequence[Any], keys: Sequence[str]) -> BatchRewards:
        if len(videos) != len(keys):
            raise ValueError("need one group key per video")
        await self.prep.aensure(self.client)  # type: ignore[arg-type]
        return await self.ascore_prepared(keys, self.prepare(videos))


def _account(out: BatchRewards, req: dict, r) -> None:
    """Payload accounting for the bench and logs: bytes uploaded (video parts or JSON body), received."""
    out.calls += 1
    if "files" in req:
        out.request_bytes += sum(len(f[1][1]) for f in req["files"]) + len(req["data"]["manifest"])
    else:
        out.request_bytes += len(json.dumps(req["json"]))
    out.response_bytes += len(r.content)


def group_rewards(client: AesRMClient, videos: Sequence[Any], *, penalty: float = -1.0,
                  aggregation: str = "bradley_terry", reference: Any = None,
                  both_orders: bool | None = None) -> list[float]:
    """One prompt's G samples -> one reward each (``penalty`` where a sample could not be scored; see
    ``score_batch`` for the NaN + error-code form). A group of one needs ``reference``: without it this
    raises ValueError instead of inventing a reward."""
    if len(videos) == 0:
        return []
    if len(videos) == 1 and reference is None:
        raise ValueError("a group of one has no relative reward: pass reference= (reference mode)")
    res = GroupScorer(client, aggregation=aggregation, both_orders=both_orders,
                      reference=reference).score(videos, ["group"] * len(videos))
    return res.filled(penalty).tolist()


def score_batch(client: AesRMClient, videos: Sequence[Any], prompts: Sequence[Any], *,
                group_ids: Sequence[Any] | None = None, **options: Any) -> BatchRewards:
    """A whole (possibly shuffled) batch: grouped by ``group_ids`` or prompt, one request, NaN + ``ok``
    + error codes for what could not be scored. ``options`` go to ``GroupScorer``."""
    keys = [group_key(p, None if group_ids is None else group_ids[n]) for n, p in enumerate(prompts)]
    return GroupScorer(client, **options).score(videos, keys)
