"""AesRM reward-scoring service: pairwise VA/VF/VP preferences for video generation."""

__version__ = "0.1.0"
