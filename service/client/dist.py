"""Complete GRPO groups that the sampler split across ranks, over torch.distributed (gloo is enough).

Flow-GRPO's sampler (and TRL's, when the per-device batch is not a multiple of G) puts the samples of one
prompt on several ranks. Scoring each rank's share alone would rank 4 samples instead of 8 and give
different rewards for the same video. Three collectives fix it, every rank calling in the same order:

1. ``all_gather_object`` of the group keys each rank holds -> every rank knows each group's members;
   the group's owner is the lowest rank holding it.
2. ``all_gather_object`` of the prepared samples (small .npy, ~0.4 MB each) that belong to another
   rank's group; the owner scores its complete groups in one /v1/groups request.
3. ``all_gather_object`` of the results for samples scored on another rank.

A dedicated gloo group is used when the default group is not gloo (NCCL would need CUDA tensors), made on
first use: construct on every rank, call on every rank, in the same order (TRL calls reward functions that
way; for Flow-GRPO's thread pool use ``FlowGRPOScorer.submit``, which runs calls one at a time in order).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.client.grpo import DIMENSIONS, BatchRewards, GroupScorer, Prepared, empty_rewards


def distributed_world() -> int:
    """World size when torch.distributed is initialised in this process, else 1 (torch not imported)."""
    import sys

    if "torch" not in sys.modules:
        return 1
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class DistGather:
    def __init__(self, group: Any = None) -> None:
        self._group = group
        self._made = group is not None

    def group(self):
        import torch.distributed as dist

        if not self._made:
            self._made = True
            if dist.get_backend() != "gloo":
                self._group = dist.new_group(backend="gloo")
        return self._group

    def _all(self, obj: Any) -> list:
        import torch.distributed as dist

        group = self.group()
        out: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(out, obj, group=group)
        return out

    def score(self, scorer: GroupScorer, keys: list[str], prepared: list[Prepared]) -> BatchRewards:
        """This rank's rewards, each sample scored within its whole (cross-rank) group."""
        import torch.distributed as dist

        rank = dist.get_rank(self.group())
        holders = self._all(keys)
        owner: dict[str, int] = {}
        for r, ks in enumerate(holders):
            for k in ks:
                owner.setdefault(k, r)  # ranks enumerate in order: first holder = lowest rank

        outgoing = [(k, n, prepared[n].data) for n, k in enumerate(keys) if owner[k] != rank]
        incoming = self._all(outgoing)
        mine: list[tuple[int, int, str, Prepared]] = [(rank, n, k, prepared[n]) for n, k in enumerate(keys)
                                                      if owner[k] == rank]
        for r, items in enumerate(incoming):
            mine += [(r, n, k, Prepared(data)) for k, n, data in items if owner[k] == rank]
        res = scorer.score_prepared([m[2] for m in mine], [m[3] for m in mine]) if mine else empty_rewards([])

        remote = {(r, n): _row(res, j) for j, (r, n, _, _) in enumerate(mine) if r != rank}
        answers = self._all(remote)
        out = empty_rewards(list(keys))
        out.calls, out.request_bytes, out.response_bytes = res.calls, res.request_bytes, res.response_bytes
        local = {n: j for j, (r, n, _, _) in enumerate(mine) if r == rank}
        for n, k in enumerate(keys):
            row = _row(res, local[n]) if n in local else answers[owner[k]][(rank, n)]
            _put(out, n, row)
        return out


def _row(res: BatchRewards, j: int) -> tuple:
    return (float(res.rewards[j]), {d: float(res.dimensions[d][j]) for d in DIMENSIONS}, bool(res.ok[j]),
            res.errors[j])


def _put(out: BatchRewards, n: int, row: tuple) -> None:
    reward, dims, ok, err = row
    out.rewards[n], out.ok[n], out.errors[n] = reward, ok, err
    for d in DIMENSIONS:
        out.dimensions[d][n] = dims[d]


def nan_to(values: np.ndarray, ok: np.ndarray, fill: Any) -> list:
    return [float(v) if k else fill for v, k in zip(values, ok)]
