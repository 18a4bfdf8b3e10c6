"""Groups split across ranks: two real processes on torch.distributed's gloo backend (CPU) each hold a
shuffled half of a batch (Flow-GRPO's sampler layout); each sample must get the reward of its WHOLE group,
the same as scoring the full batch in one process, not the reward of its rank's share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from service.client import AesRMClient
from service.client.grpo import score_batch
from service.examples import degrade, pan_frames, photo
from tests.conftest import free_port
from tests.test_client import serve

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import json, os, sys
    import numpy as np, torch, torch.distributed as dist
    from service.client import AesRMClient
    from service.client.trainers import AesRMReward, FlowGRPOScorer
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    spec = json.load(open(sys.argv[1]))
    videos = [torch.from_numpy(np.load(p)).permute(0, 3, 1, 2).float() / 255 for p in spec["videos"][rank]]
    prompts = spec["prompts"][rank]
    with AesRMClient(spec["server"]) as c:
        trl = AesRMReward(c)(prompts, completions=videos)                      # gathers (default)
        flow, meta = FlowGRPOScorer(c, group_key="pid")(torch.stack(videos), prompts,
                                                        [{"pid": p} for p in prompts])
        alone = AesRMReward(c, gather=False)(prompts, completions=videos)      # the bug: rank share only
    json.dump({"trl": trl, "flow": flow["avg"].tolist(), "alone": alone}, open(sys.argv[2 + rank], "w"))
    dist.destroy_process_group()
""")


@pytest.fixture(scope="module")
def server(redis_url):
    with serve(redis_url) as base:
        yield base


def test_split_groups_are_gathered_over_gloo_and_match_the_full_batch(server, tmp_path):
    a = pan_frames(photo("bythewater"), 9, 200, 112)
    b = pan_frames(photo("path"), 9, 200, 112)
    clips = [a, degrade(a, "noise", 0.6), degrade(a, "blur", 0.9), degrade(a, "dark", 0.5),
             b, degrade(b, "noise", 0.3), degrade(b, "blur", 0.5), degrade(b, "flicker", 0.9)]
    prompts = ["lake"] * 4 + ["path"] * 4
    order = [int(n) for n in np.random.default_rng(3).permutation(8)]  # Flow-GRPO: shuffled over 2 ranks
    paths = []
    for n, clip in enumerate(clips):
        paths.append(str(tmp_path / f"{n}.npy"))
        np.save(paths[-1], clip)
    ranks = [order[:4], order[4:]]
    assert all(len({prompts[n] for n in r}) == 2 for r in ranks)  # both prompts are split
    spec = {"server": server, "videos": [[paths[n] for n in r] for r in ranks],
            "prompts": [[prompts[n] for n in r] for r in ranks]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "worker.py").write_text(WORKER)
    outs = [tmp_path / f"out{r}.json" for r in range(2)]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2",
               PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "spec.json"),
                               *map(str, outs)], env=dict(env, RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for r in range(2)]
    logs = [p.communicate(timeout=600)[0].decode()[-3000:] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    got = [json.loads(o.read_text()) for o in outs]

    with AesRMClient(server) as c:
        full = score_batch(c, clips, prompts)  # the whole batch in one process
    for r, members in enumerate(ranks):
        expect = [full.rewards[n] for n in members]
        np.testing.assert_allclose(got[r]["trl"], expect, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got[r]["flow"], expect, rtol=1e-5, atol=1e-5)
    alone = np.array([np.nan if x is None else x for x in got[0]["alone"] + got[1]["alone"]])
    assert np.nanmax(np.abs(alone - np.array([full.rewards[n] for n in order]))) > 0.1  # what gathering fixes
