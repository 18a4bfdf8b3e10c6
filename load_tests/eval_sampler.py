"""Does the frame sampler keep the model's accuracy on real encoded video? Held-out sources, one run.

    .venv/bin/python -m load_tests.eval_sampler [--per-criterion 8] [--gop-s 1 2] [--checkpoint CKPT]

`aesrm-eval` scores clips rendered straight at the model input (T frames, no codec), so it cannot see the
sampler. Here the same held-out edit groups (service.training.data, test split) are rendered as 5 s,
24 fps camera paths at their generator resolution, encoded with libx264 `veryfast` (B-frames with
b-pyramid, like typical generator output) at the given GOPs, and decoded twice:
- exact: every frame decoded, the first frame at or after each segment centre (the previous sampler);
- served: `decode_views` (one frame per segment, keyframes used, non-reference frames skipped, and every
  B frame where the slice headers prove that exact: libx264 veryfast does).
Both make every view of the model (service.ingest.views) from the frames they picked.
Accuracy per dimension / criterion is printed for both, with decoded frames per sampled frame.
`frame_stutter` is left out: its edit freezes up to 6 of T rendered frames, which at 120 frames is not
the defect the model was trained on for any sampler.
"""

from __future__ import annotations

import argparse
import io
import time

import av
import numpy as np
import torch

from service.ingest.decode import DecodeLimits, decode_views
from service.ingest.views import render_frames
from service.training import data
from service.training.evaluate import EVAL_SEED, evaluate_groups

FPS, SECONDS = 24, 5
LIMITS = DecodeLimits(max_pixels=3840 * 2160, max_duration_s=600, max_frames=100_000)


def encode(frames: np.ndarray, gop_s: float) -> bytes:
    from service.examples import encode as encode_clip

    return encode_clip(frames, "h264", fps=FPS, gop=int(gop_s * FPS),
                       options={"preset": "veryfast", "crf": "20", "threads": "1"})


def exact_sample(video: bytes, t: int) -> np.ndarray:
    """Full decode; the first frame at or after each segment centre (the sampler this one replaced)."""
    with av.open(io.BytesIO(video)) as c:
        s = c.streams.video[0]
        tb = float(s.time_base)
        frames = [(float(f.pts * tb), f) for f in c.decode(s)]
    start, end = frames[0][0], frames[-1][0] + 1 / FPS
    out = []
    for k in range(t):
        target = start + (k + 0.5) * (end - start) / t
        out.append(next((f for ts, f in frames if ts >= target - 1e-6), frames[-1][1]))
    return _packed(render_frames(out, data.VIEWS))


def _packed(views: dict[str, np.ndarray]) -> np.ndarray:
    """The views stacked along time, as evaluate_groups takes clips (service.training.data.model_input)."""
    return np.concatenate([views[v.name] for v in data.VIEWS])


def render_groups(per_criterion: int) -> list:
    """The held-out groups as long clips at source resolution ([K, 120, h, w, 3] each)."""
    from service.training.sources import load_sources

    test = [s for s in load_sources() if s.split == "test"]
    old_t, old_input = data.T, data.model_input
    data.T, data.model_input = FPS * SECONDS, lambda clip: clip  # render the path at 24 fps, no views made
    try:
        return [data.sample_group(test, np.random.default_rng([EVAL_SEED, c, i]), criterion=c)
                for c, name in enumerate(data.CRITERIA) if name != "frame_stutter"
                for i in range(per_criterion)]
    finally:
        data.T, data.model_input = old_t, old_input


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-criterion", type=int, default=8)
    ap.add_argument("--gop-s", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    args = ap.parse_args()
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy

    torch.set_num_threads(args.threads)
    model, manifest = load_proxy(args.checkpoint or DEFAULT_CHECKPOINT)
    t0 = time.time()
    groups = render_groups(args.per_criterion)
    print(f"{manifest['model_id']} {manifest['version']}: {len(groups)} held-out groups rendered "
          f"({time.time() - t0:.0f} s), {SECONDS} s at {FPS} fps, libx264 veryfast")
    for gop in args.gop_s:
        exact, served, decoded = [], [], []
        for clips, c, st in groups:
            videos = [encode(clip, gop) for clip in clips]
            exact.append((np.stack([exact_sample(v, data.T) for v in videos]), c, st))
            picks = [decode_views(v, data.VIEWS, LIMITS) for v in videos]
            served.append((np.stack([_packed(p[0]) for p in picks]), c, st))
            decoded += [p[1].frames_decoded / data.T for p in picks]
        me, ms = evaluate_groups(model, exact), evaluate_groups(model, served)
        print(f"\nGOP {gop:g} s: decoded frames per sampled frame (served) mean {np.mean(decoded):.2f} "
              f"max {np.max(decoded):.2f}; exact sampler decodes {FPS * SECONDS / data.T:.1f}")
        print(f"  {'':24s} {'exact':>7s} {'served':>7s}")
        for d in ("VA", "VF", "VP"):
            print(f"  {d:24s} {me['dimensions'][d]:7.3f} {ms['dimensions'][d]:7.3f}")
        for name in data.CRITERIA:
            if me["criteria"][name] is not None:
                print(f"  {name:24s} {me['criteria'][name]:7.3f} {ms['criteria'][name]:7.3f}")
        print(f"  {'dimension_mean':24s} {me['dimension_mean']:7.3f} {ms['dimension_mean']:7.3f}   "
              f"({me['pairs']} pairs)")


if __name__ == "__main__":
    main()
