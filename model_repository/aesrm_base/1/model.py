"""AesRM-Base on Triton's python backend: a Qwen2.5-VL VLM that sees BOTH videos in one context and answers,
per dimension, "which video is better, A or B?". The preference logit is read from the answer-token logits
at the last position: logit = l("A") - l("B") (positive = A preferred, as the ScorerBackend contract says).

Why it is built this way:
- One prompt per (pair, dimension), batched (3 x pairs sequences, left-padded), so each forward returns all
  three dimensions with one scalar read per sequence -- no generation, no parsing.
- Frames arrive already sampled/resized by the gateway to the config's [T,H,W,3] (H, W multiples of
  patch*merge), so the Qwen2-VL patchification is done here in torch (identical layout to the HF video
  processor, without its torchvision dependency) and the only per-checkpoint piece is the tokenizer.
- ``tiny_random=true`` builds a tiny random-init Qwen2.5-VL and a local WordLevel tokenizer: plumbing and
  shape tests on CPU only; never a real score (config says trained=false).
The scorer class has no Triton dependency, so tests can also exercise it in-process.
"""

from __future__ import annotations

import json
import os
import sys

# The python-backend stub's embedded interpreter ignores PYTHONPATH (the repo root is not importable) and
# takes site-packages from the `python3` first on PATH; put the launcher's PYTHONPATH (repo + venv) FIRST:
# a base-interpreter numpy 2.x makes the 2.51 stub return empty FP32 outputs.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import numpy as np

try:  # absent outside tritonserver (in-process tests)
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover
    pb_utils = None

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_PROMPT = ("<|im_start|>system\nYou compare two generated videos.<|im_end|>\n<|im_start|>user\n"
                  "Video A: {video_a}\nVideo B: {video_b}\nWhich video is better in {dimension}? "
                  "Answer A or B.<|im_end|>\n<|im_start|>assistant\n")
TINY_PROMPT = ("<|im_start|> user video A : {video_a} video B : {video_b} which is better in {dimension} ? "
               "answer A or B . <|im_end|> <|im_start|> assistant")
DEFAULT_DIMENSIONS = ("visual aesthetics", "visual fidelity", "visual plausibility")
SPECIAL = ("<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>")


def tiny_random_model(seed: int = 0):
    """(model, tokenizer): a ~0.2M-parameter random Qwen2.5-VL with a local word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    words = ("video A B which is better in visual aesthetics fidelity plausibility ? answer or : . "
             "user assistant system").split()
    vocab = {t: i for i, t in enumerate(SPECIAL + tuple(words))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.add_special_tokens(list(SPECIAL))  # matched before pre-tokenization, like a real Qwen tokenizer
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<|endoftext|>")
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=1, eos_token_id=3, pad_token_id=1,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           fullatt_block_indexes=[1], window_size=56, patch_size=14, temporal_patch_size=2,
                           spatial_merge_size=2),
        video_token_id=vocab["<|video_pad|>"], image_token_id=vocab["<|image_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
        bos_token_id=1, eos_token_id=3, pad_token_id=1)
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(cfg).eval(), tok


class AesRMBaseScorer:
    """Pairs of [T,H,W,3] uint8 videos -> [B,3] preference logits from answer-token logits."""

    def __init__(self, checkpoint: str = "", *, tiny_random: bool = False, seed: int = 0, device: str = "cpu",
                 dtype: str = "bfloat16", prompt: str = "", dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS,
                 answer_tokens: tuple[str, str] = ("A", "B")) -> None:
        import torch

        self.torch = torch
        if tiny_random:
            self.model, self.tok = tiny_random_model(seed)
            self.prompt = prompt or TINY_PROMPT
            self.model.to(device)
        else:
            if not checkpoint:
                raise ValueError("aesrm_base needs parameter checkpoint=<dir of a Qwen2.5-VL AesRM-Base checkpoint>")
            from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

            self.tok = AutoTokenizer.from_pretrained(checkpoint)
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                checkpoint, dtype=getattr(torch, dtype), attn_implementation="sdpa").to(device).eval()
            self.prompt = prompt or DEFAULT_PROMPT
        self.tok.padding_side = "left"  # last position = answer position for every row
        self.device = torch.device(device)
        vc = self.model.config.vision_config
        self.patch, self.tpatch, self.merge = vc.patch_size, vc.temporal_patch_size, vc.spatial_merge_size
        self.dimensions = tuple(dimensions)
        ids = [self.tok.convert_tokens_to_ids(t) for t in answer_tokens]
        if any(i is None or i == self.tok.unk_token_id for i in ids):  # BPE vocabularies: encode the text
            ids = [self.tok.encode(t, add_special_tokens=False)[-1] for t in answer_tokens]
        self.answer_ids = ids
        self.mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    def check_shape(self, t: int, h: int, w: int) -> None:
        unit = self.patch * self.merge
        if t % self.tpatch or h % unit or w % unit:
            raise ValueError(f"frames [{t},{h},{w}] must be multiples of [{self.tpatch},{unit},{unit}]")

    def _patchify(self, video: np.ndarray):
        """[T,H,W,3] uint8 -> (patches [gt*gh*gw, 3*tp*p*p], (gt, gh, gw)); HF Qwen2-VL video layout."""
        torch, p, tp, m = self.torch, self.patch, self.tpatch, self.merge
        x = torch.from_numpy(np.ascontiguousarray(video)).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        x = (x - self.mean) / self.std
        t, c, h, w = x.shape
        gt, gh, gw = t // tp, h // p, w // p
        x = x.view(gt, tp, c, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return x.reshape(gt * gh * gw, c * tp * p * p), (gt, gh, gw)

    def score(self, frames_a: np.ndarray, frames_b: np.ndarray) -> np.ndarray:
        torch = self.torch
        self.check_shape(*frames_a.shape[1:4])
        texts, pixels, grids = [], [], []
        for va, vb in zip(frames_a, frames_b):
            pa, ga = self._patchify(va)
            pb, gb = self._patchify(vb)
            slots = [("<|vision_start|>" + "<|video_pad|>" * (g[0] * g[1] * g[2] // self.merge ** 2)
                      + "<|vision_end|>") for g in (ga, gb)]
            for dim in self.dimensions:
                texts.append(self.prompt.format(video_a=slots[0], video_b=slots[1], dimension=dim))
                pixels += [pa, pb]
                grids += [ga, gb]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            out = self.model(input_ids=enc.input_ids.to(self.device), attention_mask=enc.attention_mask.to(self.device),
                             pixel_values_videos=torch.cat(pixels).to(dtype),
                             video_grid_thw=torch.tensor(grids, device=self.device), logits_to_keep=1)
        last = out.logits[:, -1].float()
        logit = last[:, self.answer_ids[0]] - last[:, self.answer_ids[1]]
        return logit.view(len(frames_a), len(self.dimensions)).cpu().numpy().astype(np.float32)


def _params(cfg: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        cfg = json.loads(args["model_config"])
        p = _params(cfg)
        tiny = p.get("tiny_random", "false").lower() == "true"
        gpu = args.get("model_instance_kind") == "GPU"
        device = f"cuda:{args.get('model_instance_device_id', 0)}" if gpu else "cpu"
        if tiny and p.get("trained", "false").lower() == "true":
            raise pb_utils.TritonModelException("tiny_random=true is random-init: set trained=false")
        dims = tuple(d.strip() for d in p.get("dimension_prompts", "").split(",") if d.strip()) or DEFAULT_DIMENSIONS
        self.scorer = AesRMBaseScorer(p.get("checkpoint", ""), tiny_random=tiny, seed=int(p.get("seed") or 0),
                                      device=device, dtype=p.get("dtype") or "bfloat16",
                                      prompt=p.get("prompt", "").replace("\\n", "\n"), dimensions=dims,
                                      answer_tokens=tuple(p.get("answer_tokens", "A,B").split(",")))
        ins = {i["name"]: [int(d) for d in i["dims"]] for i in cfg["input"]}
        t, h, w, _ = ins["frames_a"]
        self.scorer.check_shape(t, h, w)
        out_cfg = pb_utils.get_output_config_by_name(cfg, "dimension_logits")
        if [int(d) for d in out_cfg["dims"]] != [len(dims)]:  # one logit per dimension prompt, in order
            raise pb_utils.TritonModelException(
                f"dimension_logits dims {out_cfg['dims']} but {len(dims)} dimension_prompts {dims}")
        self.out_dtype = pb_utils.triton_string_to_numpy(out_cfg["data_type"])

    def execute(self, requests):
        fa = [pb_utils.get_input_tensor_by_name(r, "frames_a").as_numpy() for r in requests]
        fb = [pb_utils.get_input_tensor_by_name(r, "frames_b").as_numpy() for r in requests]
        try:
            logits = self.scorer.score(np.concatenate(fa), np.concatenate(fb))
        except Exception as exc:  # noqa: BLE001
            err = pb_utils.TritonError(f"aesrm_base failed: {type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        out, start = [], 0
        for a in fa:
            n = len(a)
            out.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("dimension_logits", np.ascontiguousarray(logits[start:start + n],
                                                                         dtype=self.out_dtype))]))
            start += n
        return out

    def finalize(self) -> None:
        self.scorer = None
