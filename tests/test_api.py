"""The HTTP contract through the ASGI app with the real embedded model, real PyAV and real Redis."""

from __future__ import annotations

import asyncio
import base64

import pytest

from service.engine.aggregate import sigmoid
from service.contract import PairLogits
from tests.conftest import fresh_redis_db, metric_value, running_app, test_settings


@pytest.fixture(scope="module")
async def api(redis_url):
    # its own emptied Redis db: the assertions below need cache misses, whatever ran before
    async with running_app(test_settings(redis_url=fresh_redis_db(redis_url, 2))) as (client, app):
        yield client, app


def _files(**named):
    return {k: (f"{k}.mp4", v, "video/mp4") for k, v in named.items()}


async def test_live_ready_and_model_info_name_the_trained_checkpoint(api):
    client, _ = api
    assert (await client.get("/health/live")).json() == {"status": "live"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["model"]["trained"] is True
    info = (await client.get("/v1/model")).json()
    assert info["id"] == "aesrm-proxy" and info["backend"] == "embedded" and info["frames"] == 8
    assert "@" in info["checkpoint"]  # file name and hash of the weights that score


async def test_pair_prefers_clean_over_degraded_and_reports_everything(api, clips):
    client, _ = api
    r = await client.post("/v1/pair/upload", files=_files(a=clips["clean"], b=clips["noisy"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["preference"]["VF"] > 0.5 and body["preference"]["overall"] > 0.5
    assert set(body["preference"]) == {"VA", "VF", "VP", "overall"}
    assert body["both_orders"] is True
    assert set(body["order_disagreement"].values()) == {0.0}  # antisymmetric model: exactly, every dimension
    assert body["model"]["version"] and body["model"]["trained"] is True
    assert body["criteria"] and all(0 <= v <= 1 for v in body["criteria"].values())
    t = body["timings_ms"]
    assert t["total_ms"] >= t["decode_ms"] > 0 and t["inference_ms"] > 0
    for k in ("VA", "VF", "VP"):
        assert body["preference"][k] == pytest.approx(float(sigmoid(body["logits"][k])), abs=1e-6)


async def test_swapped_pair_is_the_complement_and_answered_from_cache(api, clips):
    client, app = api
    first = (await client.post("/v1/pair/upload", files=_files(a=clips["other"], b=clips["blurry"]))).json()
    assert first["cache"] == "miss"
    again = (await client.post("/v1/pair/upload", files=_files(a=clips["other"], b=clips["blurry"]))).json()
    swapped = (await client.post("/v1/pair/upload", files=_files(a=clips["blurry"], b=clips["other"]))).json()
    assert again["cache"] == "hit" and swapped["cache"] == "hit"
    assert again["timings_ms"]["decode_ms"] == 0  # a cache hit never decodes
    for k in ("VA", "VF", "VP", "overall"):
        assert again["preference"][k] == pytest.approx(first["preference"][k], abs=1e-6)
        assert swapped["preference"][k] == pytest.approx(1 - first["preference"][k], abs=1e-6)


async def test_single_order_request_served_from_both_order_entry(api, clips):
    client, _ = api
    both = (await client.post("/v1/pair/upload", files=_files(a=clips["vp9"], b=clips["dark"]))).json()
    single = (await client.post("/v1/pair/upload", data={"both_orders": "false"},
                                files=_files(a=clips["dark"], b=clips["vp9"]))).json()
    assert single["cache"] == "hit" and single["both_orders"] is False and single["order_disagreement"] is None
    assert single["preference"]["overall"] == pytest.approx(1 - both["preference"]["overall"], abs=1e-5)


async def test_json_base64_and_raw_tensor_inputs(api, clips):
    client, _ = api
    body = {"a": {"base64": base64.b64encode(clips["av1"]).decode()},
            "b": {"base64": base64.b64encode(clips["frames_npy"]).decode()}}
    r = await client.post("/v1/pair", json=body)
    assert r.status_code == 200, r.text
    assert 0 < r.json()["preference"]["overall"] < 1


async def test_group_scores_each_video_decoded_once_with_per_item_errors(api, clips):
    client, _ = api
    before = metric_value((await client.get("/metrics")).text, "aesrm_stage_duration_seconds_count",
                          stage="decode")
    vids = [clips["clean"], clips["noisy"], b"not a video at all", clips["blurry"], clips["dark"]]
    files = [("videos", (f"v{n}.mp4", v, "video/mp4")) for n, v in enumerate(vids)]
    r = await client.post("/v1/group/upload", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    res = body["results"]
    assert res[2]["error"]["code"] == "video_undecodable" and res[2]["reward"] is None
    scored = [x for x in res if x["error"] is None]
    assert len(scored) == 4 and all(x["reward"] is not None for x in scored)
    assert body["pairs_scored"] == 4 * 3  # C(4,2) pairs, both orders
    assert body["aggregation"] == "bradley_terry"
    assert sum(x["bradley_terry"] for x in scored) == pytest.approx(0.0, abs=1e-6)
    assert res[0]["reward"] == max(x["reward"] for x in scored)  # the clean clip wins
    assert [x["id"] for x in res] == [f"v{n}.mp4" for n in range(5)]
    after = metric_value((await client.get("/metrics")).text, "aesrm_stage_duration_seconds_count",
                         stage="decode")
    # 5 inputs, but clean/noisy were cached as a pair earlier: only videos in missing pairs decode,
    # and never more than once each
    assert after - before <= 5


async def test_group_duplicate_content_decoded_once(api, clips):
    client, _ = api
    fresh = [clips["vp9"] + b"", clips["av1"], clips["vp9"]]
    before = metric_value((await client.get("/metrics")).text, "aesrm_stage_duration_seconds_count",
                          stage="decode")
    files = [("videos", (f"d{n}.webm", v, "video/webm")) for n, v in enumerate(fresh)]
    r = await client.post("/v1/group/upload", files=files, data={"options": '{"aggregation": "win_rate"}'})
    assert r.status_code == 200, r.text
    after = metric_value((await client.get("/metrics")).text, "aesrm_stage_duration_seconds_count",
                         stage="decode")
    assert after - before <= 2
    res = r.json()["results"]
    assert res[0]["reward"] == pytest.approx(res[2]["reward"], abs=1e-6)  # same content, same reward
    assert r.json()["aggregation"] == "win_rate"


async def test_reference_mode_rewards_each_candidate_against_the_reference(api, clips):
    client, _ = api
    files = [("videos", ("a.mp4", clips["clean"], "video/mp4")), ("videos", ("b.mp4", clips["noisy"], "video/mp4")),
             ("reference", ("ref.mp4", clips["blurry"], "video/mp4"))]
    r = await client.post("/v1/group/upload", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["aggregation"] == "reference"
    for item in body["results"]:
        assert item["reward"] == pytest.approx(item["vs_reference"]["overall"])


@pytest.mark.parametrize("case,status,code", [
    ("empty", 400, "video_empty"),
    ("garbage", 422, "video_undecodable"),
    ("image", 422, "video_undecodable"),
    ("bad_npy", 422, "invalid_tensor"),
])
async def test_bad_upload_in_a_pair_is_a_4xx_with_its_code_and_side(api, clips, case, status, code):
    client, _ = api
    bad = {"empty": b"", "garbage": b"\x00" * 4096,
           "image": open("service/examples/path.jpg", "rb").read(),
           "bad_npy": b"\x93NUMPY\x01\x00garbage"}[case]
    r = await client.post("/v1/pair/upload", files=_files(a=clips["clean"], b=bad))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["item"] == "b"


async def test_malformed_json_inputs_are_422_or_refused_sources_with_codes(api, clips):
    client, _ = api
    cases = [
        ({"a": {"base64": "!!!"}, "b": {"base64": "AAAA"}}, 422, "invalid_request"),
        ({"a": {"path": "/etc/passwd"}, "b": {"path": "/etc/hosts"}}, 422, "unsupported_source"),
        ({"a": {"base64": "AAAA", "path": "/x"}, "b": {"base64": "AAAA"}}, 422, "invalid_request"),
        ({"a": {"base64": "AAAA"}}, 422, "invalid_request"),
    ]
    for body, status, code in cases:
        r = await client.post("/v1/pair", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
    r = await client.post("/v1/group", json={"videos": [{"base64": "AAAA"}]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "group_size"
    r = await client.post("/v1/group/upload", files=[("videos", ("x", b"junk", "video/mp4"))] * 2)
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_enough_valid_videos"
    r = await client.post("/v1/group/upload", files=[("videos", ("x", clips["clean"], "video/mp4"))] * 2,
                          data={"options": "{not json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert (await client.get("/v1/nope")).json()["error"]["code"] == "not_found"


async def test_path_inputs_under_allowed_root(redis_url, clips, tmp_path):
    (tmp_path / "a.mp4").write_bytes(clips["clean"])
    (tmp_path / "b.mp4").write_bytes(clips["dark"])
    async with running_app(test_settings(redis_url=redis_url, allowed_roots=[str(tmp_path)])) as (client, _):
        ok = await client.post("/v1/pair", json={"a": {"path": str(tmp_path / "a.mp4")},
                                                 "b": {"path": str(tmp_path / "b.mp4")}})
        assert ok.status_code == 200, ok.text
        bad = await client.post("/v1/pair", json={"a": {"path": str(tmp_path / ".." / "x.mp4")},
                                                  "b": {"path": str(tmp_path / "b.mp4")}})
        assert bad.status_code == 403 and bad.json()["error"]["code"] == "path_not_allowed"
        missing = await client.post("/v1/pair", json={"a": {"path": str(tmp_path / "nope.mp4")},
                                                      "b": {"path": str(tmp_path / "b.mp4")}})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "path_not_found"


async def test_limits_map_to_codes(clips):
    # fresh in-process cache: limits guard decoding, and a cache hit (already scored content) skips it
    settings = test_settings(redis_url=None, max_duration_s=1.0, max_video_bytes=200_000)
    async with running_app(settings) as (client, _):
        r = await client.post("/v1/pair/upload", files=_files(a=clips["vp9"], b=clips["av1"]))
        assert r.status_code == 422 and r.json()["error"]["code"] == "video_too_long"
        r = await client.post("/v1/pair/upload", files=_files(a=clips["clean"], b=clips["av1"]))
        assert r.status_code == 413 and r.json()["error"]["code"] == "video_too_large"
        metrics = (await client.get("/metrics")).text
        assert metric_value(metrics, "aesrm_errors_total", code="video_too_long") >= 1


class PositionBiased:
    """A real backend wrapped to add a first-position bonus, as VLM judges have: the gateway's
    both-order mode must cancel it exactly and report the disagreement."""

    def __init__(self, inner, bias: float):
        self.inner, self.bias, self.name = inner, bias, "biased"

    async def start(self):
        await self.inner.start()

    async def close(self):
        await self.inner.close()

    def contract(self):
        return self.inner.contract()

    async def ready(self):
        return await self.inner.ready()

    async def score(self, videos, pairs):
        out = await self.inner.score(videos, pairs)
        return PairLogits(out.dimension + self.bias, out.criteria, out.timing)


async def test_both_orders_cancel_position_bias(clips):
    from service.backends.embedded import EmbeddedBackend
    from service.metrics import Metrics

    files = _files(a=clips["clean"], b=clips["blurry"])
    async with running_app(test_settings()) as (client, _):
        plain = (await client.post("/v1/pair/upload", files=files)).json()
    settings = test_settings()
    async with running_app(settings, PositionBiased(EmbeddedBackend(settings, Metrics()), 1.0)) as (client, _):
        both = (await client.post("/v1/pair/upload", files=files)).json()
        single = (await client.post("/v1/pair/upload", files=files, data={"both_orders": "false"})).json()
    for k in ("VA", "VF", "VP"):
        assert both["logits"][k] == pytest.approx(plain["logits"][k], abs=1e-4)
        assert single["logits"][k] == pytest.approx(plain["logits"][k] + 1.0, abs=1e-4)
        l_ab, l_ba = plain["logits"][k] + 1.0, -plain["logits"][k] + 1.0
        expected = abs(float(sigmoid(l_ab)) - (1 - float(sigmoid(l_ba))))
        assert both["order_disagreement"][k] == pytest.approx(expected, abs=1e-4)


async def test_concurrent_requests_are_micro_batched(redis_url, clips):
    settings = test_settings(max_batch_wait_ms=50.0)
    async with running_app(settings) as (client, _):
        pairs = [("clean", "noisy"), ("other", "dark"), ("vp9", "av1"), ("blurry", "clean")]
        rs = await asyncio.gather(*(client.post("/v1/pair/upload", files=_files(a=clips[a], b=clips[b]))
                                    for a, b in pairs))
        assert all(r.status_code == 200 for r in rs)
        text = (await client.get("/metrics")).text
        forwards = metric_value(text, "aesrm_batch_size_count")
        videos = metric_value(text, "aesrm_batch_size_sum")
        assert videos == 8 and forwards < 4  # several requests shared a forward pass
