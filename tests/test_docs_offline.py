"""/docs works without internet: real headless Chromium (Debian's, driven by Playwright) against a real
uvicorn server, every request leaving the server's origin blocked and recorded. Swagger UI must render the
API from the vendored assets and no request may go elsewhere."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from service.api.routes_docs import ASSETS, SWAGGER_DIR
from tests.test_client import serve
from tests.test_web import ARGS, CHROMIUM

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (see tests/run.sh)")


@pytest.fixture(scope="module")
def server(redis_url):
    with serve(redis_url) as base:
        yield base


def test_vendored_assets_are_the_recorded_upstream_files():
    recorded = dict(reversed(m) for m in re.findall(r"^([0-9a-f]{64})  (\S+)$",
                                                    (SWAGGER_DIR / "VERSION.txt").read_text(), re.M))
    assert set(recorded) == set(ASSETS)
    for name, digest in recorded.items():
        assert hashlib.sha256((SWAGGER_DIR / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (SWAGGER_DIR / "LICENSE.txt").read_text()


def test_docs_page_and_assets_are_local(server):
    html = httpx.get(server + "/docs").text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert refs and all(r.startswith("/") or r.startswith("data:") for r in refs), refs
    for name, ctype in ASSETS.items():
        r = httpx.get(f"{server}/docs/assets/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == ctype and len(r.content) > 100_000
    bad = httpx.get(server + "/docs/assets/routes_docs.py")  # only the allow-listed names
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "path_not_found"
    bad = httpx.get(server + "/docs/assets/..%2F..%2Fapi%2Fapp.py")
    assert bad.status_code == 404 and bad.json()["error"]["code"] in ("not_found", "path_not_found")
    assert httpx.get(server + "/redoc").status_code == 404  # CDN-only page: switched off


def test_swagger_ui_renders_offline_in_chromium(server):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    foreign: list[str] = []
    local: list[str] = []

    def gate(route):
        url = route.request.url
        if url.startswith(server + "/") or url.startswith("data:"):
            local.append(url)
            route.continue_()
        else:  # what an offline network would do
            foreign.append(url)
            route.abort()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", gate)
            page.goto(server + "/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            title = page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = set(page.locator(".opblock-summary-path").all_inner_texts())
        finally:
            browser.close()
    assert not foreign, f"/docs requested assets outside the server: {foreign}"
    assert "AesRM reward service" in title
    assert {"/v1/pair", "/v1/group", "/health/ready"} <= {p.replace("\u200b", "") for p in paths}, paths
    assert any(u.endswith("/openapi.json") for u in local) and any("swagger-ui-bundle.js" in u for u in local)
    assert not errors, errors
