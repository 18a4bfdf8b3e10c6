"""The real TRL GRPOTrainer (CPU, a tiny random causal LM) training two steps with AesRMReward as its
reward function against a real server: the logged rewards are grouped per prompt."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict

import numpy as np
import pytest

from service.client import AesRMClient
from service.client.grpo import score_batch
from service.client.trainers import AesRMReward
from service.examples import degrade, pan_frames, photo
from tests.test_client import serve

trl = pytest.importorskip("trl")  # in the test extra; skipped only on a client-only install

WORDS = ["a", "cat", "dog", "on", "the", "beach", "at", "night", "in", "rain", "red", "blue", "car", "slow",
         "fast", "pan", "zoom", "left", "right", "city"]


def tiny_policy():
    """A ~50k-parameter random Llama and a local word-level tokenizer (no files, no network)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: n for n, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=2, eos_token_id=3)
    return LlamaForCausalLM(cfg), tok


class Renderer:
    """Stands in for the video generator: a completion (the 'render recipe') deterministically picks one
    of several real clips, so different completions give different videos."""

    def __init__(self) -> None:
        base = pan_frames(photo("colorfulcups"), 12, 160, 96)
        self.bank = [base] + [degrade(base, k, s) for k in ("noise", "blur", "dark") for s in (0.3, 0.9)]

    def __call__(self, completion: str) -> np.ndarray:
        h = int(hashlib.blake2b(completion.encode(), digest_size=4).hexdigest(), 16)
        return self.bank[h % len(self.bank)]


@pytest.fixture(scope="module")
def server(redis_url):
    with serve(redis_url) as base:
        yield base


def test_trl_grpo_trainer_two_steps_logs_rewards_grouped_per_prompt(server, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tok = tiny_policy()
    prompts = ["a cat on the beach", "a dog at night", "a red car in rain", "the city at night"]
    data = Dataset.from_dict({"prompt": prompts * 4})
    render = Renderer()
    with AesRMClient(server) as client:
        reward = AesRMReward(client, to_video=render)  # videos from completions; grouped by prompt
        args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                          max_completion_length=6, max_steps=2, learning_rate=1e-3, logging_steps=1,
                          report_to=[], use_cpu=True, save_strategy="no", seed=0, beta=0.0,
                          temperature=1.5, log_completions=False)
        trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[reward], args=args,
                              train_dataset=data)
        trainer.train()
        logged_prompts = list(trainer._logs["prompt"])
        completions = list(trainer._logs["completion"])
        logged = list(trainer._logs["rewards"]["aesrm"])
        # the same renders scored directly, one call with the whole logged batch
        direct = score_batch(client, [render(c) for c in completions], logged_prompts)

    assert trainer.state.global_step == 2 and len(logged) == 8
    groups: dict[str, list[int]] = defaultdict(list)
    for n, p in enumerate(logged_prompts):
        groups[p].append(n)
    assert sorted(len(v) for v in groups.values()) == [4, 4]  # 2 prompts x G=4 per step
    for members in groups.values():
        rewards = [logged[n] for n in members]
        assert all(r is not None and math.isfinite(r) for r in rewards)
        distinct = len({render(completions[n]).tobytes() for n in members})
        if distinct > 1:  # Bradley-Terry strengths are zero-mean within each prompt's group
            assert sum(rewards) == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(logged, direct.rewards, rtol=1e-6, atol=1e-6)
    logged_keys = {k for h in trainer.state.log_history for k in h}
    assert {"aesrm/error_rate", "aesrm/VA", "rewards/aesrm/mean"} <= logged_keys
