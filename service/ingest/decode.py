"""Sparse frame sampling with PyAV: cost scales with the number of sampled frames, not the clip length.

The clip is cut into T equal segments and one frame is taken from each (as training clips are T evenly
spaced frames): a keyframe inside the segment when the container index shows one (one seek, one decoded
frame), else the first reference frame at or after the segment's anchor, reached by decoding forward with
non-reference frames skipped (FFmpeg's skip_frame=NONREF: B-frames nobody predicts from are never
decoded). H.264 streams whose slice headers prove that no P picture predicts from a B picture
(service.ingest.h264refs: x264 up to preset `veryfast`, b-pyramid strict or off, ...) are walked with every
B picture skipped (skip_frame=BIDIR), and the first I/P frame at or after the anchor is taken; the frames
decoded are bit-identical either way. We seek only when a keyframe lies between the current position and
the next target, so no frame is decoded twice. `DecodeStats.frames_decoded / T` is the cost figure (metric
aesrm_decode_frames_per_sample).
Limits (bytes, pixels, duration, frames) are enforced before and while decoding, so a hostile file can't
make us decode forever. Decode *work* is bounded too: a clip with one keyframe and 19,000 1080p frames is
small on the wire but forces decoding nearly every frame, so the pixels decoded may not exceed
`budget_pixels` per sampled frame (checked as each frame is decoded; -> 422 decode_budget_exceeded).
Rotation metadata is applied; variable frame rate is handled by using pts times. Raw elementary streams
(Annex-B .h264/.h265, MPEG video) cannot seek and have no timestamps: _sample_by_index takes them by frame
index. The picked frames become the model's views (service.ingest.views).
"""

from __future__ import annotations

import bisect
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from service import errors
from service.ingest.frames import uniform_indices
from service.ingest.h264refs import b_frames_disposable
from service.ingest.views import LETTERBOX, ViewSpec, render_frames

log = logging.getLogger(__name__)

# Demuxers that hold still images: a picture is not a video to judge for temporal quality.
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "gif", "tiff_pipe", "image2pipe"}
# Keep decoding forward (instead of seeking) when the next target is this close.
_SEEK_GAP_S = 0.5
# Where in its segment a sampled frame is aimed (0 = segment start, 0.5 = centre); see _pick_segments.
SEGMENT_ANCHOR = 0.0
# One thread per video: the decode pool runs videos in parallel, and slice threads cost ~7 % CPU here
# (created per container; most generator output has one slice per frame).
_THREAD_TYPE = "NONE"


# The B-frame proof demuxes every packet and reads its slice headers (~30 us a packet; decoding one 480p
# frame is ~1.3 ms): worth it up to this many packets per sampled frame, beyond that the walk keeps NONREF.
_PROOF_PACKETS_PER_SAMPLE = 100

DEFAULT_BUDGET_PIXELS = 1920 * 1080 * 600  # = Settings.decode_budget_pixels' default

# Raw elementary streams (Annex-B .h264 / .h265, MPEG-1/2 video, MPEG-4 part 2): no index, no container
# timestamps, and FFmpeg refuses to seek them, so they are sampled by frame index in two passes instead.
_RAW_STREAMS = {"h264", "hevc", "mpegvideo", "m4v"}


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    max_duration_s: float
    max_frames: int
    budget_pixels: int = DEFAULT_BUDGET_PIXELS  # decode work per sampled frame (frames x width x height)

    @classmethod
    def from_settings(cls, settings) -> "DecodeLimits":
        return cls(settings.max_pixels, settings.max_duration_s, settings.max_frames, settings.decode_budget_pixels)


@dataclass
class DecodeStats:
    codec: str = ""
    width: int = 0
    height: int = 0
    duration_s: float = 0.0
    rotation: int = 0
    frames_decoded: int = 0
    pixels_decoded: int = 0
    seeks: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def decode_sample(
    source: bytes | Path, frames: int, width: int, height: int, limits: DecodeLimits, item=None
) -> tuple[np.ndarray, DecodeStats]:
    """Decode `frames` uniformly spaced frames of `source`, fitted to [frames, height, width, 3] uint8."""
    views, stats = decode_views(source, (ViewSpec("frames", LETTERBOX, frames, height, width),), limits, item)
    return views["frames"], stats


def decode_views(source: bytes | Path, specs: tuple[ViewSpec, ...], limits: DecodeLimits, item=None
                 ) -> tuple[dict[str, np.ndarray], DecodeStats]:
    """Decode the views' T uniformly spaced frames of `source` once and render every view from them:
    {view name: uint8 [T, H, W, 3]} (service.ingest.views). All views share one T."""
    frames = specs[0].frames
    started = time.perf_counter()
    stats = DecodeStats()
    try:
        container = _open(source)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise errors.VideoUndecodable(f"cannot open container: {_short(exc)}", item=item) from exc
    try:
        with container:
            if container.format.name in _RAW_STREAMS and container.streams.video:
                picked = _sample_by_index(source, container, frames, limits, stats, item)
            else:
                picked = _sample(container, frames, limits, stats, item)
            rotation = int(round((getattr(picked[0], "rotation", 0) or 0) / 90.0)) % 4
            stats.rotation = rotation * 90
            out = render_frames(picked, specs, rotation)
    except errors.ServiceError:
        raise
    except Exception as exc:  # hostile-input boundary: whatever FFmpeg trips on is the input's fault
        log.info("decode failed for item %s", item, exc_info=True)
        raise errors.VideoUndecodable(f"decode failed: {_short(exc)}", item=item) from exc
    stats.seconds = time.perf_counter() - started
    return out, stats


def _open(source: bytes | Path):
    """Open for demuxing. skip_frame=all reaches only the decoders that avformat_find_stream_info runs to
    probe streams a container already declares (MP4, MKV, WebM, AVI): without it the probe decodes the
    first keyframe (4 of ~50 ms CPU for a 480p clip) only to learn a pixel format that our own decode
    learns anyway. Our decoders are made afresh from the stream parameters and never see the option;
    formats that declare no streams up front (MPEG-TS, raw streams) are probed as before."""
    return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r",
                   metadata_errors="ignore", options={"skip_frame": "all"})


def _check_size(stream, limits: DecodeLimits, stats: DecodeStats, item) -> None:
    """Record the stream's codec and size; refuse a frame size beyond max_pixels before decoding."""
    ctx = stream.codec_context
    stats.codec, stats.width, stats.height = ctx.name, ctx.width or 0, ctx.height or 0
    if stats.width * stats.height > limits.max_pixels:
        raise errors.VideoTooManyPixels(
            f"{stats.width}x{stats.height} exceeds max_pixels={limits.max_pixels}", item=item)


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _sample(container, frames, limits, stats, item) -> list:
    if container.format.name in _IMAGE_FORMATS or (container.format.name or "").endswith("_pipe"):
        raise errors.VideoUndecodable(f"'{container.format.name}' is a still image, not a video", item=item)
    if not container.streams.video:
        raise errors.NoVideoStream("container has no video stream", item=item)
    stream = container.streams.video[0]
    _check_size(stream, limits, stats, item)
    if stream.frames and stream.frames > limits.max_frames:
        raise errors.VideoTooManyFrames(f"{stream.frames} frames > max_frames={limits.max_frames}", item=item)
    stream.thread_type = _THREAD_TYPE  # frame threading would add a pipeline refill after every seek

    tb = float(stream.time_base) if stream.time_base else None
    start = float(stream.start_time * tb) if (stream.start_time is not None and tb) else 0.0
    duration = _duration(container, stream, tb)
    if duration is None:  # not declared: learn it from packet timestamps (demux only, no decode)
        duration = _scan_duration(container, stream, tb, start, limits, item)
        container.seek(0)
    stats.duration_s = duration
    if duration > limits.max_duration_s:
        raise errors.VideoTooLong(f"{duration:.1f}s > max_duration_s={limits.max_duration_s}", item=item)

    picked = _pick_segments(container, stream, tb, start, duration, frames, limits, stats, item)
    if not picked:
        raise errors.VideoUndecodable("no frame could be decoded", item=item)
    stats.extra["picked_pts"] = [f.pts for f in picked]
    return picked


def _sample_by_index(source, container, frames, limits, stats, item) -> list:
    """T frames at uniform frame indices of a raw elementary stream: count its packets (demux only), then
    decode from the start up to the last index once. Limits hold as for containers; the decode budget per
    sampled frame bounds the walk (such streams have no keyframe index to jump with)."""
    stream = container.streams.video[0]
    _check_size(stream, limits, stats, item)
    count = 0
    for packet in container.demux(stream):
        count += bool(packet.size)
        if count > limits.max_frames:
            raise errors.VideoTooManyFrames(f"more than max_frames={limits.max_frames} frames", item=item)
    if count == 0:
        raise errors.VideoUndecodable("no video packets", item=item)
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    stats.duration_s = count / rate
    if stats.duration_s > limits.max_duration_s:
        raise errors.VideoTooLong(f"{stats.duration_s:.1f}s > max_duration_s={limits.max_duration_s}", item=item)
    want = uniform_indices(count, frames).tolist()
    kept: dict[int, av.VideoFrame] = {}
    with _open(source) as again:
        s2 = again.streams.video[0]
        s2.thread_type = _THREAD_TYPE
        for n, frame in enumerate(again.decode(s2)):
            _count_decoded(stats, limits, item, frame, len(kept), frames)
            if n in want:
                kept[n] = frame
            if n >= want[-1]:
                break
    if not kept:
        raise errors.VideoUndecodable("no frame could be decoded", item=item)
    stats.extra["walk_skip"] = "raw stream: by index"
    last = kept[max(kept)]
    picked = [kept.get(i, last) for i in want]  # fewer frames decoded than packets: repeat the last
    stats.extra["picked_pts"] = [f.pts for f in picked]
    return picked


def _duration(container, stream, tb) -> float | None:
    if stream.duration and tb:
        return float(stream.duration * tb)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _scan_duration(container, stream, tb, start, limits, item) -> float:
    last, count = start, 0
    for packet in container.demux(stream):
        if packet.pts is not None and tb:
            last = max(last, float(packet.pts * tb) + float((packet.duration or 0) * tb))
        count += 1
        if count > limits.max_frames:
            raise errors.VideoTooManyFrames(f"more than max_frames={limits.max_frames} packets", item=item)
        if last - start > limits.max_duration_s:
            raise errors.VideoTooLong(f"longer than max_duration_s={limits.max_duration_s}", item=item)
    if count == 0:
        raise errors.VideoUndecodable("no video packets", item=item)
    return max(last - start, 1e-3)


def _frame_time(frame, tb) -> float | None:
    if frame.pts is None or not tb:
        return None
    return float(frame.pts * tb)


def _keyframe_times(stream, tb) -> list[float] | None:
    """Keyframe times from the container index (MP4/MOV have it up front); None when unknown."""
    try:
        entries = stream.index_entries
        if entries is None or len(entries) < 2 or not tb:
            return None
        return sorted(float(e.timestamp * tb) for e in entries if e.is_keyframe)
    except (AttributeError, av.FFmpegError):
        return None


def _keyframe_pts(stream, tb, start: float) -> list[float] | None:
    """Keyframe presentation times. MP4 indexes hold decode times, which with B-frames run a constant
    reorder delay ahead of presentation (the first entry is before the stream's start); undo that shift."""
    keys = _keyframe_times(stream, tb)
    if not keys:
        return keys
    try:
        first = min(float(e.timestamp * tb) for e in stream.index_entries)
    except (AttributeError, TypeError, av.FFmpegError):
        return keys
    shift = start - first
    return [k + shift for k in keys] if 0 < shift < 1.0 else keys


def _should_seek(keyframes: list[float] | None, current_t: float, target: float) -> bool:
    """Seek only when it saves work: a keyframe lies between where we are and the target. Without an
    index, seek when the target is more than _SEEK_GAP_S ahead."""
    if keyframes is None:
        return target - current_t > _SEEK_GAP_S
    k = bisect.bisect_right(keyframes, target) - 1  # last keyframe at or before the target
    return k >= 0 and keyframes[k] > current_t + 1e-6


def _pick_frames(container, stream, tb, targets, limits, stats, item, done: int = 0, total: int | None = None
                 ) -> list:
    """For each target time, the first decoded frame at or after it (or the last frame of the clip).
    `done` / `total`: frames already sampled by the caller and the clip's T, for the decode budget."""
    total = len(targets) if total is None else total
    picked: list = []
    decoder = None
    current = None  # last decoded frame
    current_t = -float("inf")
    keyframes = _keyframe_times(stream, tb)
    for target in targets:
        if decoder is None or _should_seek(keyframes, current_t, target):
            decoder = _seek_decoder(container, stream, tb, target, stats)
            current, current_t = None, -float("inf")
        current, current_t = _walk_to(decoder, target, current, current_t, tb,
                                      lambda f: _count_decoded(stats, limits, item, f, done + len(picked), total))
        if current is None:  # seek landed past the end: fall back to the previous pick
            if picked:
                picked.append(picked[-1])
            continue
        picked.append(current)
    return picked


def segment_targets(start: float, duration: float, frames: int, keyframes: list[float] | None,
                    anchor: float = SEGMENT_ANCHOR) -> list[tuple[float, float, float]]:
    """(target, segment start, segment end) for each of `frames` equal segments of the clip. The target is
    a keyframe inside the segment when there is one (reached by one seek and one decoded frame), else the
    point `anchor` (0 = start, 0.5 = centre) of the segment."""
    out = []
    for k in range(frames):
        s, e = start + k * duration / frames, start + (k + 1) * duration / frames
        target = s + anchor * (e - s)
        if keyframes:
            i = bisect.bisect_left(keyframes, s - 1e-6)
            if i < len(keyframes) and keyframes[i] < e - 1e-6:
                target = keyframes[i]
        out.append((target, s, e))
    return out


def _walk_skip(container, stream, frames: int, stats: DecodeStats) -> str:
    """The skip_frame setting for walking: "BIDIR" when the stream is H.264 and its slice headers prove that
    skipping every B picture leaves each I/P picture bit-exact (service.ingest.h264refs), else "NONREF".
    Reads the packets once (demux only, no decode); the caller seeks before decoding."""
    stats.extra["walk_skip"] = "NONREF"
    if stream.codec_context.name != "h264":
        return "NONREF"
    cap = _PROOF_PACKETS_PER_SAMPLE * frames
    if stream.frames and stream.frames > cap:
        stats.extra["walk_skip_reason"] = f"more than {cap} packets"
        return "NONREF"
    packets: list[tuple[bytes, bool]] = []
    try:
        for packet in container.demux(stream):
            if packet.size:
                packets.append((bytes(packet), packet.is_keyframe))
                if len(packets) > cap:
                    stats.extra["walk_skip_reason"] = f"more than {cap} packets"
                    return "NONREF"
    except av.FFmpegError:  # the decode that follows reports what is wrong with the file
        return "NONREF"
    ok, reason = b_frames_disposable(stream.codec_context.extradata, packets)
    stats.extra["walk_skip_reason"] = reason
    if ok:
        stats.extra["walk_skip"] = "BIDIR"
    return stats.extra["walk_skip"]


def _pick_segments(container, stream, tb, start, duration, frames, limits, stats, item) -> list:
    """One frame per segment, walking with non-reference frames skipped (the decoder never outputs them),
    and every B frame too where that is proven exact (_walk_skip).

    Training clips are T consecutive, evenly spaced frames, and a frame anywhere in a target's segment
    keeps that spacing to within a fraction of a segment, so the cheapest frame in each segment is taken:
    a keyframe in it, else the first reference frame at or after its anchor. Reference frames are what
    the walk has to decode anyway, so skipping the others costs nothing in fidelity of the picked frame.
    When a segment holds no frame the walk decodes (very short clips), that one target is decoded exactly;
    when the codec outputs nothing with skipping, the whole clip falls back to exact targets.
    """
    keyframes = _keyframe_pts(stream, tb, start)
    segments = segment_targets(start, duration, frames, keyframes)
    ctx = stream.codec_context
    walk_skip = _walk_skip(container, stream, frames, stats)
    ctx.skip_frame = walk_skip
    picked: list = []
    decoder, current, current_t = None, None, -float("inf")
    for target, _, seg_end in segments:
        if decoder is None or _should_seek(keyframes, current_t, target):
            decoder = _seek_decoder(container, stream, tb, target, stats)
            current, current_t = None, -float("inf")
        current, current_t = _walk_to(decoder, target, current, current_t, tb,
                                      lambda f: _count_decoded(stats, limits, item, f, len(picked), frames))
        if current is not None and current_t < seg_end - 1e-6:
            picked.append(current)
            continue
        # no reference frame in this segment (or the walk ran off the end): decode this target exactly
        if current is None and not picked and stats.frames_decoded == 0:
            ctx.skip_frame = "DEFAULT"
            return _pick_frames(container, stream, tb, [t for t, _, _ in segments], limits, stats, item)
        ctx.skip_frame = "DEFAULT"
        exact = _pick_frames(container, stream, tb, [target], limits, stats, item, len(picked), frames)
        ctx.skip_frame = walk_skip
        decoder, current, current_t = None, None, -float("inf")
        if exact:
            picked.append(exact[0])
        elif picked:
            picked.append(picked[-1])
    return picked


def _walk_to(decoder, target: float, current, current_t: float, tb, count) -> tuple:
    """Decode forward until a frame at or after `target` (or the end): (last frame, its time)."""
    while current is None or current_t < target - 1e-6:
        frame = next(decoder, None)
        if frame is None:
            break
        count(frame)
        current = frame
        t = _frame_time(frame, tb)
        current_t = t if t is not None else current_t + 1e-3
    return current, current_t


def _count_decoded(stats: DecodeStats, limits: DecodeLimits, item, frame, done: int, total: int) -> None:
    """Account one decoded frame; refuse once the clip needs more frames, or more decode work per sampled
    frame, than the limits allow (checked as each frame decodes, whichever path decodes it)."""
    stats.frames_decoded += 1
    stats.pixels_decoded += frame.width * frame.height
    if stats.frames_decoded > limits.max_frames:
        raise errors.VideoTooManyFrames(f"decoded more than max_frames={limits.max_frames}", item=item)
    if stats.pixels_decoded > limits.budget_pixels * (done + 1):
        raise errors.DecodeBudgetExceeded(
            f"sampling frame {done + 1} of {total} needed more than decode_budget_pixels={limits.budget_pixels} "
            f"per sampled frame ({stats.frames_decoded} frames decoded so far; re-encode with more keyframes)",
            item=item)


def _seek_decoder(container, stream, tb, target, stats):
    if tb and target > 0:
        try:
            container.seek(int(target / tb), stream=stream, backward=True, any_frame=False)
            stats.seeks += 1
        except av.FFmpegError:
            container.seek(0)
    else:
        container.seek(0)
    return _decode_iter(container, stream)


def _decode_iter(container, stream):
    for packet in container.demux(stream):
        for frame in packet.decode():
            yield frame
