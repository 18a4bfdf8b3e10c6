"""model_repository/ consistency without a server: every config parses as Triton's ModelConfig proto, all
variants of the proxy (python CPU, python GPU, TensorRT) announce the same contract to the gateway, and the
TensorRT build script's CPU half (ONNX export checked against PyTorch) works. The engine build itself
needs a GPU (see model_repository/README.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.backends.triton import contract_from_config
from service.tools.triton_launcher import REPO_ROOT

REPO = REPO_ROOT / "model_repository"


def _parse(path):
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    msg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)  # what get_model_config returns


def test_proxy_variants_announce_the_same_contract():
    cpu = _parse(REPO / "aesrm_proxy" / "config.pbtxt")
    gpu = _parse(REPO / "aesrm_proxy" / "configs" / "gpu.pbtxt")
    trt = _parse(REPO / "aesrm_proxy_trt" / "config.pbtxt")
    assert cpu["backend"] == gpu["backend"] == "python" and trt["platform"] == "tensorrt_plan"
    assert cpu["instance_group"][0]["kind"] == "KIND_CPU"
    assert gpu["instance_group"][0]["kind"] == trt["instance_group"][0]["kind"] == "KIND_GPU"
    contracts = [contract_from_config(c) for c in (cpu, gpu, trt)]
    assert contracts[0] == contracts[1] == contracts[2]
    contract, max_batch = contracts[0]
    assert (contract.frames, contract.height, contract.width) == (8, 128, 128) and max_batch == 64
    assert len(contract.criteria) == len(contract.criterion_dimension) == 12 and contract.antisymmetric
    assert [v.describe() for v in contract.views] == ["frames:letterbox", "fragments:fragments:4"]  # 2.2.0
    for c in (cpu, gpu, trt):
        assert [i["name"] for i in c["input"]] == ["frames_a", "frames_b", "fragments_a", "fragments_b"]
        assert all(i["data_type"] == "TYPE_UINT8" for i in c["input"])
        # 2.x ships fitted novelty statistics, so sync_config declares the per-side novelty output
        assert [o["name"] for o in c["output"]] == ["dimension_logits", "criterion_logits", "novelty"]
        assert contract.novelty and contract.calibrated
        assert "max_queue_delay_microseconds" in c["dynamic_batching"]
        assert c["version_policy"] == {"latest": {"num_versions": 1}}


def test_proxy_config_matches_the_model_code():
    from service.model.checkpoint import MODEL_ID, VERSION
    from service.model.network import ProxyConfig

    contract, _ = contract_from_config(_parse(REPO / "aesrm_proxy" / "config.pbtxt"))
    pc = ProxyConfig()
    assert (contract.frames, contract.height, contract.width) == (pc.frames, pc.height, pc.width)
    assert contract.views == pc.views()  # the default architecture is the shipped one
    assert contract.criteria == pc.criteria and contract.criterion_dimension == pc.criterion_dimension
    assert contract.model_id == MODEL_ID and contract.model_version == VERSION


def test_base_configs():
    base = _parse(REPO / "aesrm_base" / "config.pbtxt")
    contract, max_batch = contract_from_config(base)
    assert contract.trained is False and contract.criteria == () and max_batch >= 1  # plumbing only
    assert base["parameters"]["tiny_random"]["string_value"] == "true"
    gpu = _parse(REPO / "aesrm_base" / "configs" / "gpu.pbtxt")
    g, _ = contract_from_config(gpu)
    assert g.trained is True and gpu["instance_group"][0]["kind"] == "KIND_GPU"
    assert gpu["parameters"]["tiny_random"]["string_value"] == "false"
    for c in (contract, g):
        assert (c.height % 28, c.width % 28, c.frames % 2) == (0, 0, 0)


def test_sync_config_untrained_round_trip(tmp_path):
    import shutil

    for name in ("aesrm_proxy", "aesrm_proxy_trt"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "1"))
    subprocess.run([sys.executable, str(REPO / "sync_config.py"), "--untrained", "--repo", str(tmp_path)],
                   check=True, cwd=REPO_ROOT, capture_output=True)
    for path in (tmp_path / "aesrm_proxy" / "config.pbtxt", tmp_path / "aesrm_proxy" / "configs" / "gpu.pbtxt",
                 tmp_path / "aesrm_proxy_trt" / "config.pbtxt"):
        contract, _ = contract_from_config(_parse(path))
        assert contract.trained is False and contract.checkpoint == "untrained-random-init"
        assert contract.model_version.endswith("+untrained")


def test_trt_build_script_onnx_half(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "aesrm_proxy.onnx"
    script = REPO / "aesrm_proxy_trt" / "build_engine.py"
    out = subprocess.run([sys.executable, str(script), "--onnx-only", "--untrained", "--onnx", str(onnx_path)],
                         check=True, cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert onnx_path.is_file() and "max|onnx-torch|" in out
    cmd = subprocess.run([sys.executable, str(script), "--print-trtexec", "--onnx", str(onnx_path)],
                         check=True, cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert "--fp16" in cmd and "--maxShapes=frames_a:64x8x128x128x3" in cmd and "--minShapes=frames_a:1x" in cmd


def test_launcher_cli_prints_the_recipe():
    out = subprocess.run([sys.executable, "-m", "service.tools.triton_launcher", "--print-command", "--grpc-port", "18001"],
                         check=True, cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert "LD_LIBRARY_PATH=" in out and "--grpc-port=18001" in out and "--load-model=aesrm_proxy" in out
    assert "--model-control-mode=explicit" in out and "--backend-directory=" in out


def test_sync_config_declares_novelty_only_for_a_checkpoint_that_has_it(tmp_path):
    """The optional `novelty` output [2] is declared in all three variants exactly when the checkpoint has
    fitted statistics, and disappears again when synced back to one without (the shipped 1.1.0)."""
    import shutil

    from tests.novelty_ckpt import fitted_checkpoint

    ckpt = fitted_checkpoint(tmp_path)
    for name in ("aesrm_proxy", "aesrm_proxy_trt"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "1"))
    paths = (tmp_path / "aesrm_proxy" / "config.pbtxt", tmp_path / "aesrm_proxy" / "configs" / "gpu.pbtxt",
             tmp_path / "aesrm_proxy_trt" / "config.pbtxt")
    sync = [sys.executable, str(REPO / "sync_config.py"), "--repo", str(tmp_path)]
    for _ in range(2):  # idempotent: syncing twice declares it once
        subprocess.run(sync + ["--checkpoint", str(ckpt)], check=True, cwd=REPO_ROOT, capture_output=True)
    for path in paths:
        cfg = _parse(path)
        assert [o["name"] for o in cfg["output"]] == ["dimension_logits", "criterion_logits", "novelty"]
        contract, _ = contract_from_config(cfg)
        assert contract.novelty is True and contract.model_version.endswith("+novelty-test")
    subprocess.run(sync + ["--untrained"], check=True, cwd=REPO_ROOT, capture_output=True)
    for path in paths:
        cfg = _parse(path)
        assert [o["name"] for o in cfg["output"]] == ["dimension_logits", "criterion_logits"]
        assert contract_from_config(cfg)[0].novelty is False
