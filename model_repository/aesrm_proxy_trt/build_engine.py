"""Build aesrm_proxy_trt/1/model.plan: export ONNX, check it against PyTorch, build a FP16 TensorRT engine
with a dynamic batch profile, check the engine against ONNX Runtime.

Run ON THE SERVING GPU TYPE, with the TensorRT version of the Triton release that will load the plan
(Triton 2.51 = NGC container 24.10 = TensorRT 10.5): plans are not portable across GPU archs/TRT versions.

    docker run --gpus all --rm -v $PWD:/w -w /w nvcr.io/nvidia/tritonserver:24.10-py3 bash -c \
      "pip install -e '.[model]' onnx onnxruntime && python model_repository/aesrm_proxy_trt/build_engine.py"

Steps 1-2 also run on a CPU box (``--onnx-only``). Inputs, shapes and the batch profile come from
config.pbtxt (every `<view>_a` / `<view>_b` input, its dims, max_batch_size), so the engine cannot disagree
with what Triton announces.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(REPO_ROOT))


def config_shapes(cfg: Path = HERE / "config.pbtxt") -> tuple[dict[str, list[int]], int]:
    """({input name: dims} in config order, max_batch_size)."""
    text = cfg.read_text()
    inputs = {m.group(1): [int(d) for d in m.group(2).split(",")]
              for m in re.finditer(r'name: "(\w+)" data_type: TYPE_UINT8 dims: \[ ([^\]]*) \]', text)}
    return inputs, int(re.search(r"max_batch_size: (\d+)", text).group(1))


def _load(checkpoint: str | None, untrained: bool):
    from service.model.checkpoint import load_proxy, untrained_proxy

    return (untrained_proxy(seed=0) if untrained else load_proxy(checkpoint))[0].eval()


def export_onnx(out: Path, checkpoint: str | None, untrained: bool = False) -> None:
    if untrained:  # CPU plumbing check only: random weights
        from service.training.export_onnx import export

        export(_load(None, True), out)
        return
    cmd = [sys.executable, "-m", "service.training.export_onnx", "--out", str(out)]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def _feeds(inputs: dict[str, list[int]], batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.integers(0, 256, (batch, *dims), dtype=np.uint8) for n, dims in inputs.items()}


def check_onnx(onnx_path: Path, inputs: dict[str, list[int]], checkpoint: str | None, batch: int = 3,
               untrained: bool = False) -> float:
    """Max |ONNX Runtime - PyTorch| on random frames (every output: logits, and novelty when exported)."""
    import onnxruntime as ort
    import torch

    model = _load(checkpoint, untrained)
    feeds = _feeds(inputs, batch, 0)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    if [i.name for i in sess.get_inputs()] != list(inputs):
        raise SystemExit(f"ONNX inputs {[i.name for i in sess.get_inputs()]} != config.pbtxt {list(inputs)}")
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(names, feeds)
    with torch.inference_mode():
        fwd = model.forward_with_novelty if "novelty" in names else model
        want = [t.numpy() for t in fwd(*(torch.from_numpy(a) for a in feeds.values()))]
    return max(float(np.abs(g - w).max()) for g, w in zip(got, want))


def trtexec_command(onnx_path: Path, plan: Path, inputs: dict[str, list[int]], max_batch: int, opt: int) -> list[str]:
    prof = {k: ",".join(f"{n}:{b}x" + "x".join(map(str, dims)) for n, dims in inputs.items())
            for k, b in (("min", 1), ("opt", opt), ("max", max_batch))}
    return ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan}", "--fp16", f"--minShapes={prof['min']}",
            f"--optShapes={prof['opt']}", f"--maxShapes={prof['max']}", "--builderOptimizationLevel=3",
            "--skipInference"]


def build_with_python_api(onnx_path: Path, plan: Path, inputs: dict[str, list[int]], max_batch: int, opt: int
                          ) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        raise RuntimeError("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, dims in inputs.items():
        profile.set_shape(name, (1, *dims), (opt, *dims), (max_batch, *dims))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError("TensorRT build failed")
    plan.write_bytes(bytes(engine))


def check_engine(plan: Path, onnx_path: Path, inputs: dict[str, list[int]], batch: int = 8) -> float:
    """Max |TensorRT FP16 - ONNX Runtime FP32| (expect ~1e-2 on logits)."""
    import onnxruntime as ort
    import tensorrt as trt
    import torch

    feeds = _feeds(inputs, batch, 1)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]  # the logits, and novelty when the model has it
    want = sess.run(outs, feeds)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    ctx = engine.create_execution_context()
    bufs = {}
    for n, a in feeds.items():
        bufs[n] = torch.from_numpy(a).cuda()
        ctx.set_input_shape(n, a.shape)
    for n in outs:
        bufs[n] = torch.empty(tuple(ctx.get_tensor_shape(n)), dtype=torch.float32, device="cuda")
    for n, t in bufs.items():
        ctx.set_tensor_address(n, t.data_ptr())
    ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    got = [bufs[n].cpu().numpy() for n in outs]
    return max(float(np.abs(g - w).max()) for g, w in zip(got, want))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--onnx", default=str(HERE / "aesrm_proxy.onnx"))
    ap.add_argument("--plan", default=str(HERE / "1" / "model.plan"))
    ap.add_argument("--opt-batch", type=int, default=16)
    ap.add_argument("--onnx-only", action="store_true", help="steps 1-2 only (CPU box)")
    ap.add_argument("--untrained", action="store_true", help="random-init proxy: plumbing checks only")
    ap.add_argument("--print-trtexec", action="store_true", help="print the trtexec command and exit")
    args = ap.parse_args(argv)
    inputs, max_batch = config_shapes()
    onnx_path, plan = Path(args.onnx), Path(args.plan)
    if args.print_trtexec:
        print(" ".join(trtexec_command(onnx_path, plan, inputs, max_batch, args.opt_batch)))
        return 0
    export_onnx(onnx_path, args.checkpoint, args.untrained)
    err = check_onnx(onnx_path, inputs, args.checkpoint, untrained=args.untrained)
    print(f"onnx: {onnx_path} max|onnx-torch|={err:.2e}")
    if err > 1e-3:
        raise SystemExit("ONNX export disagrees with PyTorch")
    if args.onnx_only:
        return 0
    plan.parent.mkdir(parents=True, exist_ok=True)
    try:
        build_with_python_api(onnx_path, plan, inputs, max_batch, args.opt_batch)
    except ImportError:
        if not shutil.which("trtexec"):
            raise SystemExit("neither the tensorrt Python package nor trtexec is available")
        subprocess.run(trtexec_command(onnx_path, plan, inputs, max_batch, args.opt_batch), check=True)
    print(f"engine: {plan} ({plan.stat().st_size / 1e6:.1f} MB)")
    try:
        err = check_engine(plan, onnx_path, inputs)
        print(f"engine check: max|trt_fp16-onnx|={err:.3e}")
    except ImportError as exc:
        print(f"engine check skipped ({exc})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
