"""Explanations of a pair (the slow path): job store, bounded worker pool, proxy evidence, Triton CoT client.

Kept apart from the fast reward routes; see README.md in this folder. The service is
service.explain.worker.ExplainService; this package imports nothing on its own so that the client SDK can use
service.explain.schemas without the server's dependencies.
"""
