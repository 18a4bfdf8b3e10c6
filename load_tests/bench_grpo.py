"""One GRPO reward step, three ways, measured in one run against a local stack (redis + gateway on loopback):

    .venv/bin/python -m load_tests.bench_grpo                 # 8 prompts x G=8, 81-frame 832x480 clips
    .venv/bin/python -m load_tests.bench_grpo --prompts 2 --frames 33   # quick look

The policy's samples are Wan-like float tensors (bfloat16 [T, C, H, W] in [0, 1]): a real photo panned
and zoomed, each sample graded with noise / blur / darkening / flicker. Producing them is not timed.

(a) ours: the SDK's tensor path - each sample cut to the model's T frames and H x W on the worker
    (``service.client.frames``), all 8 groups in ONE ``POST /v1/groups/upload`` (one pipeline run).
(b) what a user writes today: encode every sample to MP4 (timed separately: it is worker time too),
    then one ``/v1/group/upload`` per prompt with the full files; the server decodes and samples.
(c) a naive reward server as trainers' own servers are written (load_tests/naive_server.py's work, in
    process): decode every frame of each video once, one forward per pair, one order, no cache (measured
    on --naive-groups groups, reported per step = time per group x prompts).
Prints time per step, rewards/s, bytes uploaded per step and the ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from load_tests.run_load import KEY, Stack

KINDS = (("noise", 0.2), ("noise", 0.7), ("blur", 0.3), ("blur", 0.9), ("dark", 0.4), ("dark", 0.8),
         ("flicker", 0.6), ("noise", 0.05))


def base_clip(p: int, frames: int, height: int, width: int) -> np.ndarray:
    from service.examples import PHOTOS, pan_frames, photo

    return pan_frames(photo(PHOTOS[p % len(PHOTOS)]), frames, width, height, zoom=1.15 + 0.05 * p)


def sample(base: np.ndarray, k: int, seed: int):
    """The 'generator output': bfloat16 [T, C, H, W] in [0, 1]."""
    import torch

    from service.examples import degrade

    kind, strength = KINDS[k % len(KINDS)]
    frames = degrade(base, kind, strength, seed=seed)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.bfloat16).div_(255.0)


def to_mp4(video) -> bytes:
    """What a worker must do to send a file: back to uint8 RGB, then H.264 (the project's encoder)."""
    from service.examples import encode

    frames = (video.float().clamp(0, 1) * 255).round().to(dtype=__import__("torch").uint8)
    return encode(frames.permute(0, 2, 3, 1).contiguous().numpy(), "h264", fps=16)


def naive_group(model, mp4s: list[bytes]) -> None:
    """The naive server's work for one group (load_tests.naive_server): each video fully decoded once, the
    model's views of its T frames, one forward per pair in one order."""
    import torch

    from load_tests.naive_server import naive_sample

    views = model.config.views()
    clips = [{k: torch.from_numpy(v[None]) for k, v in naive_sample(m, views).items()} for m in mp4s]
    with torch.inference_mode():
        for i in range(len(clips)):
            for j in range(i + 1, len(clips)):
                model.forward_views(clips[i], clips[j])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--naive-groups", type=int, default=1)
    args = ap.parse_args()

    import torch

    from service.client import AesRMClient
    from service.client.frames import npy_bytes
    from service.client.grpo import GroupScorer, group_key
    from service.model.checkpoint import load_proxy

    from service.engine.threads import keep_freed_memory_mapped

    keep_freed_memory_mapped()  # (c) runs in this process: the gateway's allocator setting, as for the naive server
    torch.set_num_threads(2)
    n = args.prompts * args.group
    print(f"GRPO step: {args.prompts} prompts x G={args.group} = {n} samples, "
          f"{args.frames}x{args.height}x{args.width} bfloat16 [T,C,H,W] clips")
    with Stack({"AESRM_MAX_BATCH_WAIT_MS": "2", "AESRM_MAX_VIDEO_BYTES": str(256 * 1024 * 1024)}) as stack, \
            AesRMClient(stack.base, api_key=KEY, timeout=600) as client:
        scorer = GroupScorer(client, max_videos_per_call=n)
        scorer.prep.ensure(client)
        warm = scorer.prepare([sample(base_clip(99, 9, 64, 96), k, 0) for k in range(2)])
        scorer.score_prepared(["w", "w"], warm)  # model and connection warm, not timed

        keys, prepared, mp4s = [], [], []
        prep_s = enc_s = 0.0
        full_npy = 0
        for p in range(args.prompts):
            base = base_clip(p, args.frames, args.height, args.width)
            full_npy = len(npy_bytes(base))
            for k in range(args.group):
                video = sample(base, k, seed=p * 100 + k)
                t = time.perf_counter()
                prepared += scorer.prepare([video])
                prep_s += time.perf_counter() - t
                t = time.perf_counter()
                mp4s.append(to_mp4(video))
                enc_s += time.perf_counter() - t
                keys.append(group_key(f"prompt {p}"))
                del video
            del base

        t = time.perf_counter()
        ours = scorer.score_prepared(keys, prepared)
        ours_req = time.perf_counter() - t
        assert ours.ok.all(), ours.errors
        ours_step = prep_s + ours_req

        t = time.perf_counter()
        theirs = []
        for p in range(args.prompts):
            res = client.group(mp4s[p * args.group:(p + 1) * args.group])
            theirs += [x.reward for x in res.results]
        mp4_req = time.perf_counter() - t
        mp4_bytes = sum(len(m) for m in mp4s)

        model, _ = load_proxy()
        model.eval()
        t = time.perf_counter()
        for p in range(args.naive_groups):
            naive_group(model, mp4s[p * args.group:(p + 1) * args.group])
        naive_step = (time.perf_counter() - t) / args.naive_groups * args.prompts

    groups = [(np.asarray(ours.rewards[p * args.group:(p + 1) * args.group]),
               np.asarray(theirs[p * args.group:(p + 1) * args.group])) for p in range(args.prompts)]
    agree = np.mean([np.array_equal(np.argsort(a), np.argsort(b)) for a, b in groups])
    rank = lambda x: np.argsort(np.argsort(x)).astype(float)  # noqa: E731 - no ties in float rewards
    rho = np.mean([np.corrcoef(rank(a), rank(b))[0, 1] for a, b in groups])  # Spearman per group
    mb = 1e6
    rows = [
        ("(a) SDK tensor path, 1 x /v1/groups", ours_step, ours.request_bytes,
         f"prepare {prep_s:.2f} s + request {ours_req:.2f} s"),
        ("(b) MP4 per group, 1 request/group", enc_s + mp4_req, mp4_bytes,
         f"encode {enc_s:.2f} s + requests {mp4_req:.2f} s"),
        (f"(c) naive server ({args.naive_groups} group(s) x {args.prompts})", enc_s + naive_step, mp4_bytes,
         f"encode {enc_s:.2f} s + scoring {naive_step:.2f} s"),
    ]
    print(f"\n{'path':44s} {'s/step':>8s} {'rewards/s':>10s} {'MB up/step':>11s} {'MB/video':>9s}  detail")
    for name, sec, up, detail in rows:
        print(f"{name:44s} {sec:8.2f} {n / sec:10.1f} {up / mb:11.2f} {up / n / mb:9.3f}  {detail}")
    print(f"\nratios vs (a): (b) {rows[1][1] / ours_step:.1f}x time, {mp4_bytes / ours.request_bytes:.1f}x bytes; "
          f"(b) server part alone {mp4_req / ours_req:.1f}x the (a) request; (c) {rows[2][1] / ours_step:.1f}x time")
    print(f"full clip as uint8 .npy: {full_npy / mb:.1f} MB per video ({full_npy * n / mb:.0f} MB per step)")
    print(f"same within-group ranking (a) vs (b) (bfloat16 frames vs H.264): {agree:.0%} of groups identical, "
          f"mean Spearman rank correlation {rho:.2f}")


if __name__ == "__main__":
    main()
