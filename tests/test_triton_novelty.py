"""The optional `novelty` output through a REAL tritonserver (python backend, CPU): a model repository synced
to a checkpoint with fitted novelty statistics declares it, the gateway discovers and requests it, and the
values equal the embedded backend's on the same checkpoint, in both orders (the sides swap), over gRPC and
system shared memory."""

from __future__ import annotations


import numpy as np
import pytest

from service.metrics import Metrics
from tests.conftest import test_settings
from tests.server_process import synced_triton
from tests.novelty_ckpt import fitted_checkpoint

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc.aio")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return fitted_checkpoint(tmp_path_factory.mktemp("novelty_ckpt"))


@pytest.fixture(scope="module")
def triton(tmp_path_factory, ckpt):
    with synced_triton(tmp_path_factory.mktemp("model_repository"), "--checkpoint", str(ckpt)) as server:
        yield server


@pytest.fixture(scope="module")
async def embedded(ckpt):
    from service.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(test_settings(checkpoint=str(ckpt)), Metrics())
    await backend.start()
    yield backend
    await backend.close()


@pytest.mark.parametrize("shm", [False, True], ids=["grpc", "shared_memory"])
async def test_triton_returns_novelty_equal_to_embedded(triton, embedded, shm):
    from service.backends.triton import TritonBackend
    from tests.novelty_ckpt import checker, clip, flat_red, views

    rng = np.random.default_rng(0)
    videos = views(np.stack([clip(checker()), clip(flat_red()),
                             rng.integers(0, 256, (16, 128, 128, 3), dtype=np.uint8)]))
    pairs = np.array([[0, 1], [1, 0], [0, 2], [2, 1]])
    backend = TritonBackend(test_settings(backend="triton", triton_url=triton.grpc_url, triton_timeout_s=10.0,
                                          triton_shared_memory=shm), Metrics())
    await backend.start()
    try:
        assert backend.contract() == embedded.contract() and backend.contract().novelty is True
        got = await backend.score(videos, pairs)
    finally:
        await backend.close()
    want = await embedded.score(videos, pairs)
    assert got.novelty.shape == (4, 2) and want.novelty.shape == (4, 2)
    np.testing.assert_allclose(got.novelty, want.novelty, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got.novelty[1], got.novelty[0][::-1])  # reverse order: the sides swap
    np.testing.assert_allclose(got.dimension, want.dimension, atol=1e-4, rtol=1e-4)
    assert (got.novelty[0] > 1.0).all()  # fine checkerboard and flat red: far from the photo pans it was fitted on
