"""AesRM rewards in the exact call shapes of the GRPO trainers people use. One line each::

    reward = AesRMReward(client, video_key="video")                 # TRL reward_funcs (sync)
    reward = AsyncAesRMReward(async_client, video_key="video")      # TRL async reward function
    reward_fn = FlowGRPOScorer(client, group_key="prompt_id")       # Flow-GRPO reward_fn(images, prompts, metadata)
    manager = AesRMRewardManager(tokenizer, 0, client=client)       # verl reward manager (groups by `uid`)
    inferencer = DanceGRPOReward(client)                            # DanceGRPO: per-dimension rewards

Samples are grouped by the trainer's group id (Flow-GRPO metadata field, verl ``uid``, a TRL dataset
column) or by a stable hash of the prompt, never by position (``service.client.grpo``). Groups split
across ranks are gathered over torch.distributed (default when it is initialised) or scored in reference
mode (``reference=``). A sample that could not be scored is never given a made-up value:

* TRL: ``None`` (TRL's "not applicable"; a row every reward function skips is left out of its group's
  baseline and gets zero advantage), unless you pass a numeric ``penalty``;
* Flow-GRPO, verl, DanceGRPO (they need numbers): ``penalty`` (``DEFAULT_PENALTY[aggregation]``: below any
  real reward), and always an ``ok`` mask and the error code next to it for the trainer to log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from service.client.dist import DistGather, distributed_world, nan_to
from service.client.grpo import DIMENSIONS, BatchRewards, GroupScorer, group_key
from service.client.sdk import AesRMClient, AsyncAesRMClient

DEFAULT_PENALTY = {"bradley_terry": -10.0, "win_rate": 0.0, "reference": 0.0}
"""Reward for an unscorable sample where the trainer needs a number: Bradley-Terry strengths are zero-mean
logits (a few units either side), win rates and P(sample > reference) lie in [0, 1]."""


class _Rewarder:
    """Shared by the adapters: score a batch (gathering split groups across ranks when asked)."""

    def __init__(self, client, *, aggregation: str = "bradley_terry", both_orders: bool | None = None,
                 layout=None, value_range="auto", reference: Any = None, gather: bool | None = None,
                 dist_group: Any = None, penalty: float | None = None, max_videos_per_call: int = 64,
                 to_video: Callable[[Any], Any] | None = None, name: str = "aesrm") -> None:
        self.scorer = GroupScorer(client, aggregation=aggregation, both_orders=both_orders, layout=layout,
                                  value_range=value_range, reference=reference,
                                  max_videos_per_call=max_videos_per_call)
        mode = "reference" if reference is not None else aggregation
        self.penalty = DEFAULT_PENALTY[mode] if penalty is None else float(penalty)
        self.gather, self.to_video = gather, to_video
        self._dist = DistGather(dist_group)
        self.__name__ = name  # trainers name the logged reward column after it

    def _videos(self, items: Sequence[Any]) -> list:
        return [self.to_video(v) if self.to_video else v for v in items]

    def _gathering(self) -> bool:
        if self.scorer.reference is not None or self.gather is False:
            return False
        return distributed_world() > 1

    def score(self, videos: Sequence[Any], keys: Sequence[str]) -> BatchRewards:
        if not self._gathering():
            return self.scorer.score(videos, keys)
        self.scorer.prep.ensure(self.scorer.client)
        return self._dist.score(self.scorer, list(keys), self.scorer.prepare(videos))


def _keys(prompts: Sequence[Any], ids: Sequence[Any] | None) -> list[str]:
    return [group_key(p, None if ids is None else ids[n]) for n, p in enumerate(prompts)]


# ---------------------------------------------------------------- TRL

class AesRMReward(_Rewarder):
    """TRL ``reward_funcs`` entry: ``f(prompts, completions, completion_ids, **columns) -> list[float | None]``.

    Videos come from the dataset/generation column ``video_key`` (else ``completions``), mapped by
    ``to_video``; ``group_key`` names a column with an explicit group id (else the prompt is hashed).
    Logs per-sample error codes (``log_extra``) and the error rate and per-dimension means (``log_metric``)
    when TRL passes those hooks. ``penalty=None`` (default) -> unscorable samples are ``None``.
    """

    def __init__(self, client: AesRMClient, *, video_key: str | None = None, group_key: str | None = None,
                 penalty: float | None = None, **options: Any) -> None:
        super().__init__(client, **options)
        self.video_key, self.group_key_col = video_key, group_key
        self.trl_penalty = penalty

    def _inputs(self, prompts, completions, kwargs) -> tuple[list, list[str]]:
        items = kwargs[self.video_key] if self.video_key else completions
        if items is None or len(items) != len(prompts):
            raise ValueError("need one video per prompt entry")
        ids = kwargs[self.group_key_col] if self.group_key_col else None
        return self._videos(items), _keys(prompts, ids)

    def _answer(self, res: BatchRewards, kwargs) -> list[float | None]:
        if callable(kwargs.get("log_extra")):
            kwargs["log_extra"](f"{self.__name__}_error", [e or "" for e in res.errors])
        if callable(kwargs.get("log_metric")):
            kwargs["log_metric"](f"{self.__name__}/error_rate", res.error_rate)
            for d in DIMENSIONS:
                if res.ok.any():
                    kwargs["log_metric"](f"{self.__name__}/{d}", float(np.nanmean(res.dimensions[d])))
        return nan_to(res.rewards, res.ok, self.trl_penalty)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any] | None = None,
                 **kwargs: Any) -> list[float | None]:
        videos, keys = self._inputs(prompts, completions, kwargs)
        return self._answer(self.score(videos, keys), kwargs)


class AsyncAesRMReward(AesRMReward):
    """TRL's async reward-function form (``async def __call__``) on ``AsyncAesRMClient``: several requests
    in flight. It does not run collectives: across ranks use reference mode, or ``gather=False`` when
    your per-device batch holds whole groups."""

    def __init__(self, client: AsyncAesRMClient, **options: Any) -> None:
        super().__init__(client, **options)  # type: ignore[arg-type]

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any] | None = None,  # type: ignore[override]
                       **kwargs: Any) -> list[float | None]:
        if self._gathering():
            raise ValueError("groups may be split across ranks: use AesRMReward (gathers over "
                             "torch.distributed), reference=..., or gather=False if each rank holds whole groups")
        videos, keys = self._inputs(prompts, completions, kwargs)
        return self._answer(await self.scorer.ascore(videos, keys), kwargs)


# ---------------------------------------------------------------- Flow-GRPO

class FlowGRPOScorer(_Rewarder):
    """Flow-GRPO ``reward_fn(images, prompts, metadata, only_strict=True) -> (rewards_dict, meta)``.

    ``images``: the sampled videos, a [B, ...] float tensor (or list) per the pipeline's output
    (``layout`` per video: THWC / TCHW / CTHW, auto-detected). ``group_key``: the metadata field holding
    the prompt id (else the prompt text is hashed). Returns ``avg`` (what Flow-GRPO's advantage uses) and
    ``<name>``, ``<name>_VA/VF/VP`` (penalty where not scored) and ``<name>_ok`` (1/0) - all gathered and
    logged by Flow-GRPO; ``meta`` holds the error codes.
    """

    def __init__(self, client: AesRMClient, *, group_key: str | None = None, **options: Any) -> None:
        super().__init__(client, **options)
        self.group_key_field = group_key
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aesrm-reward")

    def __call__(self, images: Any, prompts: Sequence[Any], metadata: Sequence[dict] | None = None,
                 only_strict: bool = True) -> tuple[dict[str, np.ndarray], dict]:
        videos = self._videos(list(images))  # [B, ...] tensor -> B videos
        ids = [m.get(self.group_key_field) for m in metadata] if (self.group_key_field and metadata) else None
        res = self.score(videos, _keys(prompts, ids))
        reward = res.filled(self.penalty).astype(np.float32)
        out = {"avg": reward, self.__name__: reward, f"{self.__name__}_ok": res.ok.astype(np.float32)}
        for d in DIMENSIONS:
            out[f"{self.__name__}_{d}"] = res.dimension_filled(d, self.penalty).astype(np.float32)
        return out, {"errors": res.errors, "group_keys": res.keys}

    def submit(self, images: Any, prompts: Sequence[Any], metadata: Sequence[dict] | None = None,
               only_strict: bool = True) -> Future:
        """Score in the background (submit after sampling, ``.result()`` before the loss). One worker
        thread, so calls - and their collectives - run in submission order on every rank."""
        return self._pool.submit(self, images, prompts, metadata, only_strict)


# ---------------------------------------------------------------- verl

class AesRMRewardManager(_Rewarder):
    """verl reward manager: ``manager(data: DataProto, return_dict=False)``.

    Samples are grouped by ``data.non_tensor_batch["uid"]`` (verl's per-prompt id, repeated for the n
    rollouts); videos are ``data.non_tensor_batch[video_key]``. The reward sits on the last valid response
    token of ``reward_tensor`` (as verl's managers do); ``reward_extra_info`` carries ``<name>_ok``,
    ``<name>_error`` and per-dimension values. Register it with ``register_with_verl()``.
    """

    def __init__(self, tokenizer: Any = None, num_examine: int = 0, compute_score: Any = None,
                 reward_fn_key: str = "data_source", *, client: AesRMClient, video_key: str = "videos",
                 uid_key: str = "uid", **options: Any) -> None:
        super().__init__(client, **options)
        self.tokenizer, self.num_examine, self.reward_fn_key = tokenizer, num_examine, reward_fn_key
        self.video_key, self.uid_key = video_key, uid_key

    def __call__(self, data: Any, return_dict: bool = False):
        import torch

        if "rm_scores" in data.batch.keys():  # already scored in the rollout (verl's reward loop)
            return {"reward_tensor": data.batch["rm_scores"], "reward_extra_info": {}} if return_dict \
                else data.batch["rm_scores"]
        nt = data.non_tensor_batch
        videos, uids = list(nt[self.video_key]), list(nt[self.uid_key])
        res = self.score(self._videos(videos), [group_key(None, u) for u in uids])
        prompt_len = data.batch["prompts"].shape[-1]
        lengths = data.batch["attention_mask"][:, prompt_len:].sum(dim=-1)
        reward_tensor = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
        filled = res.filled(self.penalty)
        for i in range(len(filled)):
            reward_tensor[i, int(lengths[i]) - 1] = float(filled[i])
        if not return_dict:
            return reward_tensor
        extra = {f"{self.__name__}_ok": res.ok.astype(np.float32).tolist(),
                 f"{self.__name__}_error": [e or "" for e in res.errors]}
        for d in DIMENSIONS:
            extra[f"{self.__name__}_{d}"] = res.dimension_filled(d, self.penalty).tolist()
        return {"reward_tensor": reward_tensor, "reward_extra_info": extra}


def register_with_verl(name: str = "aesrm") -> type:
    """Register AesRMRewardManager in verl's reward-manager registry (``reward_model.reward_manager=aesrm``)."""
    from verl.workers.reward_manager import register  # only where verl is installed

    return register(name)(AesRMRewardManager)


# ---------------------------------------------------------------- DanceGRPO

class DanceGRPOReward(_Rewarder):
    """Per-dimension rewards for multi-advantage trainers (DanceGRPO computes one advantage per reward head).

    ``reward(videos, prompts)`` mirrors the VideoAlign inferencer DanceGRPO calls (one dict per video);
    keys ``VA``, ``VF``, ``VP``, ``Overall`` plus ``ok`` and ``error``. DanceGRPO scores one video per call:
    that needs reference mode (``reference=``); or pass the whole group in one call to rank it.
    Default penalty -1.0 is what DanceGRPO itself assigns to a failed reward.
    """

    def __init__(self, client: AesRMClient, *, penalty: float = -1.0, **options: Any) -> None:
        super().__init__(client, penalty=penalty, **options)

    def reward(self, videos: Sequence[Any], prompts: Sequence[Any], use_norm: bool = True,
               group_ids: Sequence[Any] | None = None) -> list[dict]:
        res = self.score(self._videos(videos), _keys(prompts, group_ids))
        overall = res.filled(self.penalty)
        dims = {d: res.dimension_filled(d, self.penalty) for d in DIMENSIONS}
        return [{**{d: float(dims[d][n]) for d in DIMENSIONS}, "Overall": float(overall[n]),
                 "ok": bool(res.ok[n]), "error": res.errors[n]} for n in range(len(overall))]

    def per_dimension(self, videos: Sequence[Any], prompts: Sequence[Any],
                      group_ids: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
        """{"VA": [B], "VF": [B], "VP": [B], "Overall": [B], "ok": [B]} arrays, for per-head advantages."""
        rows = self.reward(videos, prompts, group_ids=group_ids)
        return {k: np.asarray([r[k] for r in rows], dtype=np.float32 if k != "ok" else bool)
                for k in (*DIMENSIONS, "Overall", "ok")}
