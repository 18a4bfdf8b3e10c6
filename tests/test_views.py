"""Model input views (service.ingest.views) and the multi-view contract: the gateway renders exactly the
views a model declares (checkpoint manifest for the embedded backend, Triton model config for Triton), on
real encoded video, and a two-view model scores the same through a REAL tritonserver as in process."""

from __future__ import annotations

import base64
import io

import av
import numpy as np
import pytest
import torch

from service import errors
from service.backends.triton import contract_from_config
from service.contract import FRAGMENTS, LETTERBOX, ModelContract, ViewSpec, parse_views
from service.examples import degrade, encode, pan_frames, photo
from service.ingest.decode import DecodeLimits, decode_views
from service.ingest.frames import new_reformatter
from service.ingest.views import _yuv420_mosaic, fragment_mosaic, render_array, render_frame
from service.metrics import Metrics
from tests.conftest import running_app, test_settings, views_for
from tests.server_process import synced_triton

LIMITS = DecodeLimits(max_pixels=4096 * 4096, max_duration_s=600, max_frames=100_000)
FRAMES = ViewSpec("frames", LETTERBOX, 8, 128, 128)
FRAGS = ViewSpec("fragments", FRAGMENTS, 8, 128, 128, grid=4)


@pytest.fixture(scope="module")
def pan_480p():
    return pan_frames(photo("path"), 24, 854, 480)


def test_fragments_are_native_resolution_patches_from_the_centre_of_each_grid_cell(pan_480p):
    data = encode(pan_480p, gop=12)
    views, stats = decode_views(data, (FRAMES, FRAGS), LIMITS)
    assert views["frames"].shape == views["fragments"].shape == (8, 128, 128, 3)
    with av.open(io.BytesIO(data)) as c:
        full = {f.pts: f.to_ndarray(format="rgb24") for f in c.decode(video=0)}
    for k, pts in enumerate(stats.extra["picked_pts"]):
        rgb = full[pts]  # the same decoded frame, at 854 x 480
        for i in range(4):
            for j in range(4):
                cy, cx = (2 * i + 1) * 480 / 8, (2 * j + 1) * 854 / 8  # cell centre
                y0, x0 = int(cy) - 16, int(cx) - 16
                patch = views["fragments"][k, 32 * i:32 * i + 32, 32 * j:32 * j + 32]
                near = [np.array_equal(patch, rgb[y0 + dy:y0 + dy + 32, x0 + dx:x0 + dx + 32])
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                assert any(near), (k, i, j)  # centred to within a pixel, not resampled


@pytest.mark.parametrize("size", [(854, 480), (128, 128), (132, 132), (134, 136), (133, 131), (138, 203), (1280, 720),
                                  (1281, 719), (96, 64), (200, 100)])
@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p"])
def test_fragments_cut_before_the_rgb_conversion_equal_cutting_the_converted_frame(size, fmt):
    # the gateway cuts 4:2:0 frames' patches from the Y/U/V planes and converts only them: the pixels must be
    # exactly those of converting the whole frame and cutting after (what training clips and the client
    # see): odd patch origins, limited and full range, near the mosaic's minimum size; odd frame sizes (which
    # swscale converts by another path) go through the whole-frame conversion
    w, h = size
    rgb = pan_frames(photo("path"), 1, w, h)[0]
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)
    frame.color_range = 2 if fmt == "yuvj420p" else 1
    assert (frame.width, frame.height) == size
    want = fragment_mosaic(frame.to_ndarray(format="rgb24"), FRAGS)
    assert np.array_equal(render_frame(frame, FRAGS), want)
    cut_first = _yuv420_mosaic(frame, FRAGS, new_reformatter())
    enlarged = w < 128 or h < 128  # smaller than the mosaic: enlarged first, on the whole frame
    assert (cut_first is None) == bool(w % 2 or h % 2 or enlarged)  # the others take the plane-cutting path


def test_fragments_of_real_h264_and_mjpeg_frames_equal_the_whole_frame_conversion(pan_480p):
    for data in (encode(pan_480p[:6], gop=3), encode(pan_480p[:6], encoder="mjpeg", fmt="avi", pix_fmt="yuvj420p")):
        with av.open(io.BytesIO(data)) as c:
            for f in c.decode(video=0):
                assert f.format.name in ("yuv420p", "yuvj420p")
                assert np.array_equal(render_frame(f, FRAGS), fragment_mosaic(f.to_ndarray(format="rgb24"), FRAGS))


def test_noise_the_downscaled_view_averages_away_survives_in_the_fragments(pan_480p):
    clean, noisy = pan_480p, degrade(pan_480p, "noise", 0.25, seed=3)
    a = decode_views(encode(clean), (FRAMES, FRAGS), LIMITS)[0]
    b = decode_views(encode(noisy), (FRAMES, FRAGS), LIMITS)[0]
    gap = {n: float(np.abs(a[n].astype(np.int16) - b[n].astype(np.int16)).mean()) for n in a}
    assert gap["fragments"] > 2.5 * gap["frames"], gap


def test_tensors_and_small_frames_get_the_same_views():
    small = pan_frames(photo("bythewater"), 8, 96, 64)  # smaller than the 128-px mosaic: enlarged first
    views = render_array(small, (FRAMES, FRAGS))
    assert views["fragments"].shape == (8, 128, 128, 3)
    black = lambda x: float((x == 0).all(axis=-1).mean())  # noqa: E731 - share of exactly black pixels
    assert black(views["fragments"]) < 0.01 < 0.2 < black(views["frames"])  # only the whole frame is letterboxed
    same = fragment_mosaic(small[0], FRAGS)
    assert np.array_equal(same, views["fragments"][0])


@pytest.mark.parametrize("size", [(480, 854), (181, 321), (64, 96), (97, 33), (720, 1280)])
def test_one_swscale_context_per_video_gives_the_pixels_of_one_per_frame(size):
    """fit_array reuses one reformatter for a clip's frames (a new swscale context per frame cost 3-4 ms at
    small sizes); training clips and raw tensors must keep exactly the pixels of frame.reformat per frame,
    which every shipped checkpoint was trained on. Frames differ, so a stale context would show."""
    from service.ingest.frames import fit_array, fit_size, letterbox

    frames = pan_frames(photo("bythewater"), 4, size[1], size[0])
    w, h = fit_size(size[1], size[0], 128, 128)
    per_frame = np.stack([letterbox(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(
        width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray(), 128, 128) for f in frames])
    assert np.array_equal(fit_array(frames, 128, 128), per_frame)
    assert not np.array_equal(per_frame[0], per_frame[-1])
    fresh = np.stack([fragment_mosaic(f, FRAGS) for f in frames])  # a new context per frame (small: enlarged)
    assert np.array_equal(render_array(frames, (FRAGS,))["fragments"], fresh)


def test_the_contract_always_has_the_whole_frame_view_and_keys_the_cache_by_every_view():
    plain = ModelContract("m", "1", 8, 128, 128)
    assert plain.views == (FRAMES,) and plain.sampling_key == "T8xH128xW128"  # unchanged for 1-view models
    two = ModelContract("m", "1", 8, 128, 128, views=(FRAMES, FRAGS))
    assert two.sampling_key != plain.sampling_key and "fragments" in two.sampling_key
    with pytest.raises(ValueError):
        ModelContract("m", "1", 8, 128, 128, views=(FRAGS,))  # no whole-frame view
    with pytest.raises(ValueError):
        ViewSpec("fragments", FRAGMENTS, 8, 128, 128, grid=3)  # 128 px do not split into 3 patches
    with pytest.raises(ValueError):
        parse_views("frames:letterbox,fragments:fragments:4", {"frames": (8, 128, 128)})  # no tensors


def _config(inputs: list[str], views: str | None) -> dict:
    params = {"criteria": {"string_value": ""}} | ({"views": {"string_value": views}} if views else {})
    return {"name": "m", "max_batch_size": 8, "parameters": params,
            "input": [{"name": n, "dims": ["8", "128", "128", "3"]} for n in inputs],
            "output": [{"name": "dimension_logits", "dims": ["3"]}]}


def test_triton_contract_reads_views_from_inputs_and_the_views_parameter():
    both = ["frames_a", "frames_b", "fragments_a", "fragments_b"]
    c, _ = contract_from_config(_config(both, "frames:letterbox,fragments:fragments:4"))
    assert c.views == (FRAMES, FRAGS)
    assert contract_from_config(_config(both[:2], None))[0].views == (FRAMES,)  # e.g. a user's AesRM-Base
    for inputs, views in ((both, None), (both, "frames:letterbox,fragments:tiles:4"),
                          (both[:2], "frames:letterbox,fragments:fragments:4")):
        with pytest.raises(errors.BackendError):  # an input no view feeds, an unknown kind, a view without inputs
            contract_from_config(_config(inputs, views))


@pytest.fixture(scope="module")
def two_view_checkpoint(tmp_path_factory):
    """A real checkpoint file of the two-view architecture (random weights, seeded; heads scaled 100x so the
    logits are O(0.1-1), where a 1e-4 tolerance means something)."""
    from service.model.checkpoint import save_checkpoint
    from service.model.network import AesRMProxy, ProxyConfig

    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("two_view") / "two-view.pt"
    model = AesRMProxy(ProxyConfig(fragments=4)).eval()
    with torch.no_grad():
        model.criterion_w.mul_(100.0)
    save_checkpoint(model, path, {"version": "0.0.0-two-view"})
    return path


def _b64(data: bytes) -> dict:
    return {"base64": base64.b64encode(data).decode()}


@pytest.mark.parametrize("shm", [False, True], ids=["grpc", "shared_memory"])
async def test_a_two_view_model_scores_the_same_through_triton_as_in_process(tmp_path, two_view_checkpoint, shm):
    pytest.importorskip("pytriton")
    from service.backends.embedded import EmbeddedBackend
    from service.backends.triton import TritonBackend

    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, (3, 8, 128, 128, 3), dtype=np.uint8)
    pairs = np.array([[0, 1], [1, 0], [0, 2], [2, 1]])
    embedded = EmbeddedBackend(test_settings(checkpoint=str(two_view_checkpoint)), Metrics())
    await embedded.start()
    with synced_triton(tmp_path, "--checkpoint", str(two_view_checkpoint)) as server:
        triton = TritonBackend(test_settings(backend="triton", triton_url=server.grpc_url, triton_timeout_s=10.0,
                                             triton_shared_memory=shm), Metrics())
        await triton.start()
        try:
            assert triton.contract() == embedded.contract() and triton.contract().views == (FRAMES, FRAGS)
            got = await triton.score(views_for(triton.contract(), videos), pairs)
            with pytest.raises(errors.BackendError):  # the fragments view is not optional
                await triton.score({"frames": videos}, pairs)
        finally:
            await triton.close()
    try:
        want = await embedded.score(views_for(embedded.contract(), videos), pairs)
        other = {"frames": videos, "fragments": np.ascontiguousarray(videos[:, :, ::-1])}  # same whole frames
        moved = await embedded.score(other, pairs)
    finally:
        await embedded.close()
    np.testing.assert_allclose(got.dimension, want.dimension, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got.criteria, want.criteria, atol=1e-4, rtol=1e-4)
    assert np.abs(want.dimension).max() > 0.05  # logits big enough for the tolerances above to mean something
    assert np.abs(moved.dimension - want.dimension).max() > 0.01  # the second view reaches the model


async def test_the_gateway_renders_the_views_a_model_declares(two_view_checkpoint, clips):
    """Real encoded clips through /v1/pair with a two-view checkpoint: the gateway publishes the views and
    scores exactly what the backend computes on decode_views' output of the same files."""
    from service.backends.embedded import EmbeddedBackend

    pair = {"a": _b64(clips["clean"]), "b": _b64(clips["noisy"])}
    async with running_app(test_settings(checkpoint=str(two_view_checkpoint))) as (client, _):
        r = await client.post("/v1/pair", json=pair)
        assert r.status_code == 200, r.text
        info = (await client.get("/v1/model")).json()
    assert info["views"] == ["frames:letterbox", "fragments:fragments:4"]
    backend = EmbeddedBackend(test_settings(checkpoint=str(two_view_checkpoint)), Metrics())
    await backend.start()
    try:
        a, b = (decode_views(clips[k], backend.contract().views, LIMITS)[0] for k in ("clean", "noisy"))
        direct = await backend.score({n: np.stack([a[n], b[n]]) for n in a}, np.array([[0, 1]]))
    finally:
        await backend.close()
    assert r.json()["logits"]["VF"] == pytest.approx(float(direct.dimension[0, 1]), abs=1e-4)


def test_client_prepares_every_view_and_the_server_takes_them_as_they_are():
    """A GRPO worker preparing tensors for a two-view model makes both views with the server's functions
    and uploads one .npz (0.4 MB a view, not T native frames); the server takes them unchanged. A
    whole-frame-only model still gets one .npy resized on the worker."""
    from service.client.frames import Contract, npy_bytes, prepare
    from service.ingest.frames import uniform_indices
    from service.ingest.sources import tensor_views

    video = pan_frames(photo("path"), 17, 320, 180)
    prepared = prepare(video, Contract(8, 128, 128, ("frames:letterbox", "fragments:fragments:4")))
    direct = render_array(video[uniform_indices(17, 8)], (FRAMES, FRAGS))
    assert set(prepared) == {"frames", "fragments"}
    assert all(np.array_equal(prepared[n], direct[n]) for n in direct)
    upload = npy_bytes(prepared)
    assert len(upload) < 2 * 8 * 128 * 128 * 3 + 4096
    served = tensor_views(upload, (FRAMES, FRAGS), 4096 * 4096, 10_000)
    assert all(np.array_equal(served[n], direct[n]) for n in direct)
    assert prepare(video, Contract(8, 128, 128)).shape == (8, 128, 128, 3)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 1
    return bytes(out)


@pytest.mark.parametrize("case", ["missing_view", "extra_view", "wrong_shape", "float", "compressed", "not_a_zip",
                                  "pickled", "corrupted", "truncated", "fortran_order", "bad_npy_header"])
def test_bad_prepared_views_are_a_422_invalid_tensor(case):
    from service.ingest.sources import tensor_views

    ok = np.zeros((8, 128, 128, 3), np.uint8)
    data = {
        "missing_view": lambda: _npz(frames=ok),
        "extra_view": lambda: _npz(frames=ok, fragments=ok, depth=ok),
        "wrong_shape": lambda: _npz(frames=ok, fragments=ok[:, :64]),
        "float": lambda: _npz(frames=ok, fragments=ok.astype(np.float32)),
        "compressed": lambda: (lambda b: (np.savez_compressed(b, frames=ok, fragments=ok), b.getvalue())[1])(
            io.BytesIO()),
        "not_a_zip": lambda: b"PK\x03\x04" + b"\x00" * 100,
        "pickled": lambda: _npz(frames=ok, fragments=np.array([{"x": 1}], dtype=object)),
        "corrupted": lambda: _flip(_npz(frames=ok, fragments=ok), 200_000),  # pixel bytes: only the CRC sees it
        "truncated": lambda: _npz(frames=ok, fragments=ok)[:500_000],
        "fortran_order": lambda: _npz(frames=ok, fragments=np.asfortranarray(ok)),
        "bad_npy_header": lambda: _npz(frames=ok, fragments=ok).replace(b"\x93NUMPY", b"\x93NUMPX", 1),
    }[case]()
    with pytest.raises(errors.InvalidTensor):
        tensor_views(data, (FRAMES, FRAGS), 4096 * 4096, 10_000)


async def test_prepared_views_over_http_score_like_the_clip_they_came_from(two_view_checkpoint):
    """/v1/pair with two .npz uploads of prepared views equals /v1/pair with the raw frames as .npy; an
    .npz that lacks a view of the model is a 422 invalid_tensor."""
    from service.client.frames import Contract, npy_bytes, prepare

    clean = pan_frames(photo("colorfulcups"), 17, 320, 180)
    noisy = degrade(clean, "noise", 0.5, seed=1)
    two = Contract(8, 128, 128, ("frames:letterbox", "fragments:fragments:4"))
    raw = {"a": _b64(npy_bytes(clean)), "b": _b64(npy_bytes(noisy))}
    prepared = {"a": _b64(npy_bytes(prepare(clean, two))), "b": _b64(npy_bytes(prepare(noisy, two)))}
    async with running_app(test_settings(checkpoint=str(two_view_checkpoint))) as (client, _):
        r_raw = await client.post("/v1/pair", json=raw)
        r_prep = await client.post("/v1/pair", json=prepared)
        bad = await client.post("/v1/pair", json={"a": prepared["a"], "b": _b64(_npz(frames=clean[:8]))})
    assert r_raw.status_code == r_prep.status_code == 200, (r_raw.text, r_prep.text)
    for k in ("VA", "VF", "VP"):
        assert r_prep.json()["logits"][k] == pytest.approx(r_raw.json()["logits"][k], abs=1e-5)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_tensor", bad.text


@pytest.mark.parametrize("shape", [(8, 1, 200_000, 3), (8, 4000, 1, 3), (8, 2, 3, 3)])
def test_degenerate_frames_get_a_bounded_mosaic_or_a_clear_422(shape):
    """Strips within max_pixels are enlarged for the mosaic by the short side's factor, the long side capped
    at MAX_ENLARGED_SIDE (1 x 4000 would otherwise become 128 x 512,000): a mosaic, or invalid_tensor."""
    from service.client.frames import npy_bytes
    from service.ingest.sources import tensor_views
    from service.ingest.views import MAX_ENLARGED_SIDE

    assert MAX_ENLARGED_SIDE <= 4096
    data = npy_bytes(np.full(shape, 128, np.uint8))
    try:
        views = tensor_views(data, (FRAMES, FRAGS), 4096 * 4096, 10_000)
    except errors.InvalidTensor:
        return
    assert views["fragments"].shape == (8, 128, 128, 3) and (views["fragments"] == 128).all()
