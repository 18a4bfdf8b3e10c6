"""The main job (`deploy/local/run.sh` = `aesrm-demo`) end to end: its example pair is judged the right way.

The example pair is a clean clip of a shipped photo vs the same clip with heavy sensor noise: a fidelity
defect. The shipped model must prefer the clean clip clearly on VF (P > 0.9) and overall (P > 0.65), and
must not claim a strong preference on the dimensions noise does not touch (VA, VP): P within [0.2, 0.8]
(issue 10's "off-target strong move" threshold). 2.6.0 gives VF 0.997, overall 0.910, VA 0.607, VP 0.647
(2.5.0: VF 0.995, overall 0.872, VA 0.636, VP 0.486; 2.4.0: VF 0.991, overall 0.866, VA 0.616, VP 0.598;
2.3.0: VF 0.986, overall 0.823, VA 0.605, VP 0.473;
2.2.1: VF 0.971, overall 0.764, VA 0.568, VP 0.436; 2.2.0: VF 0.981, overall 0.778, VA 0.558, VP 0.397): the
native-resolution fragments see the noise. 2.1.0, which saw frames only at 128 px, gave VF 0.551 and
overall 0.515, and would fail this bar (service/model/README.md, "Proxy 2.2.0"). Runs the real command:
uvicorn, real HTTP upload, real Redis, PyAV."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import fresh_redis_db, free_port


def test_demo_example_pair_is_judged_the_right_way(redis_url):
    env = dict(os.environ, AESRM_PORT=str(free_port()), AESRM_REDIS_URL=fresh_redis_db(redis_url, 3))
    out = subprocess.run([sys.executable, "-m", "service.tools.demo", "--once"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    line = re.search(r"P\(clean preferred over noisy\): overall=([\d.]+) VA=([\d.]+) VF=([\d.]+) VP=([\d.]+)",
                     out.stdout)
    assert line, out.stdout
    overall, va, vf, vp = map(float, line.groups())
    assert vf > 0.9 and overall > 0.65, out.stdout
    assert 0.2 <= va <= 0.8 and 0.2 <= vp <= 0.8, out.stdout
