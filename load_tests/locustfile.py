"""Locust traffic for AesRM: pairwise (70%), GRPO group (20%) and explanation (10%) requests.

Self-contained: it imports only the standard library and Locust (nothing from this repository, no numpy /
av / httpx), so a Locust-only environment runs it:

    python3 -m venv /tmp/locust && /tmp/locust/bin/pip install 'locust>=2.30,<3'
    AESRM_LOAD_KEY=<bearer key> /tmp/locust/bin/locust -f load_tests/locustfile.py \\
        --host http://127.0.0.1:8000 --headless -u 16 -r 4 -t 2m

Only point it at a stack you run yourself (load_tests/run_load.py starts one on loopback).
Clips: the real H.264 files in load_tests/clips/ (written by `python -m load_tests.write_clips` from the
repository's example photos), or any folder of videos given as AESRM_LOAD_CLIPS=DIR.
AESRM_LOAD_MISS_RATIO sets the share of videos sent with fresh bytes (cache misses), the rest repeat (hits).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, between, events, task

KEY = os.environ.get("AESRM_LOAD_KEY", "")
MISS = float(os.environ.get("AESRM_LOAD_MISS_RATIO", "0.5"))
GROUP = int(os.environ.get("AESRM_LOAD_GROUP_SIZE", "4"))
CLIP_DIR = Path(os.environ.get("AESRM_LOAD_CLIPS") or Path(__file__).resolve().parent / "clips")
VIDEO_EXTS = {".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".npy"}
CLIPS: list[bytes] = []


def load_clips(folder: Path) -> list[bytes]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTS) if folder.is_dir() else []
    if not files:
        raise SystemExit(f"no video files in {folder} (set AESRM_LOAD_CLIPS to a folder of clips)")
    return [p.read_bytes() for p in files]


@events.init.add_listener
def _clips(environment, **_):
    CLIPS.extend(load_clips(CLIP_DIR))


class AesRMUser(HttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self):
        if KEY:
            self.client.headers["Authorization"] = f"Bearer {KEY}"
        self.rng = random.Random()
        self.fresh = 0

    def _video(self) -> bytes:
        clip = self.rng.choice(CLIPS)
        if self.rng.random() < MISS:
            self.fresh += 1
            return clip + self.rng.randbytes(8)  # new digest, same video
        return clip

    def _check(self, resp, ok=(200,)):
        # 429 is admission control doing its job: count it, but as its own failure class
        if resp.status_code not in ok:
            try:
                code = resp.json().get("error", {}).get("code", "?")
            except ValueError:
                code = "?"
            resp.failure(f"{resp.status_code}:{code}")

    @task(7)
    def pair(self):
        with self.client.post("/v1/pair/upload", files={"a": ("a.mp4", self._video()), "b": ("b.mp4", self._video())},
                              name="pair", catch_response=True) as r:
            self._check(r)

    @task(2)
    def group(self):
        files = [("videos", (f"{i}.mp4", self._video())) for i in range(GROUP)]
        with self.client.post("/v1/group/upload", files=files, name="group", catch_response=True) as r:
            self._check(r)

    @task(1)
    def explain(self):
        with self.client.post("/v1/explain/upload", files={"a": ("a.mp4", self._video()),
                                                           "b": ("b.mp4", self._video())},
                              name="explain submit", catch_response=True) as r:
            self._check(r, ok=(202,))
            if r.status_code == 202:
                self.client.get(r.json()["links"]["self"], name="explain status")
