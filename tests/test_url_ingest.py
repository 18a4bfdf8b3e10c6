"""SSRF-guarded URL ingest against real local HTTP servers (127.0.0.1 only)."""

from __future__ import annotations

import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service import errors
from service.ingest import fetch_url as fu
from tests.conftest import running_app, test_settings


class _Handler(BaseHTTPRequestHandler):
    clip = b""
    seen_hosts: list = []

    def log_message(self, *a):  # quiet
        pass

    def _send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if not any(k.lower() == "content-length" for k, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    finished: set = set()  # paths whose whole (huge / slow) body was sent

    def do_GET(self):  # noqa: N802
        self.seen_hosts.append(self.headers.get("Host"))
        p = self.path
        if p == "/video":
            return self._send(200, self.clip, [("Content-Type", "video/mp4")])
        if p.startswith("/to?"):
            return self._send(302, headers=[("Location", p[4:])])
        if p.startswith("/chain/"):
            n = int(p.rsplit("/", 1)[1])
            return self._send(302, headers=[("Location", f"/chain/{n - 1}" if n > 1 else "/video")])
        if p == "/loop":
            return self._send(302, headers=[("Location", "/loop")])
        if p == "/declared-huge":
            return self._send(200, b"x" * 10, [("Content-Length", str(10**12))])
        if p == "/stream-huge":  # no Content-Length: must be cut while streaming
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(4096):
                    self.wfile.write(b"10000\r\n" + b"\0" * 0x10000 + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                self.finished.add(p)
            except OSError:
                pass
            return
        if p == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(50):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
                self.finished.add(p)
            except OSError:
                pass
            return
        return self._send(404, b"nope")


@pytest.fixture(scope="module")
def web(clips):
    _Handler.clip = clips["clean"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.server_address[1]
    server.shutdown()
    server.server_close()


def s(**kw):
    base = dict(allow_untrained=True, url_ingest=True, url_allowlist=["127.0.0.1/32"], url_timeout_s=3.0,
                max_video_bytes=2 * 1024 * 1024)
    base.update(kw)
    return test_settings(**base)


async def code_of(url, settings) -> str:
    try:
        await fu.fetch_url(url, settings)
        return "ok"
    except errors.ServiceError as exc:
        return exc.code


async def test_allowlisted_local_server_is_fetched_with_original_host_header(web, clips):
    base, port = web
    assert await fu.fetch_url(base + "/video", s()) == clips["clean"]
    assert _Handler.seen_hosts[-1] == f"127.0.0.1:{port}"
    assert await fu.fetch_url(base + "/chain/3", s()) == clips["clean"]  # 3 redirects == the default limit


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/video", "http://localhost:{port}/video", "http://[::1]:{port}/video",
    "http://2130706433:{port}/", "http://0x7f000001:{port}/", "http://0177.0.0.1:{port}/", "http://0.0.0.0:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/", "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/",
    "http://192.168.0.1/", "http://172.16.0.1/", "http://100.64.0.1/", "http://[fd00::1]/", "http://[fe80::1]/",
    "http://224.0.0.1/", "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::1]/",
    # IETF protocol assignments (192.0.0.0/24: Python calls most of it global), 6to4 relay, local-use NAT64
    "http://192.0.0.192/", "http://192.0.0.9/", "http://192.88.99.1/", "http://[64:ff9b:1::a9fe:a9fe]/",
])
async def test_private_loopback_metadata_and_encoded_addresses_refused(web, url):
    assert await code_of(url.format(port=web[1]), s(url_allowlist=[])) == "url_not_allowed"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.mp4", "gopher://127.0.0.1:70/",
                                 "data:video/mp4;base64,AAAA", "javascript:alert(1)", "dict://127.0.0.1:11211/",
                                 "http://user:pw@127.0.0.1/", "http:///nohost", "http://[::1/", "//127.0.0.1/x"])
async def test_non_http_schemes_credentials_and_malformed_urls_refused(url):
    assert await code_of(url, s()) == "url_not_allowed"


async def test_redirect_targets_are_rechecked(web):
    base, port = web
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x", "http://[::1]:1/",
                   "file:///etc/passwd", "http://127.0.0.2:%d/video" % port):
        assert await code_of(f"{base}/to?{target}", s()) == "url_not_allowed", target
    assert await code_of(base + "/loop", s()) == "url_fetch_failed"  # more than url_max_redirects
    assert await code_of(base + "/chain/1", s(url_max_redirects=0)) == "url_fetch_failed"


async def test_size_limits_while_streaming(web):
    base, _ = web
    _Handler.finished.discard("/stream-huge")
    assert await code_of(base + "/declared-huge", s()) == "video_too_large"
    assert await code_of(base + "/stream-huge", s()) == "video_too_large"
    assert "/stream-huge" not in _Handler.finished  # cut while the server was still sending its 256 MiB


async def test_slow_server_hits_the_overall_deadline(web):
    _Handler.finished.discard("/slow")
    assert await code_of(web[0] + "/slow", s(url_timeout_s=0.5)) == "url_fetch_failed"
    assert "/slow" not in _Handler.finished  # gave up at the deadline, not after the server's 5 s body


async def test_upstream_errors_and_unresolvable_hosts(web):
    assert await code_of(web[0] + "/missing", s()) == "url_fetch_failed"
    assert await code_of("http://no-such-host.invalid/x.mp4", s()) == "url_fetch_failed"


async def test_dns_is_resolved_once_and_the_connection_is_pinned(web, clips, monkeypatch):
    """A name that only our resolver knows: if httpx re-resolved it the fetch would fail; the second DNS
    answer (rebinding to a metadata IP) is never asked for within a hop."""
    base, port = web
    answers = [[ipaddress.ip_address("127.0.0.1")], [ipaddress.ip_address("169.254.169.254")]]
    calls = []

    async def fake_resolve(host, p):
        calls.append(host)
        return answers[min(len(calls) - 1, 1)]

    monkeypatch.setattr(fu, "resolve", fake_resolve)
    assert await fu.fetch_url(f"http://cdn.rebind.test:{port}/video", s()) == clips["clean"]
    assert calls == ["cdn.rebind.test"] and _Handler.seen_hosts[-1] == f"cdn.rebind.test:{port}"
    # a mixed answer (one public, one private) is refused as a whole
    monkeypatch.setattr(fu, "resolve", lambda h, p: _const([ipaddress.ip_address("93.184.216.34"),
                                                            ipaddress.ip_address("10.0.0.5")]))
    assert await code_of("http://mixed.test/x", s(url_allowlist=[])) == "url_not_allowed"
    # a host-name allow-list entry admits that name even on a private address
    monkeypatch.setattr(fu, "resolve", lambda h, p: _const([ipaddress.ip_address("127.0.0.1")]))
    assert await code_of(f"http://media.internal:{port}/video", s(url_allowlist=[".internal"])) == "ok"
    assert await code_of(f"http://media.other:{port}/video", s(url_allowlist=[".internal"])) == "url_not_allowed"


async def _const(v):
    return v


async def test_url_inputs_through_the_api(web, clips):
    base, _ = web
    body = {"a": {"url": base + "/video"}, "b": {"base64": __import__("base64").b64encode(clips["dark"]).decode()}}
    st = s()
    async with running_app(st, None) as (client, _):
        r = await client.post("/v1/pair", json=body)
        assert r.status_code == 200, r.text
    st = s(url_allowlist=[])
    async with running_app(st, None) as (client, _):
        r = await client.post("/v1/pair", json=body)
        assert r.status_code == 403 and r.json()["error"] == {
            "code": "url_not_allowed", "message": r.json()["error"]["message"], "item": "a"}
        body["a"]["url"] = "http://169.254.169.254/latest/meta-data/iam/"
        r = await client.post("/v1/group", json={"videos": [body["a"], body["b"], body["b"]]})
        assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "url_not_allowed"
    st = s(url_ingest=False)
    async with running_app(st, None) as (client, _):
        assert (await client.post("/v1/pair", json=body)).json()["error"]["code"] == "unsupported_source"
