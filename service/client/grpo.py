"""GRPO reward functions on the AesRM service.

Why: a GRPO trainer needs one float per sampled video, computed *within* the group of G samples of the
same prompt (group-relative advantages), and must never crash or silently skip because one render is
broken. ``group_rewards`` scores one group with ``/v1/group`` (Bradley-Terry by default, both orders) and
maps an errored item to ``penalty``; ``AesRMReward`` adapts that to TRL's ``reward_funcs`` signature.

Example (TRL-style trainer; any trainer that calls ``f(prompts, completions, **kw) -> list[float]``)::

    from service.client import AesRMClient
    from service.client.grpo import AesRMReward

    client = AesRMClient("http://aesrm:8000", api_key=os.environ.get("AESRM_API_KEY"))
    reward = AesRMReward(client, penalty=-3.0, video_key="videos")   # videos passed in **kwargs
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=GRPOConfig(num_generations=8), ...)

    # or directly, for one prompt's G samples (uint8 [T,H,W,3] arrays, Paths or encoded bytes):
    rewards = group_rewards(client, [frames_0, frames_1, ..., frames_7])

Consecutive samples with the same prompt form a group (the order in which GRPO samplers emit them).
Keep whole groups on one worker (per-device batch a multiple of G), or use ``reference=`` mode, where
each sample is scored against a fixed reference and the group need not be complete.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from service.client.sdk import AesRMClient, AesRMError, VideoInput

# Fewer than two decodable videos: every item gets the penalty instead of failing the training step.
# Other whole-request errors (bad reference, group too large, auth) are the caller's bug and raise.
GROUP_LEVEL_INPUT_ERRORS = frozenset({"not_enough_valid_videos"})


def group_rewards(client: AesRMClient, videos: Sequence[VideoInput], *, penalty: float = -1.0,
                  aggregation: str = "bradley_terry", reference: VideoInput | None = None,
                  both_orders: bool | None = None) -> list[float]:
    """One reward per video of a group; errored (undecodable, invalid) items get ``penalty``.

    Transient failures are retried by the client; if the service stays down this raises ``AesRMError``
    (a training step should stop rather than train on made-up rewards).
    """
    if len(videos) == 0:
        return []
    if len(videos) == 1 and reference is None:
        return [0.0]  # a group of one has no relative signal
    try:
        res = client.group(videos, reference=reference, aggregation=aggregation, both_orders=both_orders)
    except AesRMError as exc:
        if exc.code in GROUP_LEVEL_INPUT_ERRORS:
            return [float(penalty)] * len(videos)
        raise
    out = [float(penalty)] * len(videos)
    for item in res.results:
        if item.error is None and item.reward is not None and math.isfinite(item.reward):
            out[item.index] = float(item.reward)
    return out


class AesRMReward:
    """TRL ``reward_funcs`` callable: ``reward(prompts, completions, **kwargs) -> list[float]``.

    Videos are taken from ``kwargs[video_key]`` if given (trainers pass extra dataset/generation columns
    there), else from ``completions``; ``to_video`` converts one such entry to a ``VideoInput``.
    """

    def __init__(self, client: AesRMClient, *, penalty: float = -1.0, aggregation: str = "bradley_terry",
                 video_key: str | None = None, reference_key: str | None = None,
                 to_video: Callable[[Any], VideoInput] | None = None, name: str = "aesrm") -> None:
        self.client, self.penalty, self.aggregation = client, penalty, aggregation
        self.video_key, self.reference_key, self.to_video = video_key, reference_key, to_video
        self.__name__ = name  # trainers log reward columns under the function's __name__

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any] | None = None,
                 **kwargs: Any) -> list[float]:
        items = kwargs[self.video_key] if self.video_key else completions
        if items is None or len(items) != len(prompts):
            raise ValueError("need one video per prompt entry")
        videos = [self.to_video(v) if self.to_video else v for v in items]
        refs = kwargs.get(self.reference_key) if self.reference_key else None
        rewards: list[float] = []
        for start, stop in _runs(prompts):
            ref = refs[start] if refs is not None else None
            rewards += group_rewards(self.client, videos[start:stop], penalty=self.penalty,
                                     aggregation=self.aggregation, reference=ref)
        return rewards


def _runs(prompts: Sequence[Any]) -> list[tuple[int, int]]:
    """[start, stop) of each run of equal consecutive prompts (chat prompts compare by value)."""
    runs, start = [], 0
    for n in range(1, len(prompts) + 1):
        if n == len(prompts) or repr(prompts[n]) != repr(prompts[start]):
            runs.append((start, n))
            start = n
    return runs
