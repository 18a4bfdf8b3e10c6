"""AesRM proxy: a small shared video encoder and antisymmetric, interpretable pairwise heads.

Encoder (shared by both videos): a per-frame CNN whose multi-scale pooled statistics see frame quality
(tone, colour, sharpness, noise, blocking), and a temporal module over per-frame features, their
differences and a small CNN on pixel frame differences (flicker, stutter, shake, warping). From 2.2.0 a
second input view, native-resolution fragments (service.ingest.views), feeds its own CNN's statistics
into the same per-frame features: detail that the 128-px whole frame averages away.
Heads: logit_c = w_c . (e_A - e_B) for every fine-grained criterion c (no bias), and each dimension logit
is a non-negative (softplus) combination of its own criteria's logits (VisionReward-style linear,
inspectable weights). Both are linear in e_A - e_B, so swapping A and B flips every logit exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from service.contract import FRAGMENTS, LETTERBOX, ViewSpec
from service.model.criteria import CRITERIA, CRITERION_DIMENSION

DIMENSIONS = ("VA", "VF", "VP")


@dataclass(frozen=True)
class ProxyConfig:
    frames: int = 8
    height: int = 128
    width: int = 128
    criteria: tuple[str, ...] = CRITERIA
    criterion_dimension: tuple[str, ...] = CRITERION_DIMENSION
    widths: tuple[int, ...] = (24, 32, 48, 64)  # per-frame CNN stages (stride 2 each)
    diff_widths: tuple[int, ...] = (16, 24, 32)  # frame-difference CNN stages
    frame_dim: int = 96
    embed_dim: int = 96
    orientation: bool = True  # edge-orientation statistics per frame (tilt / roll); added in 1.1.0
    bound: float = 8.0  # |logit| <= bound (odd soft clip); 0 = unbounded (checkpoints before 2.0.0)
    novelty: bool = True  # embedding-distance buffers (emb_center/emb_scale/novelty_ref) in the state_dict
    fragments: int = 4  # > 0: a second input view, grid x grid native-resolution patches (FAST-VQA); 2.2.0
    frag_widths: tuple[int, ...] = (16, 24, 32, 48)  # fragment CNN stages (stride 2 each)
    dim_heads: int = 0  # > 0: one ReLU layer of this width per dimension; embed_dim = 3 * dim_heads
    layout: int = 0  # > 0: position-aware pooling, the last frame stage averaged on a layout x layout grid
    layout_channels: int = 16  # ... after a 1x1 projection to this many channels

    def views(self) -> tuple[ViewSpec, ...]:
        """The input views of this architecture: the model's half of the gateway contract."""
        main = ViewSpec("frames", LETTERBOX, self.frames, self.height, self.width)
        if not self.fragments:
            return (main,)
        return main, ViewSpec("fragments", FRAGMENTS, self.frames, self.height, self.width, grid=self.fragments)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ProxyConfig":
        # checkpoints written before a field existed lack it: they rebuild the architecture they were saved with
        d = {"orientation": False, "bound": 0.0, "novelty": False, "fragments": 0, "dim_heads": 0, "layout": 0, **d}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _mean_std(x: torch.Tensor) -> list[torch.Tensor]:
    """Spatial mean and std of [M, C, H, W] (one pass; aten::std is slow on CPU)."""
    m = x.mean((2, 3))
    return [m, ((x * x).mean((2, 3)) - m * m).clamp_min(1e-6).sqrt()]


ORIENTATION_FEATURES = 8
LUMA_KERNEL = (torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1) / (255.0 * 4)).expand(1, 3, 2, 2).contiguous()
"""Rec.601 luma of 0..255 RGB, averaged over 2x2 blocks: one strided conv (a sum + pool over channels-last
frames costs 10x more)."""


def _orientation(frames: torch.Tensor, luma_k: torch.Tensor = LUMA_KERNEL) -> torch.Tensor:
    """uint8-valued float frames [M, 3, H, W] -> [M, 8] edge-orientation statistics at H/2 and H/4.

    Pooled mean/std statistics are blind to a rotated horizon; these are not. With gradient (gx, gy) at
    angle θ, `|g|^4 cos 4θ = gx^4 - 6 gx^2 gy^2 + gy^4` is largest when edges lie along the frame axes and
    falls as the camera rolls; `|g|^4 sin 4θ = 4 gx gy (gx^2 - gy^2)` takes the sign of the roll (its
    magnitude is used: a tilt either way is a tilt). Each is averaged with |g|^4 and |g|^2 weights (strong
    lines vs all texture). Letterbox bars (exact black) and their edges are masked out.
    """
    luma = F.conv2d(frames, luma_k, stride=2)  # half resolution: the scale of horizons
    valid = -F.max_pool2d(-(frames.amax(1, keepdim=True) > 0).to(frames.dtype), 2)
    valid = -F.max_pool2d(-valid, 5, stride=1, padding=2)  # erode: no bar edges
    out = []
    for _ in range(2):
        v = valid[..., 1:-1, 1:-1]  # 0/1, so masking the gradient masks every product of it
        gx = (luma[..., 1:-1, 2:] - luma[..., 1:-1, :-2]) * v
        gy = (luma[..., 2:, 1:-1] - luma[..., :-2, 1:-1]) * v
        a, b, p = gx * gx, gy * gy, gx * gy
        e, u = a + b, a - b  # |g|^2 and |g|^2 cos 2θ
        c4 = u * u - 4 * p * p  # |g|^4 cos 4θ
        s4 = 4 * p * u  # |g|^4 sin 4θ
        r = 1.0 / (e + 1e-6)  # |g|^2-weighted: divide the |g|^4 terms by |g|^2
        d4 = (e * e).sum((1, 2, 3)) + 1e-10
        d2 = e.sum((1, 2, 3)) + 1e-6
        out += [c4.sum((1, 2, 3)) / d4, s4.sum((1, 2, 3)).abs() / d4,
                (c4 * r).sum((1, 2, 3)) / d2, (s4 * r).sum((1, 2, 3)).abs() / d2]
        luma, valid = F.avg_pool2d(luma, 2), -F.max_pool2d(-valid, 2)
    return torch.stack(out, 1)


def soft_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """bound * tanh(x / bound), written as an exactly odd function (sign times a function of |x|) so
    that swapping A and B still flips every logit bit-exactly. Identity for bound <= 0."""
    if bound <= 0:
        return x
    return torch.sign(x) * (torch.tanh(x.abs() / bound) * bound)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class AesRMProxy(nn.Module):
    def __init__(self, config: ProxyConfig = ProxyConfig()):
        super().__init__()
        assert len(config.criteria) == len(config.criterion_dimension) <= 15
        self.config = config
        self.register_buffer("mean", torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1) * 255)
        self.register_buffer("inv_std", 1 / (torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1) * 255))
        self.register_buffer("luma_k", LUMA_KERNEL.clone(), persistent=False)
        w = config.widths
        self.frame_cnn = nn.ModuleList([_block(c_in, c_out) for c_in, c_out in zip((3,) + w[:-1], w)])
        # mean and std of every stage: global tone/colour from early stages, texture energy from all
        n_orient = ORIENTATION_FEATURES if config.orientation else 0
        # fragments view: the same multi-scale statistics of native-resolution patches (noise, blocking,
        # blur that the downscaled frame averages away), per frame, into the same frame vector
        fw = config.frag_widths if config.fragments else ()
        if fw:
            self.frag_cnn = nn.ModuleList([_block(c_in, c_out) for c_in, c_out in zip((3,) + fw[:-1], fw)])
        n_frag = 2 * sum(fw) + 6 if fw else 0
        self.frame_proj = nn.Sequential(nn.Linear(2 * sum(w) + 6 + n_orient + n_frag, config.frame_dim),
                                        nn.ReLU(inplace=True))
        if config.layout:
            # Position-aware pooling (issue 10: aesthetics needs layout, which mean/std statistics discard):
            # the last stage, projected 1x1, averaged per cell of a layout x layout grid, joins the frame
            # vector before frame_proj's ReLU. layout_proj starts at zero, so a fine-tune from a checkpoint
            # without it starts from exactly that checkpoint's function.
            self.layout_conv = nn.Conv2d(w[-1], config.layout_channels, 1, bias=False)
            self.layout_proj = nn.Linear(config.layout_channels * config.layout ** 2, config.frame_dim, bias=False)
            nn.init.zeros_(self.layout_proj.weight)
        dw = config.diff_widths
        self.diff_cnn = nn.Sequential(*[_block(c_in, c_out) for c_in, c_out in zip((3,) + dw[:-1], dw)])
        fd = config.frame_dim
        tin = 2 * fd + 2 * dw[-1] + 6
        self.temporal = nn.Sequential(nn.Conv1d(tin, fd, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv1d(fd, fd, 3, padding=1), nn.ReLU(inplace=True))
        c = len(config.criteria)
        mask = torch.tensor([[float(d == dim) for d in config.criterion_dimension] for dim in DIMENSIONS])
        self.register_buffer("dim_mask", mask)  # [3, C]
        k = config.dim_heads
        if k:
            # A hidden ReLU layer of its own per dimension (the blocks of one Linear), and every criterion
            # reads only its dimension's block: each dimension gets a non-linear read of the pooled clip
            # statistics, while the logit stays linear in e_A - e_B (antisymmetry is exact as before).
            assert config.embed_dim == len(DIMENSIONS) * k, "dim_heads needs embed_dim = 3 * dim_heads"
            self.embed = nn.Sequential(nn.Linear(fd + 2 * fd, config.embed_dim), nn.ReLU())
            self.register_buffer("crit_block", mask.t().repeat_interleave(k, 1), persistent=False)  # [C, 3k]
        else:
            self.embed = nn.Linear(fd + 2 * fd, config.embed_dim)
        self.criterion_w = nn.Parameter(torch.randn(c, config.embed_dim) * 0.05)
        self.dim_raw = nn.Parameter(torch.zeros(c))  # softplus -> non-negative criterion weights
        # Temperatures fitted on validation pairs after training (logit / T); 1 = uncalibrated. Stored in
        # the state_dict (and the manifest, for reading) from 2.0.0 on.
        persist = config.bound > 0
        self.register_buffer("dim_temperature", torch.ones(len(DIMENSIONS)), persistent=persist)
        self.register_buffer("crit_temperature", torch.ones(c), persistent=persist)
        # Novelty (see novelty()): diagonal whitening of the embedding fitted on training-split clips by
        # service.training.train.fit_novelty; novelty_ref == 0 means "not fitted" (novelty unavailable).
        # Persistent only when the config has them, so checkpoints written before (1.1.0) still load strictly.
        nv = config.novelty
        self.register_buffer("emb_center", torch.zeros(config.embed_dim), persistent=nv)
        self.register_buffer("emb_scale", torch.ones(config.embed_dim), persistent=nv)
        self.register_buffer("novelty_ref", torch.zeros(()), persistent=nv)

    @property
    def has_novelty(self) -> bool:
        """True when the novelty statistics exist and were fitted; otherwise novelty() must not be used."""
        return bool(self.config.novelty) and float(self.novelty_ref) > 0

    def novelty(self, emb: torch.Tensor) -> torch.Tensor:
        """Embeddings [N, D] -> [N] distance from the training distribution: RMS of the diagonally
        whitened embedding (e - center) * scale, divided by its 99th percentile over training clips, so
        <= 1 reads "like the clips the model was trained on" and > 1 is rarer than 1 in 100 of them.
        Per video, so swapping A and B just swaps the two values. Callers check has_novelty first."""
        z = (emb - self.emb_center) * self.emb_scale
        return (z * z).mean(-1).sqrt() / self.novelty_ref

    def dimension_weights(self) -> torch.Tensor:
        """[3, C] non-negative weights combining criterion logits into VA, VF, VP logits."""
        return self.dim_mask * F.softplus(self.dim_raw)[None]

    def _frame_features(self, x: torch.Tensor, raw: torch.Tensor, frag: torch.Tensor | None) -> torch.Tensor:
        """x: [M, 3, H, W] normalised, raw: the same frames 0..255, frag: the fragments view normalised
        (or None) -> [M, frame_dim] from multi-scale mean/std statistics (and edge orientation)."""
        stats = _mean_std(x)
        for blk in self.frame_cnn:
            x = blk(x)
            stats += _mean_std(x)
        if self.config.orientation:
            stats.append(_orientation(raw, self.luma_k) * 10.0)  # O(0.1) values brought to the scale of the others
        if self.config.fragments:
            stats += _mean_std(frag)
            for blk in self.frag_cnn:
                frag = blk(frag)
                stats += _mean_std(frag)
        if not self.config.layout:
            return self.frame_proj(torch.cat(stats, 1))
        cell = x.shape[-1] // self.config.layout  # 8 // 4: whole cells (a plain AveragePool in ONNX)
        grid = F.avg_pool2d(self.layout_conv(x), cell).flatten(1)
        return F.relu(self.frame_proj[0](torch.cat(stats, 1)) + self.layout_proj(grid))

    def _normalised(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, t, h, w, _ = frames.shape
        raw = frames.reshape(n * t, h, w, 3).permute(0, 3, 1, 2).float()
        return (raw - self.mean) * self.inv_std, raw

    def encode(self, frames: torch.Tensor, fragments: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 [N, T, H, W, 3] whole frames (+ the fragments view when the config has one) -> float
        embedding [N, D]."""
        if bool(self.config.fragments) != (fragments is not None):
            raise ValueError(f"this model's views are {[v.name for v in self.config.views()]}")
        n, t, h, w, _ = frames.shape
        x, raw = self._normalised(frames)
        frag = self._normalised(fragments)[0] if fragments is not None else None
        f = self._frame_features(x, raw, frag).view(n, t, -1)
        xs = F.avg_pool2d(x, 2).view(n, t, 3, h // 2, w // 2)
        d = (xs[:, 1:] - xs[:, :-1]).reshape(n * (t - 1), 3, h // 2, w // 2)
        dstat = torch.cat([d.mean((2, 3)), d.abs().mean((2, 3))], 1)
        g = self.diff_cnn(d)
        g = torch.cat([g.mean((2, 3)), g.amax((2, 3))], 1)
        seq = torch.cat([f[:, 1:], f[:, 1:] - f[:, :-1], g.view(n, t - 1, -1), dstat.view(n, t - 1, -1)], 2)
        z = self.temporal(seq.transpose(1, 2))  # [N, fd, T-1]
        pooled = torch.cat([f.mean(1), z.mean(2), z.amax(2)], 1)
        return self.embed(pooled)

    def encode_views(self, views: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """{view name: uint8 [N, T, H, W, 3]} (the gateway's ScorerBackend.score input) -> [N, D]."""
        return self.encode(views["frames"], views["fragments"] if self.config.fragments else None)

    def unpack(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training clips [N, T * k, H, W, 3] hold the views stacked along time (service.training.data,
        in the order of ProxyConfig.views()) -> (frames, fragments or None); views this model lacks are
        ignored."""
        t = self.config.frames
        return clips[:, :t], (clips[:, t:2 * t] if self.config.fragments else None)

    def encode_packed(self, clips: torch.Tensor) -> torch.Tensor:
        return self.encode(*self.unpack(clips))

    def forward_packed(self, clips_a: torch.Tensor, clips_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward() of two packed training clips (the real forward: the ONNX / Triton graph)."""
        (fa, ga), (fb, gb) = self.unpack(clips_a), self.unpack(clips_b)
        return self(fa, fb, ga, gb)

    def example_inputs(self, batch: int = 1, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Random uint8 forward() inputs (frames_a, frames_b[, fragments_a, fragments_b]): export, latency."""
        views = self.config.views()
        shape = (batch, self.config.frames, self.config.height, self.config.width, 3)
        return tuple(torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
                     for _ in range(2 * len(views)))

    def forward_views(self, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """forward() of two {view name: uint8 [B, T, H, W, 3]} inputs (service.ingest.views' output)."""
        return self.heads(self.encode_views(a), self.encode_views(b))

    def raw_heads(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unbounded, uncalibrated (dimension logits [P, 3], criterion logits [P, C]): what training sees.
        A dimension combines its criteria's raw logits, so a criterion that is sure (noise on a noise pair)
        can outweigh one that is mildly fooled (sharpness reads noise as detail); bounding each criterion
        first (2.0.0rc1) made them equal votes and cost VF 8 points."""
        w = self.criterion_w * self.crit_block if self.config.dim_heads else self.criterion_w
        crit = (emb_a - emb_b) @ w.t()
        return crit @ self.dimension_weights().t(), crit

    def heads(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings [P, D] x2 -> calibrated, bounded (dimension logits [P, 3] VA/VF/VP, criterion logits
        [P, C]): soft_bound(logit / temperature). Identity for the unbounded 1.x checkpoints."""
        dim, crit = self.raw_heads(emb_a, emb_b)
        b = self.config.bound
        return soft_bound(dim / self.dim_temperature, b), soft_bound(crit / self.crit_temperature, b)

    def forward(self, frames_a: torch.Tensor, frames_b: torch.Tensor, fragments_a: torch.Tensor | None = None,
                fragments_b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # Encode each side separately: identical shapes give bit-identical embeddings, so the
        # antisymmetry forward(b, a) == -forward(a, b) is exact, not just approximate.
        return self.heads(self.encode(frames_a, fragments_a), self.encode(frames_b, fragments_b))

    def forward_with_novelty(self, frames_a: torch.Tensor, frames_b: torch.Tensor,
                             fragments_a: torch.Tensor | None = None, fragments_b: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward() plus novelty [B, 2] (side a, side b): the ONNX / TensorRT graph of a model with
        fitted novelty statistics. The logits are computed exactly as in forward()."""
        ea, eb = self.encode(frames_a, fragments_a), self.encode(frames_b, fragments_b)
        dim, crit = self.heads(ea, eb)
        return dim, crit, torch.stack([self.novelty(ea), self.novelty(eb)], 1)


def with_novelty_buffers(model: AesRMProxy) -> AesRMProxy:
    """The same weights in a model whose config has the (persistent, not yet fitted) novelty buffers:
    how a checkpoint written before they existed (1.1.0, early 2.0.0 candidates) gets its statistics
    (`aesrm-train --calibrate-only` then fit_novelty). Returns `model` itself when it already has them."""
    if model.config.novelty:
        return model
    new = AesRMProxy(replace(model.config, novelty=True))
    result = new.load_state_dict(model.state_dict(), strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= {"emb_center", "emb_scale", "novelty_ref"}, result
    return new.to(next(model.parameters()).device).train(model.training)
