"""Hostile clients against a real server process (uvicorn, `python -m service.api.app`) over real HTTP.

Regressions for issue 12: inputs that used to give 500 / 503, anonymous requests that read bodies and took
scoring slots, bodies buffered before any check, unbounded decode work. Raw sockets where a well-behaved
client library would hide the attack (partial bodies, lying Content-Length, chunked floods).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from service.api.security import hash_key
from service.examples import encode, pan_frames, photo
from service.explain.jobs import MAX_EVENT_INDEX
from service.ingest.sources import base64_max_chars
from tests.conftest import RedisServer, metric_value
from tests.server_process import gateway

KEY = "k-hostile-5d1e"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_REQUEST = 16 * 1024 * 1024
MAX_VIDEO = 8 * 1024 * 1024
BUDGET = 320 * 180 * 100  # decode work per sampled frame: 100 frames of 320x180
HUGE = 300 * 1024 * 1024
MiB = 1024 * 1024


class Server:
    def __init__(self, base: str, port: int, proc: subprocess.Popen, root: Path, redis: RedisServer) -> None:
        self.base, self.port, self.proc, self.root, self.redis = base, port, proc, root, redis

    def status(self, field: str) -> float:
        """A /proc/<pid>/status memory field of the server process, in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    def metrics(self) -> str:
        return httpx.get(self.base + "/metrics", timeout=10).text


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    redis = RedisServer().start()  # our own, so the outage test can kill it
    root = tmp_path_factory.mktemp("roots")
    env = dict(AESRM_REDIS_URL=redis.url, AESRM_API_KEY_HASHES=json.dumps([hash_key(KEY)]), AESRM_MAX_IN_FLIGHT="4",
               AESRM_MAX_REQUEST_BYTES=str(MAX_REQUEST), AESRM_MAX_VIDEO_BYTES=str(MAX_VIDEO),
               AESRM_BODY_TIMEOUT_S="5", AESRM_DECODE_BUDGET_PIXELS=str(BUDGET),
               AESRM_ALLOWED_ROOTS=json.dumps([str(root)]), AESRM_DECODE_WORKERS="2")
    try:
        with gateway(root.parent, **env) as (base, port, proc):
            yield Server(base, port, proc, root, redis)
    finally:
        redis.stop()


# ------------------------------------------------------------------ raw HTTP
class RawRequest:
    """One HTTP/1.1 request on a raw socket; a reader thread collects the answer while we keep sending,
    so a response sent before the server closes (and resets) the connection is never lost."""

    def __init__(self, port: int, head: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(head.encode())
        self.data = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.sent = 0

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.data += chunk
        except OSError:
            pass

    def answered(self) -> bool:
        return b"\r\n\r\n" in self.data

    def send(self, chunks) -> None:
        """Send until the body is done, the server answered, or it closed the connection."""
        try:
            for chunk in chunks:
                if self.answered():
                    return
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError:
            pass

    def response(self, timeout: float = 60) -> tuple[int, dict, dict]:
        """(status, headers, JSON body) once the whole answer is in (or the server closed)."""
        end = time.monotonic() + timeout
        while True:
            head, sep, body = bytes(self.data).partition(b"\r\n\r\n")
            headers = {}
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                if len(body) >= int(headers.get("content-length", 0)):
                    break
            if not self.reader.is_alive() or time.monotonic() > end:
                break
            time.sleep(0.01)
        assert sep, f"no answer (got {bytes(self.data)[:200]!r})"
        status = int(head.split()[1])
        return status, headers, json.loads(body[: int(headers.get("content-length", len(body)))] or b"{}")

    def close(self) -> None:
        self.sock.close()


def head(path: str, *, key: bool, length: int | None, ctype: str = "application/json") -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Type: {ctype}"]
    lines += ["Transfer-Encoding: chunked"] if length is None else [f"Content-Length: {length}"]
    if key:
        lines.append(f"Authorization: Bearer {KEY}")
    return "\r\n".join(lines) + "\r\n\r\n"


def chunked(total: int, size: int = MiB, prefix: bytes = b'{"a": {"base64": "'):
    """An unterminated JSON body, chunked transfer encoding."""
    first = True
    while total > 0:
        n = min(size, total)
        payload = (prefix + b"A" * (n - len(prefix))) if first else b"A" * n
        first = False
        total -= n
        yield b"%x\r\n" % len(payload) + payload + b"\r\n"


def plain(total: int, size: int = MiB):
    while total > 0:
        n = min(size, total)
        total -= n
        yield b"A" * n


# ------------------------------------------------------------------ helpers
def npy(shape) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, np.uint8), allow_pickle=False)
    return buf.getvalue()


def b64(data: bytes) -> dict:
    return {"base64": base64.b64encode(data).decode()}


def code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


UNRESIZABLE = {"1x2100000": (1, 1, 2_100_000, 3), "2100000x1": (1, 2_100_000, 1, 3)}


@pytest.mark.parametrize("name", list(UNRESIZABLE))
def test_npy_with_unresizable_frames_is_a_4xx_per_item_on_every_route(server, clips, name):
    bad = npy(UNRESIZABLE[name])  # valid uint8 [T,H,W,3], 6.3 MB, h*w under max_pixels: swscale refuses it
    (server.root / f"{name}.npy").write_bytes(bad)
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as c:
        answers = {
            "upload": c.post("/v1/pair/upload", files={"a": ("a.npy", bad), "b": ("b.mp4", clips["clean"])}),
            "base64": c.post("/v1/pair", json={"a": b64(bad), "b": b64(clips["clean"])}),
            "path": c.post("/v1/pair", json={"a": {"path": str(server.root / f"{name}.npy")}, "b": b64(clips["dark"])}),
        }
        for route, r in answers.items():
            assert r.status_code == 422 and code(r) == "invalid_tensor", (route, r.status_code, r.text)
            assert r.json()["error"]["item"] == "a"
        files = [("videos", ("0.mp4", clips["clean"])), ("videos", ("1.npy", bad)),
                 ("videos", ("2.mp4", clips["dark"]))]
        groups = [c.post("/v1/group/upload", files=files),
                  c.post("/v1/group", json={"videos": [b64(clips["clean"]), b64(bad), b64(clips["dark"])]})]
    for g in groups:  # the group is kept: one error entry, the others scored
        assert g.status_code == 200, g.text
        results = g.json()["results"]
        assert results[1]["error"]["code"] == "invalid_tensor" and results[1]["reward"] is None
        assert results[0]["reward"] is not None and results[2]["reward"] is not None


def test_anonymous_slow_uploads_get_401_from_headers_and_take_no_scoring_slot(server, clips):
    """Three times max_in_flight anonymous uploads that never finish their body: each is answered 401
    having sent only a sliver of its declared body, and a real request is still admitted while they stay
    connected."""
    slow = []
    for _ in range(12):
        req = RawRequest(server.port, head("/v1/pair/upload", key=False, length=10 * MiB,
                                           ctype="multipart/form-data; boundary=x"))
        req.send([b"--x\r\n" + b"A" * 1000])
        slow.append(req)
    for req in slow:
        status, headers, body = req.response()
        assert status == 401 and body["error"]["code"] == "unauthorized" and headers["www-authenticate"]
        assert req.sent < 2000
    r = httpx.post(server.base + "/v1/pair/upload", headers=AUTH, timeout=60,
                   files={"a": ("a.mp4", clips["clean"]), "b": ("b.mp4", clips["noisy"])})
    assert r.status_code == 200, r.text
    for req in slow:
        req.close()


def test_authenticated_slow_uploads_hold_slots_only_until_the_body_deadline(server, clips):
    """With a key, stalled bodies do occupy admission (max_in_flight=4) -- until body_timeout_s (5 s):
    then each gets 408 request_timeout and the slots are free again."""
    stalled = []
    for _ in range(4):
        req = RawRequest(server.port, head("/v1/pair/upload", key=True, length=MiB,
                                           ctype="multipart/form-data; boundary=x"))
        req.send([b"--x\r\n"])
        stalled.append(req)
    end = time.monotonic() + 60  # until the server holds all four (in-flight also counts this /metrics call)
    while metric_value(server.metrics(), "aesrm_in_flight_requests") < 5 and time.monotonic() < end:
        time.sleep(0.05)
    full = httpx.post(server.base + "/v1/pair/upload", headers=AUTH, timeout=60,
                      files={"a": ("a.mp4", clips["clean"]), "b": ("b.mp4", clips["noisy"])})
    assert full.status_code == 429 and code(full) == "overloaded" and full.headers["retry-after"]
    for req in stalled:
        status, _, body = req.response()
        assert status == 408 and body["error"]["code"] == "request_timeout", body
        req.close()
    r = httpx.post(server.base + "/v1/pair/upload", headers=AUTH, timeout=60,
                   files={"a": ("a.mp4", clips["clean"]), "b": ("b.mp4", clips["noisy"])})
    assert r.status_code == 200, r.text
    assert metric_value(server.metrics(), "aesrm_errors_total", code="request_timeout") >= 4


def test_oversized_bodies_are_refused_while_streaming_and_server_rss_stays_bounded(server, clips):
    """300 MB bodies (declared, chunked, unterminated JSON; with and without a key) and four concurrent
    150 MB chunked bodies. Bound asserted: peak RSS (VmHWM, reset before each case) at most
    2 x max_request_bytes per concurrent request above the RSS before it, plus 16 MiB. (Concurrent bodies
    are read only by admitted requests, so the worst case is max_in_flight x that.)"""
    httpx.post(server.base + "/v1/pair", headers=AUTH, timeout=60,
               json={"a": b64(clips["clean"]), "b": b64(clips["noisy"])})  # warm the JSON path
    cases = {
        "no key, Content-Length 300 MB": [(False, HUGE, plain)],
        "key, Content-Length 300 MB": [(True, HUGE, plain)],
        "no key, chunked 300 MB": [(False, None, chunked)],
        "key, chunked unterminated JSON 300 MB": [(True, None, chunked)],
        "key, 4 concurrent chunked 150 MB": [(True, None, chunked)] * 4,
    }
    expected = {True: (413, "request_too_large"), False: (401, "unauthorized")}
    rows = []
    for name, reqs in cases.items():
        clear = Path(f"/proc/{server.proc.pid}/clear_refs")
        clear.write_text("5")  # reset VmHWM (peak RSS) to the current RSS
        before = server.status("VmRSS")
        size = HUGE if len(reqs) == 1 else HUGE // 2
        raw = [RawRequest(server.port, head("/v1/pair", key=k, length=n)) for k, n, _ in reqs]
        threads = [threading.Thread(target=r.send, args=(gen(size),)) for r, (_, _, gen) in zip(raw, reqs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for r, (k, _, _) in zip(raw, reqs):
            status, headers, body = r.response()
            assert (status, body["error"]["code"]) == expected[k], (name, status, body)
            assert r.sent < size // 2, (name, r.sent)  # refused while streaming, not after the whole body
            # and the server stops reading it (401 and 413 alike): the connection closes after the answer
            assert headers.get("connection") == "close", (name, headers)
            r.close()
        peak = server.status("VmHWM")
        grown = peak - before
        rows.append(f"{name}: sent {sum(r.sent for r in raw) / MiB:.0f} MiB before the answer, "
                    f"peak RSS +{grown:.1f} MiB")
        assert grown <= len(reqs) * 2 * MAX_REQUEST / MiB + 16, rows[-1]
    print("\nmax_request_bytes = 16 MiB\n" + "\n".join(rows))
    ok = httpx.post(server.base + "/v1/pair", headers=AUTH, timeout=60,
                    json={"a": b64(clips["clean"]), "b": b64(clips["noisy"])})
    assert ok.status_code == 200


def test_a_refused_body_within_the_limit_keeps_its_connection_alive(server, clips):
    """401 from headers alone, body of a few hundred kB (under max_request_bytes): the server discards it
    and keeps the connection, so the client reads a clean answer and sends its next request on the same
    socket (only unbounded bodies, above, are answered with Connection: close)."""
    body = json.dumps({"a": b64(clips["clean"]), "b": b64(clips["noisy"])}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", "/v1/pair", body, {"Content-Type": "application/json"})
        first = conn.getresponse()
        assert first.status == 401 and json.loads(first.read())["error"]["code"] == "unauthorized"
        assert first.getheader("connection") is None and conn.sock is not None
        local = conn.sock.getsockname()
        conn.request("POST", "/v1/pair", body, {"Content-Type": "application/json", **AUTH})
        second = conn.getresponse()
        assert second.status == 200, second.read()
        assert conn.sock.getsockname() == local  # the same TCP connection
        assert 0.0 <= json.loads(second.read())["preference"]["VF"] <= 1.0
    finally:
        conn.close()


def test_base64_longer_than_max_video_bytes_is_413_before_decoding(server):
    text = "A" * (base64_max_chars(MAX_VIDEO) + 4)  # fits max_request_bytes, not max_video_bytes
    r = httpx.post(server.base + "/v1/pair", headers=AUTH, timeout=60,
                   json={"a": {"base64": "AAAA"}, "b": {"base64": text}})
    assert r.status_code == 413 and code(r) == "video_too_large" and r.json()["error"]["item"] == "b", r.text


@pytest.fixture(scope="module")
def one_keyframe_clip() -> tuple[bytes, bytes]:
    """2400 frames of 320x180 (100 s at 24 fps): one keyframe, and the same frames with a keyframe every 24."""
    frames = pan_frames(photo("path"), 2400, 320, 180)
    return _x264(frames, {"keyint": "infinite", "scenecut": "0"}), encode(frames, gop=24)


def _x264(frames: np.ndarray, params: dict) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"preset": "ultrafast", "x264-params": ":".join(f"{k}={v}" for k, v in params.items())}
        for rgb in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def test_decode_work_is_bounded_with_a_4xx_and_counted(server, clips, one_keyframe_clip):
    """A clip whose only keyframe is the first makes every sampled frame cost a decode from the start:
    refused (422 decode_budget_exceeded) once the work passes the budget; the same frames with normal
    keyframes are scored."""
    sparse, dense = one_keyframe_clip
    counted = metric_value(server.metrics(), "aesrm_errors_total", code="decode_budget_exceeded")
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as c:
        r = c.post("/v1/pair/upload", files={"a": ("a.mp4", sparse), "b": ("b.mp4", clips["clean"])})
        assert r.status_code == 422 and code(r) == "decode_budget_exceeded", r.text
        assert r.json()["error"]["item"] == "a"
        g = c.post("/v1/group/upload", files=[("videos", ("s.mp4", sparse)), ("videos", ("c.mp4", clips["clean"])),
                                              ("videos", ("d.mp4", clips["dark"]))])
        assert g.status_code == 200 and g.json()["results"][0]["error"]["code"] == "decode_budget_exceeded"
        ok = c.post("/v1/pair/upload", files={"a": ("a.mp4", dense), "b": ("b.mp4", clips["clean"])})
        assert ok.status_code == 200, ok.text
    assert metric_value(server.metrics(), "aesrm_errors_total", code="decode_budget_exceeded") == counted + 2


def test_method_not_allowed_carries_allow_header(server):
    cases = {("GET", "/v1/pair"): {"POST"}, ("PUT", "/v1/explain/" + "0" * 32): {"GET", "DELETE"},
             ("DELETE", "/v1/group"): {"POST"}}
    for (method, path), allowed in cases.items():
        r = httpx.request(method, server.base + path, headers=AUTH, timeout=10)
        assert r.status_code == 405 and code(r) == "method_not_allowed", (method, path, r.text)
        assert {m.strip() for m in r.headers["allow"].split(",")} >= allowed, r.headers


def test_openapi_states_videoref_as_one_of_its_alternatives(server):
    schema = httpx.get(server.base + "/openapi.json", timeout=10).json()
    ref = schema["components"]["schemas"]["VideoRef"]
    alts = {tuple(a["required"]): a for a in ref["oneOf"]}
    assert set(alts) == {("base64",), ("path",), ("url",)}
    assert all(a["additionalProperties"] is False and set(a["properties"]) == {a["required"][0], "id"}
               for a in alts.values())
    assert alts[("base64",)]["properties"]["base64"]["maxLength"] == base64_max_chars(MAX_VIDEO)
    for bad in ({"base64": "AAAA", "path": None}, {"path": "/x", "url": "http://x/"}, {}, {"id": "x"}):
        r = httpx.post(server.base + "/v1/pair", headers=AUTH, json={"a": bad, "b": {"base64": "AAAA"}}, timeout=10)
        assert r.status_code == 422 and code(r) == "invalid_request", (bad, r.text)


MALFORMED_IDS = ["nope", "X:events", "0" * 31, "0" * 33, "A" * 32, "0" * 31 + "g", "*", "%2A" * 11]


def test_explanation_ids_and_cursors_are_validated_not_sent_to_redis(server):
    unknown = "0" * 32
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=10) as c:
        for job in MALFORMED_IDS:
            for method, path in (("GET", f"/v1/explain/{job}"), ("DELETE", f"/v1/explain/{job}"),
                                 ("GET", f"/v1/explain/{job}/events")):
                r = c.request(method, path)
                assert r.status_code == 422 and code(r) == "invalid_request", (method, path, r.status_code, r.text)
        for method, path in (("GET", f"/v1/explain/{unknown}"), ("DELETE", f"/v1/explain/{unknown}"),
                             ("GET", f"/v1/explain/{unknown}/events")):
            r = c.request(method, path)
            assert r.status_code == 404 and code(r) == "job_not_found", (method, path, r.text)
        events = f"/v1/explain/{unknown}/events"
        for params in ({"after": str(2**64)}, {"after": str(MAX_EVENT_INDEX + 1)}, {"after": "-2"}, {"after": "1e3"}):
            r = c.get(events, params=params)
            assert r.status_code == 422 and code(r) == "invalid_request", (params, r.text)
        for last in (str(2**64), "99999999999", "-2", "abc", "1.5", "--1"):
            r = c.get(events, headers={"Last-Event-ID": last})
            assert r.status_code == 422 and code(r) == "invalid_request", (last, r.text)
        for last in ("0", "-1", str(MAX_EVENT_INDEX), ""):  # valid cursors (or none): the job is simply unknown
            assert c.get(events, headers={"Last-Event-ID": last}).status_code == 404


def test_only_a_real_redis_outage_is_503_on_explanation_routes(server):
    """Last in this module: it kills the module's own Redis."""
    unknown = "0" * 32
    server.redis.stop()
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=30) as c:
        r = c.get(f"/v1/explain/{unknown}")
        assert r.status_code == 503 and code(r) == "backend_unavailable" and r.headers["retry-after"]
        r = c.get("/v1/explain/X:events")  # still the client's fault while Redis is down
        assert r.status_code == 422
