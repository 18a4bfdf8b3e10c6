"""Explanations of a pair (the slow path): job store, bounded worker pool, proxy evidence, Triton CoT client.

Kept apart from the fast reward routes; see README.md in this folder.
"""

from service.explain.worker import ExplainService

__all__ = ["ExplainService"]
