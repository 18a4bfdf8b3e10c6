"""What runs the embedded proxy's video encoder: ONNX Runtime (the default) or eager PyTorch.

Why: the encoder is nearly all of an embedded forward, and ONNX Runtime runs this graph (small convolutions,
many elementwise statistics) in a quarter less CPU than eager PyTorch on the same 2 threads for the 8 videos
of a group and a third less for a pair, 1.1-1.4x faster (2.3.0 and 2.4.0, both views, 2-core box, 2026-12-07:
`aesrm-bench --only encoder`). Only the encoder moves: the heads and the novelty read stay in PyTorch on its
embeddings, so a pair and its swap still flip bit-exactly and the outputs equal PyTorch's to float rounding.

The graph is exported from the loaded checkpoint at start-up (about 0.5 s, in memory, so it cannot drift
from the weights) and checked against PyTorch on a fixed input before it serves. `embedded_runtime=auto` falls
back to PyTorch with a warning when ONNX Runtime (or the `onnx` exporter dependency) is missing or the check
fails; `onnxruntime` makes that a start-up error instead.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-3  # max |ONNX Runtime - PyTorch| embedding difference, relative to the largest value


class VideoEncoder(Protocol):
    name: str

    def __call__(self, views: Mapping[str, np.ndarray]) -> torch.Tensor:
        """{view name: uint8 [N, T, H, W, 3]} -> float embeddings [N, D]."""


class TorchEncoder:
    name = "torch"

    def __init__(self, model) -> None:
        self._model = model

    def __call__(self, views: Mapping[str, np.ndarray]) -> torch.Tensor:
        with torch.inference_mode():
            return self._model.encode_views({k: torch.from_numpy(v) for k, v in views.items()})


class _EncodeViews(torch.nn.Module):
    """The encoder alone, with one positional input per view (the export's signature)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        return self.model.encode(*views)


class OnnxEncoder:
    name = "onnxruntime"

    def __init__(self, model, threads: int) -> None:
        import onnxruntime as ort

        self._inputs = [v.name for v in model.config.views()]
        example = tuple(torch.zeros(2, v.frames, v.height, v.width, 3, dtype=torch.uint8)
                        for v in model.config.views())
        buf = io.BytesIO()
        # the TorchScript exporter (dynamo=False, as aesrm-export-onnx): no onnxscript dependency, 0.5 s; its
        # deprecation notice would be printed at every start-up
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_EncodeViews(model).eval(), example, buf, input_names=self._inputs,
                              output_names=["embedding"], opset_version=17, dynamo=False,
                              dynamic_axes={n: {0: "videos"} for n in [*self._inputs, "embedding"]})
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        # waiting pool threads sleep: spinning would take the cores the decode threads need (the OpenMP
        # setting of service.engine.threads, for ONNX Runtime's own pool)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, views: Mapping[str, np.ndarray]) -> torch.Tensor:
        feed = {n: np.ascontiguousarray(views[n]) for n in self._inputs}
        return torch.from_numpy(self._session.run(None, feed)[0])


def parity_error(model, encoder: VideoEncoder) -> float:
    """Largest |encoder - PyTorch| embedding difference on a fixed random input, relative to the largest
    embedding value."""
    g = torch.Generator().manual_seed(0)
    views = {v.name: torch.randint(0, 256, (3, v.frames, v.height, v.width, 3), dtype=torch.uint8, generator=g)
             .numpy() for v in model.config.views()}
    want, got = TorchEncoder(model)(views), encoder(views)
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-6))


def build_encoder(model, runtime: str, threads: int) -> VideoEncoder:
    """The encoder `runtime` asks for ("auto", "onnxruntime" or "torch"); see the module docstring. Call it on
    the thread that will run the encoder: ONNX Runtime's pool threads inherit that thread's priority."""
    if runtime == "torch":
        return TorchEncoder(model)
    try:
        encoder = OnnxEncoder(model, threads)
        err = parity_error(model, encoder)
        if not err <= PARITY_TOLERANCE:
            raise RuntimeError(f"ONNX Runtime embeddings differ from PyTorch's by {err:.2e} (relative)")
        log.info("embedded encoder: ONNX Runtime (parity %.1e)", err)
        return encoder
    except Exception as exc:  # missing package, export or session failure, parity
        if runtime == "onnxruntime":
            raise
        log.warning("embedded encoder: PyTorch (ONNX Runtime unavailable: %s: %s)", type(exc).__name__,
                    str(exc)[:200])
        return TorchEncoder(model)
