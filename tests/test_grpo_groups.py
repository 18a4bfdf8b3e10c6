"""POST /v1/groups: several prompt groups per request, one pipeline run (one backend forward) across them,
errors per item and per group, and the RL reward histograms in /metrics."""

from __future__ import annotations

import base64
import json

import pytest

from service.metrics import Metrics
from tests.conftest import metric_value, running_app, test_settings
from tests.fakes import FakeBackend


def b64(data: bytes) -> dict:
    return {"base64": base64.b64encode(data).decode()}


async def test_groups_scores_every_group_like_v1_group_in_one_backend_forward(clips):
    settings = test_settings()
    backend = FakeBackend(settings, Metrics())
    groups = [["clean", "noisy", "dark"], ["other", "blurry", "vp9", "av1"], ["dark", "clean"]]
    async with running_app(settings, backend) as (client, _):
        r = await client.post("/v1/groups", json={"groups": [
            {"id": f"p{k}", "videos": [b64(clips[n]) for n in names]} for k, names in enumerate(groups)]})
        forwards = backend.forwards
        singles = [(await client.post("/v1/group", json={"videos": [b64(clips[n]) for n in names]})).json()
                   for names in groups]
    assert r.status_code == 200, r.text
    body = r.json()
    assert forwards == 1  # 9 distinct videos, 3 + 6 + 1 pairs, one batch
    assert [g["id"] for g in body["groups"]] == ["p0", "p1", "p2"]
    assert body["videos"] == 9 and body["pairs_scored"] == (3 + 6 + 1) * 2 and body["cache_misses"] == 10
    for g, single in zip(body["groups"], singles):
        assert g["error"] is None and g["aggregation"] == "bradley_terry"
        assert [x["reward"] for x in g["results"]] == [x["reward"] for x in single["results"]]


async def test_groups_errors_stay_on_their_item_or_group(clips):
    async with running_app(test_settings()) as (client, _):
        r = await client.post("/v1/groups", json={"groups": [
            {"id": "ok", "videos": [b64(clips["clean"]), b64(b"not a video"), b64(clips["noisy"])]},
            {"id": "alone", "videos": [b64(clips["dark"])]},
            {"id": "all-broken", "videos": [b64(b"junk"), b64(b"junk2")]},
            {"id": "bad-ref", "videos": [b64(clips["clean"])], "reference": b64(b"junk")},
            {"id": "ref", "videos": [b64(clips["clean"]), b64(clips["dark"])], "reference": b64(clips["blurry"])},
        ], "aggregation": "win_rate"})
    assert r.status_code == 200, r.text
    g = {x["id"]: x for x in r.json()["groups"]}
    assert g["ok"]["results"][1]["error"]["code"] == "video_undecodable"
    assert g["ok"]["results"][0]["reward"] + g["ok"]["results"][2]["reward"] == pytest.approx(1.0)  # win rate
    assert g["alone"]["error"]["code"] == "group_size" and g["alone"]["results"] == []
    assert g["all-broken"]["error"]["code"] == "not_enough_valid_videos"
    assert g["bad-ref"]["error"]["code"] == "video_undecodable" and g["bad-ref"]["aggregation"] == "reference"
    assert g["ref"]["aggregation"] == "reference" and all(0 < x["reward"] < 1 for x in g["ref"]["results"])


async def test_groups_upload_manifest_is_checked_and_total_size_is_bounded(clips):
    settings = test_settings(max_group_size=2)  # at most 8 x 2 = 16 videos per request
    async with running_app(settings) as (client, _):
        files = [("videos", (f"{n}.mp4", clips[k])) for n, k in enumerate(["clean", "noisy", "dark", "blurry"])]
        ok = await client.post("/v1/groups/upload", files=files, data={"manifest": json.dumps(
            {"groups": [{"id": "a", "count": 2}, {"id": "b", "count": 1, "reference": True}]})})
        short = await client.post("/v1/groups/upload", files=files, data={"manifest": json.dumps(
            {"groups": [{"id": "a", "count": 2}]})})
        garbage = await client.post("/v1/groups/upload", files=files, data={"manifest": "{not json"})
        many = [("videos", (f"{n}.mp4", clips["clean"])) for n in range(18)]
        too_many = await client.post("/v1/groups/upload", files=many, data={"manifest": json.dumps(
            {"groups": [{"id": f"g{n}", "count": 2} for n in range(9)]})})
    assert ok.status_code == 200, ok.text
    a, b = ok.json()["groups"]
    assert [x["id"] for x in a["results"]] == ["0.mp4", "1.mp4"] and b["aggregation"] == "reference"
    assert short.status_code == 422 and short.json()["error"]["code"] == "invalid_request"
    assert garbage.status_code == 422 and garbage.json()["error"]["code"] == "invalid_request"
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "group_size"


async def test_reward_dimension_and_spread_histograms_per_model_version(clips):
    async with running_app(test_settings()) as (client, app):
        version = app.state.engine.model_info().version
        await client.post("/v1/group", json={"videos": [b64(clips[k]) for k in ("clean", "noisy", "dark")]})
        await client.post("/v1/groups", json={"groups": [
            {"id": "p", "videos": [b64(clips["clean"]), b64(clips["blurry"])], "reference": b64(clips["dark"])}]})
        text = (await client.get("/metrics")).text
    assert metric_value(text, "aesrm_reward_count", model_version=version, aggregation="bradley_terry") == 3
    assert metric_value(text, "aesrm_reward_count", model_version=version, aggregation="reference") == 2
    assert metric_value(text, "aesrm_reward_dimension_count", model_version=version, dimension="VF") == 5
    assert metric_value(text, "aesrm_reward_spread_count", model_version=version) == 2
    assert metric_value(text, "aesrm_reward_bucket", model_version=version, aggregation="reference", le="1.0") == 2
