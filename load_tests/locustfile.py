"""Locust traffic for AesRM: pairwise (70%), GRPO group (20%) and explanation (10%) requests.

    pip install locust
    AESRM_LOAD_KEY=<bearer key> locust -f load_tests/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 16 -r 4 -t 2m

Only point it at a stack you run yourself (load_tests/run_load.py starts one on loopback).
Clips are generated from the repository's example photos (real H.264); AESRM_LOAD_MISS_RATIO sets the share
of videos sent with fresh bytes (cache misses), the rest repeat (cache hits).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from locust import HttpUser, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from load_tests.run_load import make_clips  # noqa: E402

KEY = os.environ.get("AESRM_LOAD_KEY", "")
MISS = float(os.environ.get("AESRM_LOAD_MISS_RATIO", "0.5"))
GROUP = int(os.environ.get("AESRM_LOAD_GROUP_SIZE", "4"))
CLIPS: list[bytes] = []


@events.init.add_listener
def _clips(environment, **_):
    CLIPS.extend(make_clips(6))


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
            code = resp.json().get("error", {}).get("code", "?") if resp.content else "?"
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
