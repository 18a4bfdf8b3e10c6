"""Load / save the proxy checkpoint: a small fp32 state_dict (.pt) next to a JSON manifest.

The manifest is the model's identity card (version, criteria, input size, data hash, test metrics,
sources and licenses); the service reports its version and sha with every score.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from service.contract import describe_views
from service.model.network import DIMENSIONS, AesRMProxy, ProxyConfig

MODEL_ID = "aesrm-proxy"
VERSION = "2.6.0"  # the shipped checkpoint (Triton configs carry the same, test_triton_configs checks)
# what a training run with this code writes (2.2.0: the fragments view; 2.2.1: seed 1235; 2.3.0: 2.2.1
# fine-tuned on recipes 4 + 5, `aesrm-train --init <2.2.1> --extra-families --recipe-5 --epochs 4 --lr 1e-3`;
# 2.4.0: 2.3.0 fine-tuned on recipes 4 + 5 + 6, the same command with --init <2.3.0> --recipe-6; 2.5.0: 2.4.0
# fine-tuned on recipes 4-7, the same command with --init <2.4.0> --recipe-6 --recipe-7 --seed 1236; 2.6.0: 2.5.0
# fine-tuned on recipes 4-7 with recipe 12's 33 more train photos, --init <2.5.0> --recipe-12 --seed 1237; a run
# without --init writes the first stage, 2.2.1's weights, under this number too)
TRAINED_VERSION = "2.6.0"
CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
DEFAULT_CHECKPOINT: Path = CHECKPOINT_DIR / "aesrm-proxy-v2.pt"


def manifest_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def manifest_views(manifest: dict):
    """The input views (service.contract.ViewSpec) of the architecture a manifest records."""
    return ProxyConfig.from_dict(manifest["config"]).views()


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def base_manifest(config: ProxyConfig, trained: bool) -> dict:
    return {"model_id": MODEL_ID, "version": VERSION, "trained": trained,
            "dimensions": list(DIMENSIONS), "criteria": list(config.criteria),
            "criterion_dimension": list(config.criterion_dimension),
            "frames": config.frames, "height": config.height, "width": config.width,
            "input": "uint8 RGB [B, T, H, W, 3] per view, rendered by service.ingest.views",
            "views": describe_views(config.views()), "config": config.to_dict()}


def save_checkpoint(model: AesRMProxy, path: str | Path, manifest: dict) -> dict:
    """Write the state_dict and its manifest (with the checkpoint's sha256); returns the manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"config": model.config.to_dict(), "state_dict": state}, path)
    manifest = {**base_manifest(model.config, True), **manifest,
                "checkpoint_file": path.name, "checkpoint_sha256": sha256_file(path)}
    manifest_path(path).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def load_proxy(path: str | Path | None = None, device: str = "cpu") -> tuple[AesRMProxy, dict]:
    """The eval-mode model and its manifest; FileNotFoundError when the checkpoint is missing."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no proxy checkpoint at {path}")
    blob = torch.load(path, map_location=device, weights_only=True)
    model = AesRMProxy(ProxyConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["state_dict"])
    mp = manifest_path(path)
    manifest = json.loads(mp.read_text()) if mp.is_file() else base_manifest(model.config, True)
    manifest["config"] = model.config.to_dict()  # the architecture loaded is the truth (views, sizes)
    manifest["views"] = describe_views(model.config.views())
    manifest["calibrated"] = model.config.bound > 0
    manifest["novelty"] = model.has_novelty  # per-video out-of-distribution signal available (fit_novelty)
    if model.config.bound <= 0:
        logging.getLogger(__name__).warning(
            "%s (proxy %s) predates proxy 2.0.0: loaded as the 1.x architecture; its logits are unbounded and "
            "uncalibrated and move strongly on dimensions an edit does not touch", path.name,
            manifest.get("version", "?"))
    manifest.setdefault("checkpoint_file", path.name)
    manifest.setdefault("checkpoint_sha256", sha256_file(path))
    return model.to(device).eval(), manifest


def untrained_proxy(seed: int = 0) -> tuple[AesRMProxy, dict]:
    """Same architecture, random init, `trained: False`: for tests / before a checkpoint exists only."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = AesRMProxy(ProxyConfig())
    torch.random.set_rng_state(gen_state)
    manifest = {**base_manifest(model.config, False), "version": f"{VERSION}+untrained",
                "checkpoint_sha256": "", "data_hash": "", "metrics": {}, "seed": seed,
                "training": {}, "sources": {}}
    return model.eval(), manifest
