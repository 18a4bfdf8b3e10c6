"""The product web page in real headless Chromium (Playwright driving Debian's /usr/bin/chromium) against a
real uvicorn server: upload renders, rank, compare side by side, explain, screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from tests.test_client import serve

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (see tests/run.sh)")
CHROMIUM = os.environ.get("AESRM_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
W, H = 1280, 900


@pytest.fixture(scope="module")
def server(redis_url):
    with serve(redis_url) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_static_routes(server):
    r = httpx.get(server + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and "app.js" in r.text
    assert httpx.get(server + "/static/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(server + "/static/style.css").headers["content-type"].startswith("text/css")
    bad = httpx.get(server + "/static/..%2Fapi%2Fapp.py")
    assert bad.status_code == 404 and "error" in bad.json()


def test_page_ranks_compares_explains_and_renders(server, browser, clips, tmp_path):
    files = []
    for name in ("clean", "noisy", "dark"):
        f = tmp_path / f"{name}.mp4"
        f.write_bytes(clips[name])
        files.append(f)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"definitely not a video")
    errors: list[str] = []
    page = browser.new_page(viewport={"width": W, "height": H})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#model.ok", timeout=15000)
    assert page.locator("#rank").is_disabled()

    # upload: three good renders, plus a broken one to check per-item error rows
    page.set_input_files("#files", [str(f) for f in files] + [str(broken)])
    assert page.locator("#candidates li").count() == 4
    page.click("#rank")
    page.wait_for_selector("#ranking tbody tr", timeout=60000)
    ok_rows = page.locator("#ranking tbody tr.ok")
    assert ok_rows.count() == 3
    rewards = [float(x) for x in ok_rows.evaluate_all("rows => rows.map(r => r.dataset.reward)")]
    assert rewards == sorted(rewards, reverse=True)
    assert [int(t) for t in page.locator("#ranking td.rank").all_inner_texts()] == [1, 2, 3]
    names = page.locator("#ranking tbody tr.ok .fname").all_inner_texts()
    assert sorted(names) == ["clean.mp4", "dark.mp4", "noisy.mp4"]
    err_row = page.locator("#ranking tbody tr.error")
    assert err_row.count() == 1 and "broken.mp4" in err_row.inner_text()
    assert "video_undecodable" in err_row.locator(".err-code").inner_text()
    assert page.locator("#ranking tr.error").evaluate("r => getComputedStyle(r.cells[0]).color") == "rgb(201, 42, 42)"
    # three bars per valid row, widths in (0, 100%], label = the dimension's value
    widths = page.locator("#ranking .bar").evaluate_all(
        "bs => bs.map(b => b.getBoundingClientRect().width / b.parentElement.getBoundingClientRect().width)")
    assert len(widths) == 9 and all(0 < w <= 1.0001 for w in widths)
    assert "pair scores" in page.inner_text("#summary")

    # side by side: the top two are pre-ticked
    assert page.locator("input.pick:checked").count() == 2
    page.click("#compare")
    page.wait_for_selector(".pref-row", timeout=30000)
    srcs = page.locator("#pair video").evaluate_all("vs => vs.map(v => v.src)")
    assert len(srcs) == 2 and all(s.startswith("blob:") for s in srcs) and srcs[0] != srcs[1]
    assert page.locator(".pref-row").count() == 4
    assert page.inner_text("#name-a").endswith(names[0]) and page.inner_text("#name-b").endswith(names[1])
    page.click("#play")  # synced play / pause do not throw even if a codec is missing
    page.click("#play")
    assert page.evaluate("[...document.querySelectorAll('#pair video')].every(v => v.paused)")

    if "/v1/explain" in httpx.get(server + "/openapi.json").json()["paths"]:
        page.click("#explain")
        page.wait_for_selector("#explanation table.verdicts, #explanation .error-text", timeout=120000)
        assert page.locator("#explanation .error-text").count() == 0, page.inner_text("#explanation")
        assert page.locator("#explanation .verdict").count() >= 4  # overall + VA/VF/VP (+ criteria)
        assert page.inner_text("#explanation .reasoning").strip()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    assert errors == []

    shot = tmp_path / "aesrm-page.png"
    page.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("AESRM_SCREENSHOT")  # copy it out to look at it
    if keep:
        shutil.copy(shot, keep)
    page.close()
    _check_png(shot)


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with av.open(str(path)) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert img.shape[1] == W and img.shape[0] >= H
    px = img.reshape(-1, 3)
    assert px.std(axis=0).mean() > 20  # not blank
    colours = np.unique(px[:: 7] // 16, axis=0)
    assert len(colours) > 40  # text, bars, badges, video frames...
