"""The fine-grained criteria the proxy judges and the dimension each one rolls up into.

Serving needs only these names (network heads, contract, explanations); the training data generator
(service.training.data) imports them from here so the two can never drift apart.
"""

from __future__ import annotations

CRITERIA: tuple[str, ...] = (
    "exposure", "contrast", "color_cast", "saturation", "composition_tilt",      # VA
    "sharpness", "noise", "compression_artifacts",                              # VF
    "temporal_flicker", "frame_stutter", "motion_jitter", "structural_warping",  # VP
)
CRITERION_DIMENSION: tuple[str, ...] = ("VA",) * 5 + ("VF",) * 3 + ("VP",) * 4
