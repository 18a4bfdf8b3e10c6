"""Prometheus metrics: one registry per app so tests and several apps in a process don't collide.

Names are the dashboard/alert contract (deploy/ uses them): change them only together.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import ProcessCollector, PlatformCollector

# Label values known up front are exported at 0 from the start: a labelled series that first appears with
# its first increment has no earlier sample, so rate()/increase() read 0 for that first event (the first
# backend_error would never reach an alert). Values outside these lists still appear when first used.
CACHE_RESULTS = ("hit", "miss", "error", "bypass")
STAGES = ("ingest", "cache", "decode", "queue", "inference", "aggregate")
EXPLAIN_OUTCOMES = ("succeeded", "failed", "timeout", "shutdown", "cancelled", "rejected", "reused", "expired")


def error_codes() -> list[str]:
    """Every code service/errors.py can answer with (its ServiceError table and its generic handlers)."""
    from service import errors

    table = {cls.code for cls in errors.ServiceError.__subclasses__()}
    return sorted(table | {"invalid_request", "not_found", "method_not_allowed", "http_error", "internal"})


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Rewards are Bradley-Terry logits (about -10..10), win rates or P(candidate > reference) (0..1): one set of
# buckets resolves both.
REWARD_BUCKETS = (-8, -4, -2, -1, -0.5, -0.25, 0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1, 2, 4, 8)
SPREAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.request_duration = Histogram(
            "aesrm_request_duration_seconds", "HTTP request latency by route", ["route", "method", "status"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.stage_duration = Histogram(
            "aesrm_stage_duration_seconds", "Pipeline stage latency", ["stage"], buckets=LATENCY_BUCKETS,
            registry=r)
        self.batch_size = Histogram(
            "aesrm_batch_size", "Distinct videos per backend forward", buckets=BATCH_BUCKETS, registry=r)
        self.batch_pairs = Histogram(
            "aesrm_batch_pairs", "Pairs per backend forward", buckets=BATCH_BUCKETS, registry=r)
        self.cache_requests = Counter(
            "aesrm_cache_requests_total", "Cache lookups by result", ["result"], registry=r)
        self.in_flight = Gauge("aesrm_in_flight_requests", "Requests being served", registry=r)
        self.errors = Counter("aesrm_errors_total", "Error responses by code", ["code"], registry=r)
        self.queue_depth = Gauge("aesrm_queue_depth", "Scoring calls waiting for the backend (both backends)",
                                 registry=r)
        self.dropped = Counter(
            "aesrm_requests_dropped_total", "Work dropped because its caller had gone: client_disconnected "
            "(request cancelled) or cancelled_before_inference (backend job skipped)", ["reason"], registry=r)
        for reason in ("client_disconnected", "cancelled_before_inference"):
            self.dropped.labels(reason)
        self.backend_ready = Gauge("aesrm_backend_ready", "1 when backend and model are ready", registry=r)
        self.order_disagreement = Histogram(
            "aesrm_order_disagreement", "|P(A>B) - (1 - P(B>A))| per pair, both-order mode",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0), registry=r)
        self.explain_queue_depth = Gauge("aesrm_explain_queue_depth", "Explanation jobs waiting", registry=r)
        self.explain_jobs = Counter(
            "aesrm_explain_jobs_total", "Explanation jobs by outcome", ["outcome"], registry=r)
        self.explain_duration = Histogram(
            "aesrm_explain_job_duration_seconds", "Explanation job run time", buckets=LATENCY_BUCKETS,
            registry=r)
        # decode cost (issue 13): frames the decoder produced per frame the model got, per decoded video
        self.decode_frames_per_sample = Histogram(
            "aesrm_decode_frames_per_sample", "Decoded frames per sampled frame, per decoded video",
            buckets=(1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32, 64), registry=r)
        for result in CACHE_RESULTS:
            self.cache_requests.labels(result)
        for stage in STAGES:
            self.stage_duration.labels(stage)
        for code in error_codes():
            self.errors.labels(code)
        for outcome in EXPLAIN_OUTCOMES:
            self.explain_jobs.labels(outcome)
        self._rl_metrics(r)

    def registry_text(self) -> str:
        """The exposition text of this registry (what /metrics serves)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def _rl_metrics(self, r: CollectorRegistry) -> None:
        """RL observability (GRPO): what the service hands trainers, per model version. Reward hacking and
        mode collapse show up here before they show up in a training curve: the reward level in reference
        mode creeping to 1, one dimension's distribution moving away from the others, the within-group
        spread exploding (an exploit the model scores very high) or collapsing (no learning signal)."""
        self.reward = Histogram(
            "aesrm_reward", "Rewards returned for group items", ["model_version", "aggregation"],
            buckets=REWARD_BUCKETS, registry=r)
        self.reward_dimension = Histogram(
            "aesrm_reward_dimension", "Per-dimension value of each group item (BT strength, win rate or "
            "P(candidate > reference))", ["model_version", "aggregation", "dimension"],
            buckets=REWARD_BUCKETS, registry=r)
        self.reward_spread = Histogram(
            "aesrm_reward_spread", "max - min reward within one group", ["model_version", "aggregation"],
            buckets=SPREAD_BUCKETS, registry=r)

    def stage(self, name: str, seconds: float) -> None:
        self.stage_duration.labels(name).observe(seconds)
