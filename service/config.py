"""One settings model for the whole service; every field is an env var with the AESRM_ prefix.

Example: AESRM_BACKEND=triton AESRM_TRITON_URL=triton:8001 AESRM_REDIS_URL=redis://redis:6379/0
List fields take JSON: AESRM_ALLOWED_ROOTS='["/mnt/renders"]'.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AESRM_", env_file=None, extra="ignore")

    # --- server ---
    host: str = "127.0.0.1"
    port: int = 8000

    # --- backend ---
    backend: Literal["embedded", "triton"] = "embedded"
    checkpoint: str | None = Field(None, description="Embedded backend weights; None = shipped default.")
    allow_untrained: bool = Field(False, description="Serve a random-init proxy if no checkpoint (tests only).")
    torch_threads: int = Field(2, ge=1, description="Intra-op threads for embedded inference (PyTorch or ONNX "
                                                    "Runtime).")
    embedded_runtime: Literal["auto", "onnxruntime", "torch"] = Field(
        "auto", description="What runs the embedded encoder: ONNX Runtime (exported from the checkpoint at "
                            "start-up, parity-checked; auto falls back to PyTorch if it is missing) or PyTorch.")
    max_batch_videos: int = Field(64, ge=1, description="Micro-batch: most distinct videos per forward.")
    max_batch_wait_ms: float = Field(2.0, ge=0, description="Micro-batch: how long to wait for company.")
    queue_size: int = Field(64, ge=1, description="Scoring calls waiting for the backend (micro-batch queue, or "
                                               "a free Triton call slot), same on both backends; full -> 429.")
    inference_timeout_s: float = Field(30.0, gt=0)

    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC endpoint host:port.")
    triton_model: str = "aesrm_proxy"
    triton_model_version: str = ""
    triton_timeout_s: float = Field(10.0, gt=0)
    triton_retries: int = Field(2, ge=0, description="Retries on transient gRPC errors only.")
    triton_shared_memory: bool = Field(False, description="Use system shared memory (co-located only).")
    triton_max_concurrency: int = Field(16, ge=1, description="Inference calls in flight to Triton at once "
                                                              "(also the shared-memory region count).")

    # --- ingest limits ---
    max_video_bytes: int = Field(64 * 1024 * 1024, ge=1)
    max_duration_s: float = Field(120.0, gt=0)
    max_pixels: int = Field(3840 * 2160, ge=1, description="Width x height of the source video.")
    max_frames: int = Field(20_000, ge=1, description="Most frames a source may declare/contain.")
    max_group_size: int = Field(32, ge=2)
    allowed_roots: list[str] = Field(default_factory=list, description="Dirs path inputs may come from.")
    decode_workers: int = Field(
        default_factory=_usable_cpus, ge=1,
        description="Bounded PyAV decode thread pool; default: the CPUs this process may run on. Decoding is "
                    "CPU-bound, so more threads than cores only take cores from the model's forward (2-core "
                    "box, G=8 groups at concurrency 4: 4 threads 3.38 req/s at 0.53 s CPU per group, 2 "
                    "threads 3.63-3.70 req/s at 0.49-0.50 s). In a container, set it to the CPU limit.")
    worker_nice: int = Field(
        5, ge=0, le=19,
        description="Niceness added (Linux, per thread) to the decode and inference threads, so the event loop "
                    "(HTTP, cache hits, aggregation) gets a core first under load; 0 = same priority.")
    decode_queue_size: int = Field(256, ge=1, description="Videos waiting for a decode thread; full -> 429.")
    decode_budget_pixels: int = Field(
        1920 * 1080 * 600, ge=1,
        description="Decode work per sampled frame: frames decoded x width x height, cumulative over the T "
                    "samples (600 1080p frames each; a clip with too few keyframes -> 422).")

    # --- scoring ---
    both_orders: bool = Field(True, description="Ask each pair as (A,B) and (B,A) by default.")
    dimension_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    # --- cache ---
    redis_url: str | None = Field(None, description="redis://...; None = in-process LRU.")
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    lru_size: int = Field(50_000, ge=1)
    redis_timeout_s: float = Field(0.25, gt=0, description="Per-command timeout; slow Redis = bypass.")
    redis_retry_after_s: float = Field(2.0, ge=0, description="After a Redis failure, bypass this long.")

    # --- explanations (slow route, own pool) ---
    explain_backend: Literal["proxy", "triton"] = Field("proxy", description="proxy heads or Triton CoT model.")
    explain_triton_model: str = "aesrm_cot"
    explain_workers: int = Field(1, ge=1, description="Concurrent explanation jobs.")
    explain_queue_size: int = Field(16, ge=1, description="Waiting explanation jobs; full -> 429.")
    explain_timeout_s: float = Field(120.0, gt=0, description="Per job run-time limit.")
    explain_job_ttl_s: int = Field(3600, ge=1, description="How long job state and results are kept.")

    # --- security and admission ---
    api_key_hashes: list[str] = Field(default_factory=list,
                                      description="sha256 hex of accepted bearer keys; empty = auth off.")
    auth_metrics: bool = Field(False, description="Require a key for /metrics too.")
    auth_health: bool = Field(False, description="Require a key for /health/* too.")
    rate_limit_per_minute: int = Field(0, ge=0, description="Per-key requests/minute (Redis); 0 = off.")
    max_in_flight: int = Field(256, ge=1, description="Scoring requests in progress; above -> 429.")
    max_request_bytes: int = Field(192 * 1024 * 1024, ge=1024,
                                   description="Whole request body, enforced while streaming -> 413.")
    body_timeout_s: float = Field(120.0, gt=0, description="Time an admitted request has to send its body -> 408.")
    url_ingest: bool = Field(False, description="Allow {'url': ...} inputs (SSRF-guarded).")
    url_allowlist: list[str] = Field(default_factory=list,
                                     description="CIDRs/hosts allowed even if private (e.g. a CDN).")
    url_timeout_s: float = Field(15.0, gt=0)
    url_max_redirects: int = Field(3, ge=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
