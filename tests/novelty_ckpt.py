"""A real checkpoint with fitted novelty statistics for tests: the shipped weights (or the seed-0 untrained
proxy before a checkpoint exists) plus training's fit_novelty on real photo pans (service.examples),
saved by the real save_checkpoint. Fitting on 3 photos x 4 degradations keeps it to ~2 s on one thread;
a flat saturated-red or fine checkerboard clip is then far outside (novelty > 1), a pan of the same photos is
inside. (A flat GREY clip and an 8-px checkerboard were the first choice: under 2.1.0's embedding they sit at
1.06 and 0.99, at the threshold; the red field is at 6.7, the 2-px checkerboard at 1.9.)
(With the real train-split statistics of 1.1.0 they are not: service/model/README.md "Novelty".)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.examples import degrade, pan_frames, photo
from service.training.data import VIEWS, T, model_input

PHOTOS = ("bythewater", "colorfulcups", "path")


def clip(frames: np.ndarray, t: int = 8) -> np.ndarray:
    """T frames of a clip as a training clip: every view stacked along time (service.training.data)."""
    idx = np.linspace(0, len(frames) - 1, t).round().astype(int)
    return model_input(frames[idx])


def views(clips: np.ndarray) -> dict[str, np.ndarray]:
    """Training-style clips [N, 2T, H, W, 3] -> the gateway's {view name: [N, T, H, W, 3]}."""
    return {v.name: np.ascontiguousarray(clips[:, k * T:(k + 1) * T]) for k, v in enumerate(VIEWS)}


def example_groups() -> list:
    groups = []
    for name in PHOTOS:
        base = pan_frames(photo(name), 16, 320, 180)
        for kind in ("noise", "blur", "dark", "flicker"):
            trio = [clip(base), clip(degrade(base, kind, 0.4, seed=1)), clip(degrade(base, kind, 0.9, seed=2))]
            groups.append((np.stack(trio), 0, (0.0, 0.4, 0.9)))
    return groups


def checker(frames: int = 48, w: int = 320, h: int = 180, cell: int = 2) -> np.ndarray:
    """A synthetic checkerboard 'video' (nothing like a camera clip)."""
    board = (((np.indices((h, w)).sum(0) // cell) % 2) * 255).astype(np.uint8)
    return np.repeat(np.repeat(board[None, ..., None], frames, 0), 3, 3)


def flat_red(frames: int = 48, w: int = 320, h: int = 180) -> np.ndarray:
    """A flat, fully saturated red 'video'."""
    out = np.zeros((frames, h, w, 3), dtype=np.uint8)
    out[..., 0] = 255
    return out


def fitted_checkpoint(folder: Path) -> Path:
    import torch

    from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy, save_checkpoint, untrained_proxy
    from service.model.network import with_novelty_buffers
    from service.training.train import fit_novelty

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, manifest = load_proxy() if DEFAULT_CHECKPOINT.is_file() else untrained_proxy(seed=0)
        model = with_novelty_buffers(model)
        stats = fit_novelty(model, example_groups(), "tests: service.examples pans")
        keep = {k: v for k, v in manifest.items()
                if k not in ("checkpoint_file", "checkpoint_sha256", "calibrated", "novelty", "config")}
        keep["training"] = {**keep.get("training", {}), "novelty": stats}
        path = Path(folder) / "aesrm-proxy-novelty.pt"
        save_checkpoint(model, path, {**keep, "version": f"{keep.get('version', '0')}+novelty-test"})
        return path
    finally:
        torch.set_num_threads(old)
