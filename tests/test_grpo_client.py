"""GRPO client: grouping by prompt identity on any sampler layout, explicit errors instead of made-up
rewards, client-side frame preparation, and each trainer adapter in its trainer's exact call shape."""

from __future__ import annotations

import hashlib

import httpx
import numpy as np
import pytest
import torch

from service.client import AesRMClient, AsyncAesRMClient
from service.client.frames import RESAMPLE_TOLERANCE, Contract, npy_bytes, prepare
from service.client.grpo import GroupScorer, group_key, group_rewards, score_batch
from service.client.trainers import (DEFAULT_PENALTY, AesRMReward, AesRMRewardManager, AsyncAesRMReward,
                                     DanceGRPOReward, FlowGRPOScorer)
from service.examples import degrade, pan_frames, photo
from service.ingest.sources import tensor_sample
from tests.conftest import running_app, test_settings
from tests.test_client import serve

CONTRACT = Contract(8, 128, 128)  # a whole-frame-only model: frames resized on the worker


def _served_contract() -> Contract:
    """What GET /v1/model publishes for the shipped checkpoint (2.2.0: whole frames + fragments)."""
    import json

    from service.model.checkpoint import DEFAULT_CHECKPOINT, manifest_path

    m = json.loads(manifest_path(DEFAULT_CHECKPOINT).read_text())
    return Contract(m["frames"], m["height"], m["width"], tuple(m.get("views", "frames:letterbox").split(",")))


SERVED = _served_contract()


@pytest.fixture(scope="module")
def server(redis_url):
    with serve(redis_url) as base:
        yield base


@pytest.fixture(scope="module")
def renders() -> list[np.ndarray]:
    """Eight 'generated' clips, uint8 THWC: two prompts x four samples of graded quality."""
    a = pan_frames(photo("bythewater"), 17, 240, 136)
    b = pan_frames(photo("colorfulcups"), 17, 240, 136)
    return [a, degrade(a, "noise", 0.5), degrade(a, "blur", 0.8), degrade(a, "dark", 0.6),
            b, degrade(b, "noise", 0.9), degrade(b, "blur", 0.4), degrade(b, "flicker", 0.8)]


def _group(client: AesRMClient, videos: list[np.ndarray], **kw) -> list[float]:
    res = client.group([prepare(v, SERVED) for v in videos], **kw)
    return [x.reward for x in res.results]


def test_interleaved_batch_gets_the_rewards_of_its_prompt_groups(server, renders):
    order = [0, 4, 1, 5, 2, 6, 3, 7]  # Flow-GRPO-like interleaving: p0, p1, p0, p1, ...
    prompts = ["a lake" if n < 4 else "cups" for n in order]
    with AesRMClient(server) as c:
        got = score_batch(c, [renders[n] for n in order], prompts)
        lake, cups = _group(c, renders[:4]), _group(c, renders[4:])
    assert got.ok.all() and got.calls == 1
    expect = {n: r for n, r in zip(range(8), lake + cups)}
    np.testing.assert_allclose(got.rewards, [expect[n] for n in order], rtol=1e-9, atol=1e-9)
    assert np.abs(got.rewards).min() > 1e-3  # real rewards, none of them a placeholder


async def test_permuted_batch_gives_permuted_rewards_bit_for_bit(renders):
    """Two fresh apps (cold caches): the permuted batch is really re-scored, not read from the cache."""
    prompts = ["p0", "p1"] * 4
    perm = np.random.default_rng(7).permutation(8)
    out = []
    for videos, ps in ((renders, prompts), ([renders[n] for n in perm], [prompts[n] for n in perm])):
        async with running_app(test_settings()) as (_, app):
            async with AsyncAesRMClient("http://t", transport=httpx.ASGITransport(app=app)) as c:
                out.append(await GroupScorer(c).ascore(videos, [group_key(p) for p in ps]))
    assert out[0].ok.all()
    assert np.array_equal(out[1].rewards, out[0].rewards[perm])
    for d in ("VA", "VF", "VP"):
        assert np.array_equal(out[1].dimensions[d], out[0].dimensions[d][perm])


def test_group_of_one_and_broken_renders_are_flagged_never_given_a_made_up_reward(server, renders):
    prompts = ["x", "x", "x", "lonely"]
    videos = [renders[0], renders[1], b"\x00 not a video", renders[2]]
    with AesRMClient(server) as c:
        res = score_batch(c, videos, prompts)
        trl = AesRMReward(c)(prompts, completions=videos)
        flow, meta = FlowGRPOScorer(c)(videos, prompts, [{}] * 4)
        with pytest.raises(ValueError, match="reference"):
            group_rewards(c, [renders[0]])
    assert res.ok.tolist() == [True, True, False, False]
    assert res.errors[2] == "video_undecodable" and res.errors[3] == "group_size"
    assert np.isnan(res.rewards[2:]).all() and res.error_rate == 0.5
    assert trl[2] is None and trl[3] is None and trl[0] == pytest.approx(-trl[1])  # TRL: not applicable
    assert flow["aesrm_ok"].tolist() == [1, 1, 0, 0] and flow["avg"][3] == DEFAULT_PENALTY["bradley_terry"]
    assert meta["errors"] == [None, None, "video_undecodable", "group_size"]


def test_reference_mode_scores_a_lone_sample_against_the_reference(server, renders):
    with AesRMClient(server) as c:
        got = score_batch(c, [renders[1], renders[5]], ["a", "b"], reference=renders[0])
        direct = _group(c, [renders[1]], reference=prepare(renders[0], SERVED))
    assert got.ok.all() and got.rewards[0] == pytest.approx(direct[0], abs=1e-12)
    assert all(0.0 < r < 1.0 for r in got.rewards)  # P(sample > reference)


def test_prepare_takes_any_layout_dtype_and_torch_and_matches_the_servers_pixels(renders):
    v = pan_frames(photo("path"), 33, 320, 184)  # uint8 THWC
    server = tensor_sample(npy_bytes(v), 8, 128, 128, 10**9, 10**6)  # what the server feeds the model
    f01 = torch.from_numpy(v).float() / 255.0
    cases = {
        "uint8 THWC numpy": prepare(v, CONTRACT),
        "float[0,1] TCHW torch": prepare(f01.permute(0, 3, 1, 2), CONTRACT),
        "float[-1,1] CTHW torch": prepare((f01 * 2 - 1).permute(3, 0, 1, 2), CONTRACT),
        "bfloat16 TCHW torch": prepare(f01.permute(0, 3, 1, 2).to(torch.bfloat16), CONTRACT),
        "float64 THWC numpy": prepare(v / 255.0, CONTRACT, value_range="0,1"),
    }
    for name, got in cases.items():
        assert got.shape == (8, 128, 128, 3) and got.dtype == np.uint8, name
        assert np.abs(got.astype(int) - server.astype(int)).max() <= (2 if "bfloat16" in name else 0), name
    with pytest.raises(ValueError, match="layout"):
        prepare(np.zeros((3, 3, 64, 3), np.uint8), CONTRACT)  # T == C == 3: ambiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_float_frames_become_the_pixels_of_the_plain_whole_clip_formula(dtype):
    """to_uint8 works frame by frame in one reused buffer (whole-clip temporaries page-faulted 38 MB per
    step): every pixel equals the plain formula, half-level boundaries and both value ranges included, and
    NaN / inf / values beyond float32 are refused."""
    from service.client.frames import to_uint8

    rng = np.random.default_rng(1)
    for lo, rng_name in ((0.0, "0,1"), (-1.0, "-1,1")):
        x = rng.uniform(lo - 0.1 if lo < 0 else 0.0, 1.1, (5, 24, 32, 3)).astype(dtype)  # "auto" sees the range
        x.flat[:512] = (np.arange(512) / 510.0 * (1 - lo) + lo).astype(dtype)  # every half level
        ref = x.astype(np.float32)
        if lo < 0:
            ref = (ref + 1.0) * 0.5
        ref = np.clip(np.rint(ref * 255.0), 0, 255).astype(np.uint8)
        assert np.array_equal(to_uint8(x, "auto"), ref) and np.array_equal(to_uint8(x, rng_name), ref)
    for bad in (np.nan, np.inf, -np.inf) + ((1e300,) if dtype == np.float64 else ()):
        x = np.zeros((2, 4, 4, 3), dtype)
        x[1, 2, 3, 0] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            to_uint8(x)


async def test_numpy_resampler_agrees_with_swscale_within_the_documented_tolerance(renders):
    """The shipped model's views prepared with either resampler (only the whole-frame view is resampled;
    fragments are exact crops) give rewards within RESAMPLE_TOLERANCE."""
    sw = [prepare(v, SERVED, resampler="swscale") for v in renders[:4]]
    npy = [prepare(v, SERVED, resampler="numpy") for v in renders[:4]]
    frames = lambda p: p["frames"] if isinstance(p, dict) else p  # noqa: E731
    diff = np.abs(np.stack([frames(p) for p in sw]).astype(int) - np.stack([frames(p) for p in npy]).astype(int))
    assert diff.max() <= 4 and diff.mean() < 1.0
    async with running_app(test_settings()) as (_, app):
        async with AsyncAesRMClient("http://t", transport=httpx.ASGITransport(app=app)) as c:
            a = await c.group(sw, aggregation="win_rate")
            b = await c.group(npy, aggregation="win_rate")
    ra, rb = [x.reward for x in a.results], [x.reward for x in b.results]
    assert np.max(np.abs(np.subtract(ra, rb))) <= RESAMPLE_TOLERANCE
    assert np.argsort(ra).tolist() == np.argsort(rb).tolist()


def test_81_frame_480p_float_clip_goes_out_under_1_mb(server):
    clip = pan_frames(photo("bythewater"), 81, 832, 480)
    video = torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(255.0)  # Wan-like float TCHW
    full_npy = len(npy_bytes(clip))
    with AesRMClient(server) as c:
        res = score_batch(c, [video, video.flip(-1)], ["p", "p"])
    assert res.ok.all() and res.calls == 1
    assert res.request_bytes / 2 <= 1_000_000 and full_npy > 90_000_000  # per video vs the full uint8 .npy


def test_flow_grpo_scorer_call_shape_float_video_batch_and_prompt_ids(server, renders):
    """Flow-GRPO's reward_fn(images, prompts, metadata, only_strict) -> (dict, meta); videos as the
    pipeline's float [B, T, C, H, W] tensor; the group id comes from metadata."""
    order = [4, 0, 5, 1, 6, 2, 7, 3]
    batch = torch.stack([torch.from_numpy(renders[n]).permute(0, 3, 1, 2) for n in order]).float() / 255.0
    meta = [{"prompt_id": 0 if n < 4 else 1} for n in order]
    prompts = ["same text for all"] * 8  # only the ids tell the groups apart
    with AesRMClient(server) as c:
        fn = FlowGRPOScorer(c, group_key="prompt_id")
        rewards, info = fn.submit(batch, prompts, meta, only_strict=True).result()
        lake, cups = _group(c, renders[:4]), _group(c, renders[4:])
    expect = dict(zip(range(8), lake + cups))
    assert set(rewards) == {"avg", "aesrm", "aesrm_ok", "aesrm_VA", "aesrm_VF", "aesrm_VP"}
    assert all(isinstance(v, np.ndarray) and v.shape == (8,) for v in rewards.values())
    np.testing.assert_allclose(rewards["avg"], [expect[n] for n in order], rtol=1e-5, atol=1e-5)
    assert info["errors"] == [None] * 8


class DataProto:
    """verl's DataProto fields as its reward managers read them (verl itself - ray, vLLM - is not
    installable on this CPU box): batch tensors and numpy object arrays in non_tensor_batch."""

    def __init__(self, batch: dict, non_tensor_batch: dict) -> None:
        self.batch, self.non_tensor_batch = batch, non_tensor_batch

    def __len__(self) -> int:
        return len(self.batch["responses"])


def test_verl_reward_manager_groups_by_uid_and_rewards_the_last_response_token(server, renders):
    order = [0, 4, 1, 5, 2, 6, 3, 7]
    uids = np.array(["u-lake" if n < 4 else "u-cups" for n in order], dtype=object)
    videos = np.empty(8, dtype=object)
    videos[:] = [renders[n] for n in order]
    lengths = torch.tensor([3, 5, 2, 6, 4, 1, 6, 5])
    mask = torch.cat([torch.ones(8, 4, dtype=torch.long),
                      (torch.arange(6)[None, :] < lengths[:, None]).long()], dim=1)
    data = DataProto({"prompts": torch.zeros(8, 4, dtype=torch.long), "responses": torch.zeros(8, 6, dtype=torch.long),
                      "attention_mask": mask}, {"uid": uids, "videos": videos})
    with AesRMClient(server) as c:
        out = AesRMRewardManager(None, 0, client=c)(data, return_dict=True)
        lake, cups = _group(c, renders[:4]), _group(c, renders[4:])
    expect = dict(zip(range(8), lake + cups))
    t = out["reward_tensor"]
    assert t.shape == (8, 6) and t.dtype == torch.float32
    for i, n in enumerate(order):
        assert t[i, lengths[i] - 1].item() == pytest.approx(expect[n], abs=1e-5)
        assert t[i].abs().sum().item() == pytest.approx(abs(expect[n]), abs=1e-5)  # nowhere else
    assert out["reward_extra_info"]["aesrm_ok"] == [1.0] * 8 and len(out["reward_extra_info"]["aesrm_VF"]) == 8


def test_dancegrpo_per_dimension_rewards_one_video_per_call_in_reference_mode(server, renders):
    with AesRMClient(server) as c:
        fn = DanceGRPOReward(c, reference=renders[0])
        one = fn.reward([renders[1]], ["a lake"], use_norm=True)  # DanceGRPO's per-video call
        heads = fn.per_dimension(renders[1:4], ["a lake"] * 3)
        direct = c.group([prepare(renders[1], SERVED)], reference=prepare(renders[0], SERVED)).results[0]
    assert set(one[0]) == {"VA", "VF", "VP", "Overall", "ok", "error"} and one[0]["ok"]
    assert one[0]["VF"] == pytest.approx(direct.vs_reference.VF) and one[0]["Overall"] == pytest.approx(direct.reward)
    assert heads["VF"].shape == (3,) and heads["ok"].all() and heads["VF"][0] == pytest.approx(one[0]["VF"])


async def test_trl_async_reward_function_form_is_awaited_and_grouped(renders):
    from trl.trainer.utils import is_async_callable

    async with running_app(test_settings()) as (_, app):
        async with AsyncAesRMClient("http://t", transport=httpx.ASGITransport(app=app)) as c:
            fn = AsyncAesRMReward(c, video_key="video", max_videos_per_call=4)  # 2 requests in flight
            prompts = ["lake", "cups"] * 4
            got = await fn(prompts, completions=["<v>"] * 8, video=[renders[n] for n in [0, 4, 1, 5, 2, 6, 3, 7]])
    assert is_async_callable(fn) and len(got) == 8 and all(isinstance(x, float) for x in got)
    assert sum(got[0::2]) == pytest.approx(0.0, abs=1e-6) and sum(got[1::2]) == pytest.approx(0.0, abs=1e-6)


def test_group_keys_are_stable_and_explicit_ids_win():
    chat = [{"role": "user", "content": "a cat"}]
    assert group_key(chat) == group_key([{"content": "a cat", "role": "user"}])
    assert group_key("a cat") != group_key("a dog") and group_key("a cat", 7) == group_key("a dog", 7)
    assert group_key("a cat") == "p:" + hashlib.blake2b(b"a cat", digest_size=12).hexdigest()  # not hash()


def test_grpo_client_modules_import_no_server_dependency_or_torch():
    import subprocess
    import sys

    code = ("import service.client.grpo, service.client.trainers, service.client.dist, service.client.frames, sys;"
            "print(' '.join(sys.modules))")
    mods = {m.split(".")[0] for m in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                    check=True).stdout.split()}
    assert not mods & {"av", "torch", "tritonclient", "redis", "fastapi", "starlette", "uvicorn", "trl"}
