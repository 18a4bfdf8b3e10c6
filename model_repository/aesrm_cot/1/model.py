"""AesRM-CoT explainer as a Triton decoupled Python-backend model (transformers generation, streamed).

Per request: FRAMES_A / FRAMES_B (uint8 [T,H,W,3]) and an optional PROMPT (UTF-8 as uint8 [N]; all text
travels as UTF-8 uint8 tensors). The model generates reasoning
and sends it as it goes, one response per `chunk_tokens` tokens (KIND=0), then scores the answer:
for each dimension and criterion it reads the LM's next-token probabilities of "A" / "B" / "T" (tie) after
"<name> verdict:" appended to the prompt + reasoning, and sends one KIND=1 response holding the
structured verdict JSON, flagged FINAL. Verdicts therefore always come from the model's own probabilities,
also when free text is unparseable.

Plumbing mode (tiny_random=true): a ~30k-parameter random Llama over bytes reads a text prompt of frame
statistics (brightness, contrast, sharpness, motion, colourfulness). Its text is meaningless; it exists so
CI can exercise the streaming path on CPU. A real AesRM-CoT checkpoint is a VLM (Qwen2.5-VL style) that
consumes the frames themselves: load it with its processor in `_load_checkpoint` and pass the frames as
video input instead of the statistics prompt; nothing else in this file or the gateway changes.
"""

from __future__ import annotations

import json
import os
import sys
import threading

# The python backend stub embeds an interpreter that ignores PYTHONPATH; honour it here (extra paths such
# as the repo). The stub's site-packages come from the `python3` first on PATH: put the serving venv's bin
# first, or the stub may load another numpy than it was built for (symptom: empty/garbled tensors).
sys.path.extend(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

DIMENSIONS = ("VA", "VF", "VP")
ANSWERS = ("A", "B", "T")


class Cancelled(Exception):
    """The client cancelled the stream."""


class ByteTokenizer:
    """Tokenizer of the tiny random model: one token per byte (+ bos/eos/pad). No files, no network."""

    bos_token_id, eos_token_id, pad_token_id, vocab_size = 256, 257, 258, 260

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [self.bos_token_id] + ids if add_special_tokens else ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        # printable ASCII only, so random bytes never form broken UTF-8 in a chunk
        return "".join(chr(i) if 32 <= i < 127 or i == 10 else "." for i in ids if i < 256)


def frame_stats(frames: np.ndarray) -> dict[str, float]:
    x = frames.astype(np.float32) / 255.0
    gray = x.mean(axis=-1)
    return {
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "sharpness": float(np.abs(np.diff(gray, axis=2)).mean()),
        "motion": float(np.abs(np.diff(gray, axis=0)).mean()) if len(gray) > 1 else 0.0,
        "colourfulness": float(x.std(axis=-1).mean()),
    }


def stats_prompt(frames_a: np.ndarray, frames_b: np.ndarray, extra: str = "") -> str:
    def line(name, f):
        return name + ": " + ", ".join(f"{k} {v:.3f}" for k, v in frame_stats(f).items())

    return ("Compare video A and video B on visual aesthetics (VA), fidelity (VF) and plausibility (VP), "
            "criterion by criterion, then give verdicts A, B or T (tie).\n"
            f"{line('A', frames_a)}\n{line('B', frames_b)}\n{extra}Reasoning:")


class TritonPythonModel:
    def initialize(self, args):
        import torch

        cfg = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(cfg):
            raise pb_utils.TritonModelException("aesrm_cot must be decoupled (streaming)")
        p = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        self.max_new_tokens = int(p.get("max_new_tokens", "48"))
        self.chunk_tokens = max(1, int(p.get("chunk_tokens", "8")))
        self.criteria = [tuple(c.split(":", 1)) for c in p.get("criteria", "").split(",") if ":" in c]
        torch.manual_seed(int(p.get("seed", "0")))
        torch.set_num_threads(1)
        self.torch = torch
        self.lock = threading.Lock()  # one generation at a time per instance
        if p.get("tiny_random", "false").lower() == "true":
            self.name, self.version = "aesrm-cot-tiny-random", "0"
            self._tiny(torch)
        else:
            self._load_checkpoint(p["checkpoint_dir"])
        self.model.eval()
        self.answer_ids = [self.tokenizer.encode(a, add_special_tokens=False)[0] for a in ANSWERS]

    def _tiny(self, torch) -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        tok = self.tokenizer = ByteTokenizer()
        cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
        self.model = LlamaForCausalLM(cfg)

    def _load_checkpoint(self, path: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path)
        self.name, self.version = path.rstrip("/").rsplit("/", 1)[-1], "1"

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                self._answer(request, sender)
            except Exception as exc:  # noqa: BLE001 - reported to the client as the final response
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None

    @staticmethod
    def _response(kind: str, text: str):
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("TEXT", np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()),
            pb_utils.Tensor("KIND", np.array([1 if kind == "final" else 0], dtype=np.uint8))])

    def _answer(self, request, sender) -> None:
        torch = self.torch
        fa = pb_utils.get_input_tensor_by_name(request, "FRAMES_A").as_numpy()
        fb = pb_utils.get_input_tensor_by_name(request, "FRAMES_B").as_numpy()
        pt = pb_utils.get_input_tensor_by_name(request, "PROMPT")
        extra = pt.as_numpy().tobytes().decode("utf-8", "replace") + "\n" if pt is not None else ""
        prompt = stats_prompt(fa, fb, extra)
        ids = torch.tensor([self.tokenizer.encode(prompt, add_special_tokens=True)])
        chunks: list[str] = []

        class Streamer:  # transformers BaseStreamer protocol: put(token ids), end()
            def __init__(s):
                s.first, s.buf = True, []

            def flush(s):
                if s.buf:
                    text = self.tokenizer.decode(s.buf, skip_special_tokens=True)
                    s.buf = []
                    if text:
                        chunks.append(text)
                        sender.send(self._response("text", text))

            def put(s, value):
                if getattr(sender, "is_cancelled", lambda: False)():  # client went away: stop generating
                    raise Cancelled()
                if s.first:  # generate() hands the prompt over first
                    s.first = False
                    return
                s.buf += [int(v) for v in value.reshape(-1)]
                if len(s.buf) >= self.chunk_tokens:
                    s.flush()

            def end(s):
                s.flush()

        with self.lock, torch.inference_mode():
            try:
                    self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                    do_sample=False, streamer=Streamer(), pad_token_id=self.tokenizer.pad_token_id)
            except Cancelled:
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return
            reasoning = "".join(chunks)
            verdicts = self._verdicts(prompt + reasoning)
        verdicts["reasoning"] = reasoning
        verdicts["model"] = {"id": self.name, "version": self.version}
        sender.send(self._response("final", json.dumps(verdicts)), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _verdicts(self, context: str) -> dict:
        """Answer-token probabilities for every dimension and criterion (one batched forward)."""
        torch = self.torch
        items = [(d, d) for d in DIMENSIONS] + [(c, d) for d, c in self.criteria]
        seqs = [self.tokenizer.encode(f"{context}\n{name} verdict:", add_special_tokens=True) for name, _ in items]
        width = max(map(len, seqs))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])  # left pad: last position is real
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -1, :]
        probs = torch.softmax(logits[:, self.answer_ids].double(), dim=-1).numpy()
        out = {"dimensions": {}, "criteria": []}
        for (name, dim), (pa, pb, pt) in zip(items, probs):
            k = int(np.argmax([pa, pb, pt]))
            v = {"verdict": ("A", "B", "tie")[k], "confidence": float((pa, pb, pt)[k]), "p_a": float(pa / (pa + pb))}
            if name in DIMENSIONS and name == dim and len(out["dimensions"]) < len(DIMENSIONS):
                out["dimensions"][name] = v
            else:
                out["criteria"].append(dict(v, name=name, dimension=dim))
        return out
