"""`aesrm-export-onnx`: the proxy's forward as ONNX (opset 17, dynamic batch) for the Triton/TensorRT path.

Inputs `<view>_a`, `<view>_b` uint8 [B, T, H, W, 3] for every input view (frames; fragments from 2.2.0),
in forward()'s order; outputs `dimension_logits` [B, 3] (VA, VF, VP),
`criterion_logits` [B, C] and, for a model with fitted novelty statistics, `novelty` [B, 2] (side a, side b;
AesRMProxy.forward_with_novelty). The manifest is written next to the model (same stem, .json) so a deployment
knows which checkpoint and criteria it serves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

INPUT_NAMES = ["frames_a", "frames_b"]  # the whole-frame view every model has
OUTPUT_NAMES = ["dimension_logits", "criterion_logits"]
NOVELTY_OUTPUT = "novelty"


def input_names(model) -> list[str]:
    """frames_a, frames_b, then the other views' pairs: AesRMProxy.forward's argument order."""
    return [f"{v.name}_{side}" for v in model.config.views() for side in "ab"]


def output_names(model) -> list[str]:
    """The graph's outputs: the logits, plus `novelty` when the model has fitted statistics."""
    return OUTPUT_NAMES + ([NOVELTY_OUTPUT] if getattr(model, "has_novelty", False) else [])


class _WithNovelty(torch.nn.Module):
    """forward() -> (dimension, criterion, novelty [B, 2]) for the export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        return self.model.forward_with_novelty(*inputs)


def export(model, out: str | Path, opset: int = 17) -> Path:
    """Export an eval-mode AesRMProxy to `out`; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = tuple(torch.zeros_like(x) for x in model.example_inputs(2))
    inputs, names = input_names(model), output_names(model)
    axes = {name: {0: "batch"} for name in inputs + names}
    model = model.eval()
    if NOVELTY_OUTPUT in names:
        model = _WithNovelty(model).eval()
    with torch.no_grad():
        try:
            torch.onnx.export(model, example, str(out), input_names=inputs,
                              output_names=names, dynamic_axes=axes, opset_version=opset, dynamo=False)
        except TypeError:  # torch without the `dynamo` switch
            torch.onnx.export(model, example, str(out), input_names=inputs,
                              output_names=names, dynamic_axes=axes, opset_version=opset)
    return out


def main(argv: list[str] | None = None) -> None:
    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--out", required=True, help="path of the .onnx file to write")
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args(argv)
    model, manifest = load_proxy(args.checkpoint)
    path = export(model, args.out, args.opset)
    path.with_suffix(".json").write_text(json.dumps({**manifest, "onnx_opset": args.opset,
                                                     "onnx_inputs": input_names(model),
                                                     "onnx_outputs": output_names(model)}, indent=2) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) from {manifest['version']} "
          f"sha256={manifest['checkpoint_sha256'][:12]}")


if __name__ == "__main__":
    main()
