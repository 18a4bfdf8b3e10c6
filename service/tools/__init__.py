"""Command-line tools around the service: benchmark, demo (the README's main job), Triton launcher."""
