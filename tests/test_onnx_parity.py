"""ONNX export of the shipped proxy matches PyTorch (onnxruntime, CPU) at batch 1 and 3: the TensorRT path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from service.model.checkpoint import load_proxy
from service.training.export_onnx import OUTPUT_NAMES, input_names, main as export_main, output_names

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def test_onnx_parity(tmp_path):
    out = tmp_path / "aesrm-proxy.onnx"
    export_main(["--out", str(out)])
    model_proto = onnx.load(str(out))
    onnx.checker.check_model(model_proto)
    assert model_proto.opset_import[0].version == 17
    model, _ = load_proxy()
    names = output_names(model)  # the shipped 2.x checkpoints have fitted novelty statistics: a third output
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["model_id"] == "aesrm-proxy" and manifest["onnx_outputs"] == names

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inputs = input_names(model)
    assert [i.name for i in sess.get_inputs()] == inputs == ["frames_a", "frames_b", "fragments_a", "fragments_b"]
    assert [o.name for o in sess.get_outputs()] == names
    for batch in (1, 3):
        x = model.example_inputs(batch, torch.Generator().manual_seed(batch))
        dim, crit = sess.run(OUTPUT_NAMES, {n: t.numpy() for n, t in zip(inputs, x)})  # the logits, whatever else
        with torch.inference_mode():
            tdim, tcrit = model(*x)
        assert dim.shape == (batch, 3) and crit.shape == (batch, len(model.config.criteria))
        assert np.abs(dim - tdim.numpy()).max() < 1e-4
        assert np.abs(crit - tcrit.numpy()).max() < 1e-4


def test_onnx_parity_with_the_novelty_output(tmp_path):
    """A checkpoint with fitted novelty statistics exports a third output `novelty` [B, 2] (side a, side b)
    that matches PyTorch, alongside unchanged logits."""
    from service.training.export_onnx import NOVELTY_OUTPUT
    from tests.novelty_ckpt import fitted_checkpoint

    ckpt = fitted_checkpoint(tmp_path)
    out = tmp_path / "novelty.onnx"
    export_main(["--checkpoint", str(ckpt), "--out", str(out)])
    names = OUTPUT_NAMES + [NOVELTY_OUTPUT]
    assert json.loads(out.with_suffix(".json").read_text())["onnx_outputs"] == names
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == names
    model, _ = load_proxy(ckpt)
    for batch in (1, 3):
        x = model.example_inputs(batch, torch.Generator().manual_seed(10 + batch))
        got = sess.run(names, {n: t.numpy() for n, t in zip(input_names(model), x)})
        with torch.inference_mode():
            want = [t.numpy() for t in model.forward_with_novelty(*x)]
        assert got[2].shape == (batch, 2) and (got[2] > 0).all()
        for g, w in zip(got, want):
            assert np.abs(g - w).max() < 1e-4 * max(1.0, float(np.abs(w).max()))
