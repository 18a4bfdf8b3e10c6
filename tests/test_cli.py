"""CLI: typer's CliRunner in-process (embedded default, no server) and against a real uvicorn server."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.test_client import UNTRAINED, serve

runner = CliRunner()
ENV = {"AESRM_ALLOW_UNTRAINED": "true"} if UNTRAINED else {}
ENV = {**ENV, "AESRM_MAX_BATCH_WAIT_MS": "1", "AESRM_DECODE_WORKERS": "2", "COLUMNS": "160"}


@pytest.fixture(scope="module")
def renders(tmp_path_factory, clips):
    d = tmp_path_factory.mktemp("renders")
    for name in ("clean", "noisy", "dark"):
        (d / f"{name}.mp4").write_bytes(clips[name])
    (d / "frames.npy").write_bytes(clips["frames_npy"])
    (d / "broken.mp4").write_bytes(b"this is not a video")
    (d / "notes.txt").write_text("ignored: not a video extension")
    return d


@pytest.fixture(scope="module")
def server(redis_url):
    with serve(redis_url) as base:
        yield base


def test_score_in_process(renders):
    r = runner.invoke(app, ["score", str(renders / "clean.mp4"), str(renders / "noisy.mp4")], env=ENV)
    assert r.exit_code == 0, r.output
    for word in ("VA", "VF", "VP", "overall", "preferred overall"):
        assert word in r.output


def test_rank_in_process_with_csv_json_and_broken_file(renders, tmp_path):
    out_csv, out_json = tmp_path / "rank.csv", tmp_path / "rank.json"
    r = runner.invoke(app, ["rank", str(renders), "--csv", str(out_csv), "--json", str(out_json),
                            "--aggregation", "win_rate"], env=ENV)
    assert r.exit_code == 0, r.output
    assert "ranking (win_rate" in r.output and "broken.mp4" in r.output and "notes.txt" not in r.output
    # one unit for "pairs" throughout: 5 files = 10 pairs announced; 4 decode = 6 pairs, asked twice each
    out = " ".join(r.output.split())
    assert "scoring 5 videos: 10 pairs" in out, r.output
    assert "6 pairs among 4 valid videos (1 failed), both orders = 12 pair scores" in out, r.output
    rows = list(csv.DictReader(out_csv.open()))
    assert [x["rank"] for x in rows] == ["1", "2", "3", "4", ""]
    assert rows[-1]["file"] == "broken.mp4" and rows[-1]["error"].startswith("video_undecodable")
    rewards = [float(x["reward"]) for x in rows[:4]]
    assert rewards == sorted(rewards, reverse=True)
    doc = json.loads(out_json.read_text())
    assert doc["response"]["aggregation"] == "win_rate" and len(doc["ranking"]) == 5
    assert {x["file"] for x in rows} == {"clean.mp4", "noisy.mp4", "dark.mp4", "frames.npy", "broken.mp4"}


def test_against_real_server(server, renders):
    r = runner.invoke(app, ["--server", server, "score", "--json", str(renders / "clean.mp4"),
                            str(renders / "dark.mp4")])
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert 0 <= body["preference"]["overall"] <= 1 and body["both_orders"] is True
    r = runner.invoke(app, ["--server", server, "rank", str(renders)], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "bradley_terry" in r.output and "clean.mp4" in r.output


def test_errors_are_one_line_and_exit_1(server, renders, tmp_path):
    r = runner.invoke(app, ["--server", server, "score", str(renders / "broken.mp4"), str(renders / "clean.mp4")])
    assert r.exit_code == 1 and "video_undecodable (422)" in r.output
    r = runner.invoke(app, ["--server", "http://127.0.0.1:9", "score", str(renders / "clean.mp4"),
                            str(renders / "dark.mp4")])
    assert r.exit_code == 1 and "connection_error" in r.output
    (tmp_path / "one.mp4").write_bytes(b"x")
    r = runner.invoke(app, ["rank", str(tmp_path)])
    assert r.exit_code == 2 and "at least 2 videos" in r.output


def test_explain_against_real_server(server, renders):
    r = runner.invoke(app, ["--server", server, "explain", str(renders / "clean.mp4"),
                            str(renders / "noisy.mp4")], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "overall" in r.output and "source:" in r.output and "VF" in r.output


@pytest.fixture(scope="module")
def keyed_server(redis_url):
    import hashlib

    digest = hashlib.sha256(b"cli-test-key").hexdigest()
    with serve(redis_url, AESRM_API_KEY_HASHES=json.dumps([digest])) as base:
        yield base


def test_server_and_key_options_work_after_the_command(keyed_server, renders):
    """`aesrm score a b --server URL --api-key K` (options after the subcommand) reaches the server with the
    key; without the key the same server answers 401, so the option really travelled."""
    a, b = str(renders / "clean.mp4"), str(renders / "dark.mp4")
    r = runner.invoke(app, ["score", a, b, "--server", keyed_server, "--json"])
    assert r.exit_code == 1 and "unauthorized (401)" in r.output, r.output
    r = runner.invoke(app, ["score", a, b, "--server", keyed_server, "--api-key", "cli-test-key", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["model"]["backend"] == "embedded"
    r = runner.invoke(app, ["rank", str(renders), "-s", keyed_server, "--api-key", "cli-test-key"],
                      env={"COLUMNS": "160"})
    assert r.exit_code == 0 and "clean.mp4" in r.output, r.output
    # the environment still works, and does not override a flag given before the command
    r = runner.invoke(app, ["score", a, b, "--json"], env={"AESRM_SERVER": keyed_server, "AESRM_API_KEY": "cli-test-key"})
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["--server", keyed_server, "--api-key", "cli-test-key", "score", a, b, "--json"],
                      env={"AESRM_SERVER": "http://127.0.0.1:9", "AESRM_API_KEY": "wrong"})
    assert r.exit_code == 0, r.output
    # before the command still works, and a value after the command wins over one before it
    r = runner.invoke(app, ["--server", "http://127.0.0.1:9", "--api-key", "wrong", "score", a, b,
                            "--server", keyed_server, "--api-key", "cli-test-key", "--json"])
    assert r.exit_code == 0, r.output


def test_explain_and_errors_in_process_run_on_the_engine_without_http(renders):
    r = runner.invoke(app, ["explain", str(renders / "clean.mp4"), str(renders / "dark.mp4")], env=ENV)
    assert r.exit_code == 0, r.output
    assert "overall" in r.output and "source: proxy_heads" in r.output and "VA" in r.output
    r = runner.invoke(app, ["score", str(renders / "clean.mp4"), str(renders / "broken.mp4")], env=ENV)
    assert r.exit_code == 1
    assert "video_undecodable (422)" in r.output and "Traceback" not in r.output
