"""AesRM proxy on Triton's python backend: the same weights and code as the embedded backend.

Each request carries pairs as <view>_a/<view>_b [B,T,H,W,3] uint8 for every input view of the checkpoint
(frames; fragments from 2.2.0: service.ingest.views); the dynamic batcher hands several requests to one
``execute``. Videos are content-hashed so a video that appears in many pairs (a GRPO group,
both orders) is encoded once, then the antisymmetric heads score every pair -- the same cost model as the
embedded backend. ``initialize`` refuses to load when the checkpoint manifest disagrees with this config
(dims, criteria, model id/version, sha), because the gateway reads the contract from the config.
The optional output `novelty` [2] (each side's distance from the training distribution) is produced when
the config declares it, and the config may declare it only for a checkpoint with fitted statistics.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

# The python-backend stub's embedded interpreter ignores PYTHONPATH (the repo root is not importable) and
# takes site-packages from the `python3` first on PATH; put the launcher's PYTHONPATH (repo + venv) FIRST:
# a base-interpreter numpy 2.x makes the 2.51 stub return empty FP32 outputs.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def _params(cfg: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}


def _truthy(s: str) -> bool:
    return s.strip().lower() in ("1", "true", "yes", "on")


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import torch

        from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy, untrained_proxy

        from service.engine.threads import keep_freed_memory_mapped

        cfg = json.loads(args["model_config"])
        p = _params(cfg)
        if args.get("model_instance_kind") != "GPU":
            keep_freed_memory_mapped()  # the stub process is ours: reuse freed activations (CPU forward -25 %)
        torch.set_num_threads(int(p.get("torch_threads") or os.environ.get("OMP_NUM_THREADS") or 1))
        gpu = args.get("model_instance_kind") == "GPU"
        self.device = torch.device(f"cuda:{args.get('model_instance_device_id', 0)}" if gpu else "cpu")

        if _truthy(p.get("trained", "true")):
            ckpt = p.get("checkpoint") or str(DEFAULT_CHECKPOINT)
            if not Path(ckpt).is_absolute():  # relative to the repo root (PYTHONPATH) or the model dir
                import service

                cands = [Path(service.__file__).resolve().parents[1] / ckpt, Path(args["model_repository"]) / ckpt]
                ckpt = str(next((c for c in cands if c.exists()), cands[0]))
            model, manifest = load_proxy(ckpt)
        else:
            model, manifest = untrained_proxy(seed=int(p.get("seed") or 0))
        self._verify(cfg, p, manifest)
        # output dtypes come from the config (the gateway reads the same config), not from this file
        self.outputs = [o["name"] for o in cfg["output"]]  # novelty only when declared (sync_config.py)
        self.out_dtype = {name: pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(cfg, name)["data_type"]) for name in self.outputs}
        self.model = model.to(self.device).eval()
        self.views = [v.name for v in model.config.views()]  # input pairs, in forward()'s order
        self.novelty = "novelty" in self.outputs
        self.torch = torch

    @staticmethod
    def _verify(cfg: dict, p: dict[str, str], m: dict) -> None:
        ins = {i["name"]: [int(d) for d in i["dims"]] for i in cfg["input"]}
        outs = {o["name"]: [int(d) for d in o["dims"]] for o in cfg["output"]}
        from service.model.checkpoint import manifest_views

        problems = []
        views = manifest_views(m)
        expected = {f"{v.name}_{side}": [v.frames, v.height, v.width, 3] for v in views for side in "ab"}
        for name, want in expected.items():
            if ins.get(name) != want:
                problems.append(f"input {name} dims {ins.get(name)} != manifest {want}")
        if set(ins) - set(expected):
            problems.append(f"inputs {sorted(set(ins) - set(expected))} are not views of the checkpoint")
        if p.get("views", "frames:letterbox") != m.get("views", "frames:letterbox"):
            problems.append(f"parameter views={p.get('views')!r} but checkpoint says {m.get('views')!r}")
        dims = list(m.get("dimensions", ("VA", "VF", "VP")))
        if outs.get("dimension_logits") != [len(dims)]:
            problems.append(f"dimension_logits dims {outs.get('dimension_logits')} != [{len(dims)}]")
        crit = list(m.get("criteria", ()))
        if outs.get("criterion_logits") != [len(crit)]:
            problems.append(f"criterion_logits dims {outs.get('criterion_logits')} != [{len(crit)}]")
        if "novelty" in outs and (outs["novelty"] != [2] or not m.get("novelty")):
            problems.append(f"output novelty {outs['novelty']} declared but the checkpoint has no novelty statistics"
                            " (or dims != [2])")
        checks = {"model_id": m["model_id"], "model_version": str(m["version"]), "criteria": ",".join(crit),
                  "criterion_dimension": ",".join(m.get("criterion_dimension", ())),
                  "trained": str(bool(m.get("trained", False))).lower(),
                  "calibrated": str(bool(m.get("calibrated", False)) and bool(m.get("trained", False))).lower()}
        for key, actual in checks.items():
            if key in p and p[key] != actual:
                problems.append(f"parameter {key}={p[key]!r} but checkpoint says {actual!r}")
        sha = p.get("checkpoint_sha256", "")
        if sha and not str(m.get("checkpoint_sha256", "")).startswith(sha):
            problems.append(f"checkpoint sha256 {str(m.get('checkpoint_sha256'))[:12]} != config {sha[:12]}")
        if problems:
            raise pb_utils.TritonModelException("aesrm_proxy config/manifest mismatch: " + "; ".join(problems))

    def _forward(self, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """a / b: {view: [B, T, H, W, 3]} of the two sides."""
        torch = self.torch
        with torch.inference_mode():
            videos = {v: np.concatenate([a[v], b[v]]) for v in self.views}
            n = len(a[self.views[0]])
            slot: dict[bytes, int] = {}
            index = np.empty(2 * n, dtype=np.int64)
            for i in range(2 * n):  # a video is all of its views
                h = hashlib.blake2b(digest_size=16)
                for v in self.views:
                    h.update(videos[v][i])
                index[i] = slot.setdefault(h.digest(), len(slot))
            first = np.unique(index, return_index=True)[1]
            emb = self.model.encode_views({v: torch.from_numpy(x[first]).to(self.device) for v, x in videos.items()})
            idx = torch.from_numpy(index).to(self.device)
            d, c = self.model.heads(emb[idx[:n]], emb[idx[n:]])
            out = {"dimension_logits": d.float().cpu().numpy(), "criterion_logits": c.float().cpu().numpy()}
            if self.novelty:  # per distinct video, then gathered per side: [B, 2] (a, b)
                nv = self.model.novelty(emb)[idx]
                out["novelty"] = torch.stack([nv[:n], nv[n:]], 1).float().cpu().numpy()
            return out

    def execute(self, requests):
        sides: dict[str, dict[str, list]] = {s: {v: [] for v in self.views} for s in "ab"}
        sizes = []
        for r in requests:
            for s in "ab":
                for v in self.views:
                    sides[s][v].append(pb_utils.get_input_tensor_by_name(r, f"{v}_{s}").as_numpy())
            sizes.append(len(sides["a"][self.views[0]][-1]))
        try:
            a, b = ({v: np.ascontiguousarray(np.concatenate(x)) for v, x in sides[s].items()} for s in "ab")
            res = self._forward(a, b)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            err = pb_utils.TritonError(f"aesrm_proxy forward failed: {type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        out, start = [], 0
        for n in sizes:
            out.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(res[name][start:start + n], dtype=self.out_dtype[name]))
                for name in self.outputs]))
            start += n
        return out

    def finalize(self) -> None:
        self.model = None
