"""Client SDK: sync client against a real uvicorn server, async client in-process, retry semantics on a
scripted transport, and the GRPO reward function."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.client import AesRMClient, AesRMError, AsyncAesRMClient, RetryPolicy, ServerPath, in_process
from service.client.grpo import group_rewards
from service.client.trainers import AesRMReward
from service.schemas import GroupResponse, PairResponse
from tests.conftest import running_app, test_settings
from tests.server_process import gateway

CHECKPOINT = Path(__file__).resolve().parents[1] / "service/model/checkpoints/aesrm-proxy-v2.pt"
UNTRAINED = not CHECKPOINT.exists()  # until the trained checkpoint lands: run untrained, assert no quality


@contextlib.contextmanager
def serve(redis_url: str | None = None, **env_overrides: str):
    """A real `python -m service.api.app` on a free port; yields its base URL (shared by test_cli/test_web)."""
    env = dict(env_overrides)
    if redis_url:
        env["AESRM_REDIS_URL"] = redis_url
    if UNTRAINED:
        env["AESRM_ALLOW_UNTRAINED"] = "true"
    with tempfile.TemporaryDirectory() as logs, gateway(Path(logs), **env) as (base, _, _):
        yield base


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("renders")


@pytest.fixture(scope="module")
def server(redis_url, roots):
    with serve(redis_url, AESRM_ALLOWED_ROOTS=f'["{roots}"]') as base:
        yield base


def _frames(npy: bytes) -> np.ndarray:
    return np.load(io.BytesIO(npy), allow_pickle=False)


def test_sync_pair_with_path_bytes_and_typed_result(server, clips, tmp_path):
    a = tmp_path / "clean.mp4"
    a.write_bytes(clips["clean"])
    with AesRMClient(server) as c:
        assert c.ready()
        r = c.pair(a, clips["blurry"])
        swapped = c.pair(clips["blurry"], a, both_orders=True)
        info = c.model()
    assert isinstance(r, PairResponse) and set(r.preference.model_dump()) == {"VA", "VF", "VP", "overall"}
    assert all(0.0 <= v <= 1.0 for v in r.preference.model_dump().values())
    assert swapped.preference.overall == pytest.approx(1 - r.preference.overall, abs=1e-4)
    assert swapped.cache == "hit"
    assert info.frames == r.model.frames and info.trained is (not UNTRAINED)
    if not UNTRAINED:
        assert r.preference.overall > 0.5


def test_sync_group_numpy_frames_ids_and_per_item_error(server, clips):
    frames = _frames(clips["frames_npy"])
    with AesRMClient(server) as c:
        g = c.group([clips["clean"], frames, b"not a video at all", clips["noisy"]],
                    ids=["clean", "frames", "broken", "noisy"], aggregation="win_rate")
    assert isinstance(g, GroupResponse) and g.aggregation == "win_rate"
    assert [x.id for x in g.results] == ["clean", "frames", "broken", "noisy"]
    bad = g.results[2]
    assert bad.reward is None and bad.error is not None and bad.error.code == "video_undecodable"
    assert all(x.error is None and 0.0 <= x.reward <= 1.0 for n, x in enumerate(g.results) if n != 2)
    assert g.pairs_scored == 3 * 2  # 3 valid videos, both orders


def test_server_paths_go_through_json_route(server, clips, roots):
    (roots / "a.mp4").write_bytes(clips["clean"])
    (roots / "b.webm").write_bytes(clips["vp9"])
    with AesRMClient(server) as c:
        r = c.pair(ServerPath(str(roots / "a.mp4")), clips["dark"])  # mixed: path + base64
        g = c.group([ServerPath(str(roots / "a.mp4")), ServerPath(str(roots / "b.webm")),
                     ServerPath(str(roots / "missing.mp4"))])
        with pytest.raises(AesRMError) as exc:
            c.pair(ServerPath("/etc/passwd"), clips["clean"])
    assert 0 <= r.preference.overall <= 1
    assert g.results[2].error.code == "path_not_found" and g.results[0].reward is not None
    assert exc.value.status == 403 and exc.value.code == "path_not_allowed" and not exc.value.transient


def test_input_validation_happens_client_side():
    c = AesRMClient("http://127.0.0.1:9")
    with pytest.raises(TypeError, match="ServerPath"):
        c.pair("some/file.mp4", b"x")
    with pytest.raises(ValueError, match="uint8"):
        c.pair(np.zeros((2, 4, 4, 3), np.float32), b"x")
    with pytest.raises(ValueError, match="ids"):
        c.group([b"a", b"b"], ids=["only-one"])


# ---------------------------------------------------------------- retries on a scripted transport

def _scripted(responses: list):
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        item = responses[min(len(calls) - 1, len(responses) - 1)]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, calls


def _err(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)


def _fake_pair_body() -> dict:
    d = {"VA": 0.6, "VF": 0.7, "VP": 0.5, "overall": 0.6}
    return {"preference": d, "logits": d, "both_orders": True, "cache": "miss",
            "model": {"id": "m", "version": "1", "checkpoint": "x", "trained": False, "backend": "embedded",
                      "frames": 8, "height": 64, "width": 64}, "timings_ms": {}}


@pytest.mark.parametrize("first", [_err(503, "backend_unavailable", "1"), _err(429, "overloaded", "2"),
                                   _err(504, "backend_timeout"), httpx.ConnectError("refused")])
def test_transient_errors_are_retried_honouring_retry_after(first, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("service.client.sdk.time.sleep", slept.append)
    handler, calls = _scripted([first, httpx.Response(200, json=_fake_pair_body())])
    with AesRMClient("http://x", transport=httpx.MockTransport(handler)) as c:
        r = c.pair(b"a", b"b")
    assert r.preference.VF == 0.7 and len(calls) == 2
    ra = first.headers.get("Retry-After") if isinstance(first, httpx.Response) else None
    if ra:
        assert slept == [float(ra)]
    else:
        assert len(slept) == 1 and 0 < slept[0] <= 0.25
    strip = [r.content.replace(r.headers["content-type"].split("boundary=")[1].encode(), b"") for r in calls]
    assert strip[0] == strip[1] and b"a" in strip[0]  # the same multipart body is re-sent


@pytest.mark.parametrize("resp,code", [(_err(422, "video_undecodable"), "video_undecodable"),
                                       (_err(413, "video_too_large"), "video_too_large"),
                                       (_err(429, "rate_limited", "5"), "rate_limited"),
                                       (_err(401, "unauthorized"), "unauthorized"),
                                       (httpx.Response(502, text="bad gateway"), "http_502")])
def test_input_errors_are_never_retried(resp, code, monkeypatch):
    monkeypatch.setattr("service.client.sdk.time.sleep", lambda s: pytest.fail("slept"))
    handler, calls = _scripted([resp])
    with AesRMClient("http://x", transport=httpx.MockTransport(handler)) as c, pytest.raises(AesRMError) as e:
        c.group([b"a", b"b"])
    assert len(calls) == 1 and e.value.code == code and e.value.status == resp.status_code


def test_retries_are_bounded_and_api_key_is_sent(monkeypatch):
    monkeypatch.setattr("service.client.sdk.time.sleep", lambda s: None)
    handler, calls = _scripted([_err(503, "backend_unavailable", "1")])
    c = AesRMClient("http://x", api_key="s3cret", retry=RetryPolicy(attempts=3),
                    transport=httpx.MockTransport(handler))
    with pytest.raises(AesRMError) as e:
        c.model()
    assert len(calls) == 3 and e.value.transient and e.value.retry_after == 1.0
    assert calls[0].headers["Authorization"] == "Bearer s3cret"


async def test_async_client_retries_with_asyncio_sleep(monkeypatch):
    slept: list[float] = []

    async def fake_sleep(s):
        slept.append(s)

    monkeypatch.setattr("service.client.sdk.asyncio.sleep", fake_sleep)
    handler, calls = _scripted([httpx.ReadTimeout("slow"), _err(422, "invalid_tensor")])
    async with AsyncAesRMClient("http://x", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(AesRMError, match="invalid_tensor"):
            await c.pair(np.zeros((2, 8, 8, 3), np.uint8), b"b")
    assert len(calls) == 2 and len(slept) == 1
    assert b"\x93NUMPY" in calls[0].content  # frames travel as raw .npy


# ---------------------------------------------------------------- async, in-process

async def test_async_client_over_asgi_and_in_process_helper(clips):
    settings = test_settings(allow_untrained=UNTRAINED)
    async with running_app(settings) as (_, app):
        async with AsyncAesRMClient("http://t", transport=httpx.ASGITransport(app=app)) as c:
            r = await c.pair(clips["clean"], _frames(clips["frames_npy"]))
            g = await c.group([clips["clean"], clips["noisy"], clips["dark"]], reference=clips["blurry"])
    assert 0 <= r.preference.overall <= 1
    assert g.aggregation == "reference" and all(x.vs_reference is not None for x in g.results)
    async with in_process(settings) as c:
        assert (await c.model()).backend == "embedded"


# ---------------------------------------------------------------- GRPO reward function

def test_group_rewards_penalise_broken_items_and_trl_adapter(server, clips):
    frames = _frames(clips["frames_npy"])
    with AesRMClient(server) as c:
        rewards = group_rewards(c, [clips["clean"], b"\x00broken", frames], penalty=-5.0)
        all_bad = group_rewards(c, [b"junk", b"junk2"], penalty=-2.0)
        fn = AesRMReward(c, penalty=-9.0, aggregation="win_rate", video_key="videos")
        prompts = ["a cat", "a cat", "a cat", "a dog", "a dog"]
        out = fn(prompts, completions=["<video>"] * 5,
                 videos=[clips["clean"], clips["noisy"], b"", clips["dark"], frames])
    assert rewards[1] == -5.0 and all(isinstance(x, float) and x != -5.0 for x in (rewards[0], rewards[2]))
    assert all_bad == [-2.0, -2.0]
    assert fn.__name__ == "aesrm" and len(out) == 5 and out[2] == -9.0
    assert all(0.0 <= x <= 1.0 for n, x in enumerate(out) if n != 2)
    # groups are scored separately: win rates within the two-video "a dog" group sum to 1
    assert out[3] + out[4] == pytest.approx(1.0, abs=1e-6)


def test_explain_submit_poll_and_events(server, clips):
    if "/v1/explain" not in httpx.get(server + "/openapi.json").json()["paths"]:
        pytest.skip("explain routes not in this build yet")
    with AesRMClient(server) as c:
        info = c.explain(clips["clean"], clips["noisy"], timeout=120, poll_s=0.2)
        again = c.explain_submit(clips["clean"], clips["noisy"])
        events = list(c.explain_events(again.job_id))
        with pytest.raises(AesRMError) as exc:
            c.explain_status("0" * 32)  # well formed, never issued (malformed ids are 422)
    assert info.status == "succeeded" and info.result is not None
    assert set(info.result.dimensions) == {"VA", "VF", "VP"} and info.result.reasoning
    assert info.result.overall.verdict in ("A", "B", "tie")
    kinds = [k for k, _ in events]
    assert kinds[-1] == "end" and "result" in kinds and events[-1][1]["status"] == "succeeded"
    assert exc.value.status == 404 and not exc.value.transient
