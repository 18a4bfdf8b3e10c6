"""Ingest on real encoded files: codecs, rotation, odd sizes, VFR, sparse seeking, limits, bad input."""

from __future__ import annotations

import io
import pickle
from fractions import Fraction

import av
import numpy as np
import pytest

from service import errors
from service.examples import encode, pan_frames, photo
from service.ingest import sources
from service.contract import LETTERBOX, ViewSpec
from service.ingest.decode import DecodeLimits, decode_sample
from service.ingest.frames import uniform_indices
from service.ingest.views import render_frame
from service.ingest.h264refs import b_frames_disposable

LIMITS = DecodeLimits(max_pixels=3840 * 2160, max_duration_s=120, max_frames=20_000)


@pytest.fixture(scope="module")
def frames():
    return pan_frames(photo("path"), 48, 320, 180)


@pytest.mark.parametrize("codec", ["h264", "vp9", "av1", "mpeg4"])
def test_each_codec_decodes_to_the_model_input(frames, codec):
    out, stats = decode_sample(encode(frames, codec), 8, 128, 128, LIMITS)
    assert out.shape == (8, 128, 128, 3) and out.dtype == np.uint8
    assert stats.duration_s == pytest.approx(2.0, abs=0.1)
    # letterboxed 16:9 content: black bars top and bottom, picture in the middle rows
    assert out[:, :10].max() == 0 and out[:, 60:68].mean() > 20
    # a pan: sampled frames differ from each other
    assert np.abs(out[0].astype(int) - out[-1].astype(int)).mean() > 5


def _grey_ramp(n: int, step: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Frames that are flat grey levels = step x their index, so a decoded level tells which frame it was."""
    levels = (np.arange(n) * step).astype(np.uint8)
    return levels, np.broadcast_to(levels[:, None, None, None], (n, 64, 64, 3)).copy()


def _x264_with_b_frames(frames: np.ndarray, gop: int, fps: int = 24) -> bytes:
    """libx264 `veryfast`: B-frames with b-pyramid, as typical generator output is encoded."""
    return encode(frames, "h264", fps, gop=gop, options={"preset": "veryfast", "crf": "18", "threads": "1"})


def _frame_indices(out: np.ndarray, step: int) -> np.ndarray:
    return np.round(out[:, 32, 32, 0].astype(float) / step).astype(int)


def test_samples_follow_time_one_frame_from_each_segment():
    # 48 frames, T=8: the k-th sample must come from frames [6k, 6k + 6), so samples spread over the clip
    _, clip = _grey_ramp(48, step=5)
    out, _ = decode_sample(encode(clip, "h264", gop=12), 8, 64, 64, LIMITS)
    idx = _frame_indices(out, 5)
    assert np.all((idx >= np.arange(8) * 6) & (idx < np.arange(1, 9) * 6)), idx


def test_b_frame_clip_skips_non_reference_frames_and_uses_keyframes():
    # 5 s at 24 fps, keyframe every second, B-frames: each sample still in its segment, and the decoder
    # outputs at most 3 frames per sampled frame (it decoded 120 before non-reference skipping)
    _, clip = _grey_ramp(120)
    data = _x264_with_b_frames(clip, gop=24)
    with av.open(io.BytesIO(data)) as c:
        assert any(f.pict_type == av.video.frame.PictureType.B for f in c.decode(video=0))
    out, stats = decode_sample(data, 8, 64, 64, LIMITS)
    idx = _frame_indices(out, 2)  # grey steps of 2: +-1 frame of codec error
    assert np.all((idx >= np.arange(8) * 15 - 1) & (idx <= np.arange(1, 9) * 15)), idx
    assert stats.frames_decoded <= 3 * 8, stats


def test_short_b_frame_clip_still_gives_one_frame_per_segment():
    # 12 frames for 8 samples: segments hold 1-2 frames, often no reference frame -> exact decode there
    _, clip = _grey_ramp(12, step=10)
    out, _ = decode_sample(_x264_with_b_frames(clip, gop=12), 8, 64, 64, LIMITS)
    idx = _frame_indices(out, 10)
    lo, hi = np.floor(np.arange(8) * 1.5), np.ceil(np.arange(1, 9) * 1.5)
    assert np.all((idx >= lo) & (idx < hi)), idx


# (encoder, options, container) of the encoders PyAV ships; the walk may skip every B frame only where the
# H.264 slice headers prove that no P frame predicts from one (service.ingest.h264refs)
_ENCODERS = {
    "x264 veryfast (b-pyramid normal, 1 ref)": ("libx264", {"preset": "veryfast", "crf": "23"}, "mp4", "BIDIR"),
    "x264 medium (b-pyramid normal, 3 refs)": ("libx264", {"preset": "medium", "crf": "23"}, "mp4", "NONREF"),
    "x264 medium b-pyramid=strict": ("libx264", {"preset": "medium", "crf": "23", "x264-params": "b-pyramid=strict"},
                                     "mp4", "BIDIR"),
    "x264 veryfast b-pyramid=none": ("libx264", {"preset": "veryfast", "crf": "23", "x264-params": "b-pyramid=none"},
                                     "mp4", "BIDIR"),
    "x264 veryfast bframes=0": ("libx264", {"preset": "veryfast", "crf": "23", "x264-params": "bframes=0"}, "mp4",
                                "BIDIR"),
    "x264 veryfast, Matroska": ("libx264", {"preset": "veryfast", "crf": "23"}, "matroska", "BIDIR"),
    "x264 veryfast open-gop, MPEG-TS": ("libx264", {"preset": "veryfast", "crf": "23", "x264-params": "open-gop=1"},
                                        "mpegts", "NONREF"),
    "x265 medium": ("libx265", {"preset": "medium", "crf": "28",
                                "x265-params": "log-level=error:pools=1:frame-threads=1"}, "mp4", "NONREF"),
    "mpeg4 bf=2": ("mpeg4", {"bf": "2", "qscale": "4"}, "mp4", "NONREF"),
    "vp9": ("libvpx-vp9", {"deadline": "good", "cpu-used": "8", "crf": "32", "b:v": "0"}, "webm", "NONREF"),
}


def _encode_with(frames: np.ndarray, encoder: str, options: dict, fmt: str, gop: int, fps: int = 24) -> bytes:
    opts = dict(options, threads="1") if encoder != "libx265" else options  # x265 takes its own pools option
    return encode(frames, fps=fps, gop=gop, options=opts, encoder=encoder, fmt=fmt)


def _full_decode(data: bytes, skip: str = "DEFAULT") -> dict:
    """pts -> (picture type letter, decoded planes) of every frame the decoder outputs with `skip`."""
    out = {}
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        stream.codec_context.skip_frame = skip
        for f in c.decode(stream):
            out[f.pts] = ("?IPB"[int(f.pict_type)] if int(f.pict_type) < 4 else "?", f)
    return out


@pytest.fixture(scope="module")
def pan_5s():
    return pan_frames(photo("path"), 120, 160, 96)


@pytest.mark.parametrize("name", list(_ENCODERS))
def test_picked_frames_are_bit_identical_to_a_full_decode(pan_5s, name):
    # 5 s at 24 fps, keyframe every 2 s: each sampled frame must be exactly the frame a full decode (no frame
    # skipped) gives at the same pts, whichever frames the walk skipped to get there
    encoder, options, fmt, expect = _ENCODERS[name]
    data = _encode_with(pan_5s, encoder, options, fmt, gop=48)
    full = _full_decode(data)
    out, stats = decode_sample(data, 8, 64, 64, LIMITS)
    assert stats.extra["walk_skip"] == expect, stats.extra
    view = ViewSpec("frames", LETTERBOX, 8, 64, 64)
    for k, pts in enumerate(stats.extra["picked_pts"]):
        assert np.array_equal(out[k], render_frame(full[pts][1], view)), (name, k, pts)
        if expect == "BIDIR":
            assert full[pts][0] in "IP", (name, k, full[pts][0])  # only I/P frames were decoded on the walk


@pytest.mark.parametrize("name", [n for n in _ENCODERS if _ENCODERS[n][0] == "libx264"])
def test_b_frame_proof_agrees_with_what_skipping_b_frames_does(pan_5s, name):
    # the proof's answer against the decoder: where it says yes, every I/P frame decoded with all B frames
    # skipped equals the full decode; x264 medium is the hazard it guards: P frames predict from B-pyramid
    # frames there, and FFmpeg conceals the skipped references without an error or a corrupt flag
    encoder, options, fmt, expect = _ENCODERS[name]
    data = _encode_with(pan_5s, encoder, options, fmt, gop=48)
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        ok, reason = b_frames_disposable(stream.codec_context.extradata,
                                         [(bytes(p), p.is_keyframe) for p in c.demux(stream) if p.size])
    assert ok == (expect == "BIDIR"), reason
    full, skipped = _full_decode(data), _full_decode(data, "BIDIR")
    assert {pts for pts, (kind, _) in full.items() if kind in "IP"} == set(skipped)
    differ = [pts for pts, (_, f) in skipped.items() if not np.array_equal(f.to_ndarray(), full[pts][1].to_ndarray())]
    if ok:
        assert differ == []
    elif "medium (b-pyramid normal" in name:
        assert "predicts from a B picture" in reason and len(differ) > len(skipped) // 2
        assert not any(f.is_corrupt for _, f in skipped.values())


def test_b_frame_skipping_halves_the_walk_at_gop_2s(pan_5s):
    # the bench's case (x264 veryfast, b-pyramid, GOP 2 s): <= 3 decoded frames per sampled frame, where
    # skipping non-reference frames only decodes every B-pyramid frame too
    data = _encode_with(pan_5s, "libx264", {"preset": "veryfast", "crf": "23"}, "mp4", gop=48)
    _, stats = decode_sample(data, 8, 64, 64, LIMITS)
    assert stats.extra["walk_skip"] == "BIDIR" and stats.frames_decoded <= 3 * 8, stats
    medium = _encode_with(pan_5s, "libx264", {"preset": "medium", "crf": "23"}, "mp4", gop=48)
    _, nonref = decode_sample(medium, 8, 64, 64, LIMITS)
    assert nonref.extra["walk_skip"] == "NONREF" and nonref.frames_decoded > stats.frames_decoded, nonref


def test_b_frame_proof_on_damaged_headers_answers_without_raising(pan_5s):
    # hostile input reaches the proof before the decoder: corrupted parameter sets and slice headers of a
    # real stream must give an answer (mostly "not proven"), never an exception or a runaway loop
    data = _encode_with(pan_5s[:24], "libx264", {"preset": "veryfast", "crf": "23"}, "mp4", gop=12)
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        extradata = stream.codec_context.extradata
        packets = [(bytes(p), p.is_keyframe) for p in c.demux(stream) if p.size]
    assert b_frames_disposable(extradata, packets)[0]
    rng = np.random.default_rng(0)
    answers = set()
    for _ in range(300):
        ex, pk = bytearray(extradata), [(bytearray(d), k) for d, k in packets]
        for _ in range(int(rng.integers(1, 6))):
            j = int(rng.integers(len(pk) + 1))
            buf = ex if j == len(pk) else pk[j][0]
            buf[int(rng.integers(min(len(buf), 64)))] = int(rng.integers(256))
        ok, reason = b_frames_disposable(bytes(ex), [(bytes(d), k) for d, k in pk])
        answers.add(ok)
        assert isinstance(ok, bool) and (ok or reason)
    assert answers == {True, False}
    assert b_frames_disposable(extradata, [(b"\x00\x00\x00\x05\x65", True)]) == (False, "bad NAL length")
    assert b_frames_disposable(None, [(b"no start code", True)]) == (False, "a keyframe that is not an IDR picture")


@pytest.mark.parametrize("encoder,fmt", [("libx264", "h264"), ("libx265", "hevc"), ("mpeg2video", "mpeg2video")])
def test_raw_elementary_streams_are_sampled_by_frame_index(pan_5s, encoder, fmt):
    """Annex-B .h264 / .h265 and MPEG-2 elementary streams cannot seek (FFmpeg: 'Operation not permitted')
    and carry no container timestamps: T frames at uniform frame indices, exactly those of a full decode."""
    opts = {"x265-params": "log-level=error"} if encoder == "libx265" else {}
    data = encode(pan_5s, encoder=encoder, fmt=fmt, gop=48, options=opts)
    out, stats = decode_sample(data, 8, 64, 64, LIMITS)
    with av.open(io.BytesIO(data)) as c:
        assert c.format.name in ("h264", "hevc", "mpegvideo")
        full = list(c.decode(video=0))
    view = ViewSpec("frames", LETTERBOX, 8, 64, 64)
    for k, i in enumerate(uniform_indices(len(full), 8)):
        assert np.array_equal(out[k], render_frame(full[i], view)), (fmt, k, i)
    # duration = frames / frame rate, and these streams do not state one: FFmpeg's 25 fps guess (24 here)
    assert stats.duration_s == pytest.approx(5.0, rel=0.05) and stats.frames_decoded <= len(full)
    with pytest.raises(errors.VideoTooManyFrames):  # limits hold on this path too
        decode_sample(data, 8, 64, 64, DecodeLimits(max_pixels=3840 * 2160, max_duration_s=120, max_frames=50))


def test_rotation_metadata_is_applied(frames):
    out, stats = decode_sample(encode(frames, "h264", rotation=90), 8, 128, 128, LIMITS)
    assert stats.rotation in (90, 270)
    cols = (out[0].max(axis=(0, 2)) > 0).sum()
    rows = (out[0].max(axis=(1, 2)) > 0).sum()
    assert rows == 128 and cols < 90  # landscape source displayed as portrait


def test_odd_sizes_decode(frames):
    odd = pan_frames(photo(), 12, 333, 187)
    out, stats = decode_sample(encode(odd, "h264", pix_fmt="yuv444p"), 8, 128, 128, LIMITS)
    assert (stats.width, stats.height) == (333, 187) and out.shape == (8, 128, 128, 3)


def test_variable_frame_rate_uses_timestamps(frames):
    out, stats = decode_sample(encode(frames, "h264", pts_jitter=True), 8, 128, 128, LIMITS)
    assert out.shape == (8, 128, 128, 3) and stats.duration_s > 1.0


def test_sparse_decode_skips_most_of_a_long_clip():
    long_clip = np.repeat(pan_frames(photo(), 60, 160, 90), 24, axis=0)  # 60 s at 24 fps
    data = encode(long_clip, "h264", gop=48)
    out, stats = decode_sample(data, 8, 128, 128, LIMITS)
    assert out.shape == (8, 128, 128, 3)
    assert stats.frames_decoded < len(long_clip) / 4, stats


@pytest.mark.parametrize("payload,error", [
    (b"", errors.VideoUndecodable),
    (b"\x00\x01garbage" * 1000, errors.VideoUndecodable),
])
def test_garbage_is_undecodable(payload, error):
    with pytest.raises(error):
        decode_sample(payload, 8, 128, 128, LIMITS)


def test_truncated_file_is_a_4xx(frames):
    data = encode(frames, "h264")
    for cut in (len(data) // 10, len(data) // 2):
        try:
            out, _ = decode_sample(data[:cut], 8, 128, 128, LIMITS)
        except errors.ServiceError as exc:
            assert exc.status < 500
        else:  # a truncated stream may still yield frames; then they must be well-formed
            assert out.shape == (8, 128, 128, 3)


def test_still_image_is_refused():
    data = (sources.__file__.rsplit("/", 2)[0] + "/examples/path.jpg")
    with pytest.raises(errors.VideoUndecodable, match="still image"):
        decode_sample(open(data, "rb").read(), 8, 128, 128, LIMITS)


def test_audio_only_has_no_video_stream():
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
        for p in stream.encode(frame):
            out.mux(p)
        for p in stream.encode():
            out.mux(p)
    with pytest.raises(errors.NoVideoStream):
        decode_sample(buf.getvalue(), 8, 128, 128, LIMITS)


def test_duration_pixel_and_frame_limits_raise_their_typed_errors(frames):
    data = encode(frames, "h264")
    with pytest.raises(errors.VideoTooLong):
        decode_sample(data, 8, 128, 128, DecodeLimits(10**8, max_duration_s=1.0, max_frames=10**6))
    with pytest.raises(errors.VideoTooManyPixels):
        decode_sample(data, 8, 128, 128, DecodeLimits(max_pixels=320 * 100, max_duration_s=60, max_frames=10**6))
    with pytest.raises(errors.VideoTooManyFrames):
        decode_sample(data, 8, 128, 128, DecodeLimits(10**8, max_duration_s=60, max_frames=10))


def test_npy_tensor_path(frames):
    buf = io.BytesIO()
    np.save(buf, frames[:20])
    out = sources.tensor_sample(buf.getvalue(), 8, 128, 128, 10**7, 1000)
    assert out.shape == (8, 128, 128, 3)


@pytest.mark.parametrize("array", [
    np.zeros((4, 8, 8, 3), dtype=np.float32),
    np.zeros((4, 8, 8), dtype=np.uint8),
    np.zeros((0, 8, 8, 3), dtype=np.uint8),
])
def test_npy_wrong_shape_or_dtype(array):
    buf = io.BytesIO()
    np.save(buf, array)
    with pytest.raises(errors.InvalidTensor):
        sources.tensor_sample(buf.getvalue(), 8, 128, 128, 10**7, 1000)


def test_pickled_npy_is_refused_not_unpickled():
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    assert pickle.dumps(1)  # (pickle exists; np.load must not use it)
    with pytest.raises(errors.InvalidTensor):
        sources.tensor_sample(buf.getvalue(), 8, 128, 128, 10**7, 1000)


def test_paths_restricted_to_allowed_roots(tmp_path):
    root = tmp_path / "renders"
    root.mkdir()
    (root / "ok.mp4").write_bytes(b"x" * 10)
    (tmp_path / "secret.mp4").write_bytes(b"y" * 10)
    (root / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    roots = [str(root)]
    assert sources.from_path(str(root / "ok.mp4"), roots, 100).data == b"x" * 10
    with pytest.raises(errors.PathNotAllowed):
        sources.from_path(str(root / ".." / "secret.mp4"), roots, 100)
    with pytest.raises(errors.PathNotAllowed):
        sources.from_path(str(root / "link.mp4"), roots, 100)
    with pytest.raises(errors.PathNotAllowed):
        sources.from_path("/etc/passwd", roots, 100)
    with pytest.raises(errors.PathNotFound):
        sources.from_path(str(root / "missing.mp4"), roots, 100)
    with pytest.raises(errors.VideoTooLarge):
        sources.from_path(str(root / "ok.mp4"), roots, 5)
    with pytest.raises(errors.UnsupportedSource):
        sources.from_path(str(root / "ok.mp4"), [], 100)
