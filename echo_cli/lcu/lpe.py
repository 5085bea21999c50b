"""LPE, low-level perception: user audio → F_gm, user face motion → F_int; P_usr = both.

ECHO encodes the user's audio and video and runs a long-range scan over each (M_a, M_v),
with a mask on the video tokens. Here the user's video is already a compact motion vector
per frame (MotionSpace: pose + per-region expression), so:

- audio branch: per-frame user audio features (log-mel, energy, VAD) → MLP → temporal scan
  → F_gm (B, T, Dc);
- motion branch: the motion vector is split into its facial regions (pose, mouth, smile,
  eyes, brows, gaze) → one token per region → during training some region tokens are
  replaced by a learned mask token (masked encoder: the branch must infer a region from the
  others and from time, which makes it robust to tracking drop-outs) → a spatial mix across
  the region tokens of each frame → a temporal scan per region → F_int (B, T, Dc);
- P_usr = F_gm + F_int, both streams causal and streamable (state carried across chunks).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from echo_cli.lcu.ssm import ScanConfig, ScanStack


@dataclass(frozen=True)
class LPEConfig:
    audio_dim: int = 82            # user audio features per frame (80 log-mel + energy + VAD)
    motion_dim: int = 64           # MotionSpace vector size D
    # region name -> (start, stop) in the motion vector; empty = split D in 6 equal parts
    regions: tuple[tuple[str, int, int], ...] = ()
    dim: int = 64                  # width of the scans
    ctx_dim: int = 128             # Dc, the width of P_usr / f_pu
    depth: int = 2                 # scan blocks per branch
    d_state: int = 8
    chunk: int = 16
    mask_ratio: float = 0.25       # fraction of region tokens masked during training


def default_regions(motion_dim: int, n: int = 6) -> tuple[tuple[str, int, int], ...]:
    names = ("pose", "mouth", "smile", "eyes", "brows", "gaze")[:n]
    edges = [round(i * motion_dim / n) for i in range(n + 1)]
    return tuple((nm, edges[i], edges[i + 1]) for i, nm in enumerate(names) if edges[i + 1] > edges[i])


class AudioBranch(nn.Module):
    """User audio (B, T, Fa) → F_gm (B, T, Dc)."""

    def __init__(self, cfg: LPEConfig):
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(cfg.audio_dim), nn.Linear(cfg.audio_dim, cfg.dim),
                                 nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.scan = ScanStack(ScanConfig(dim=cfg.dim, d_state=cfg.d_state, chunk=cfg.chunk), cfg.depth)
        self.out = nn.Linear(cfg.dim, cfg.ctx_dim)

    def forward(self, a: torch.Tensor, state=None):
        x = self.inp(a)                                   # (B, T, d)
        x, state = self.scan(x, state)                    # (B, T, d)
        return self.out(x), state                         # (B, T, Dc)


class MotionBranch(nn.Module):
    """User motion (B, T, D) → region tokens → mask → spatial mix → temporal scan → F_int."""

    def __init__(self, cfg: LPEConfig):
        super().__init__()
        self.cfg = cfg
        self.regions = cfg.regions or default_regions(cfg.motion_dim)
        self.embed = nn.ModuleList([nn.Linear(e - s, cfg.dim) for _, s, e in self.regions])
        R = len(self.regions)
        self.region_pos = nn.Parameter(torch.zeros(1, 1, R, cfg.dim))
        self.mask_token = nn.Parameter(torch.zeros(cfg.dim))
        # spatial mixing across the R region tokens of one frame (a frame is not causal in space)
        self.spatial = nn.TransformerEncoderLayer(cfg.dim, nhead=4, dim_feedforward=2 * cfg.dim,
                                                  dropout=0.0, batch_first=True, norm_first=True)
        self.scan = ScanStack(ScanConfig(dim=cfg.dim, d_state=cfg.d_state, chunk=cfg.chunk), cfg.depth)
        self.out = nn.Linear(R * cfg.dim, cfg.ctx_dim)
        nn.init.normal_(self.region_pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, m: torch.Tensor, state=None, mask: torch.Tensor | None = None):
        B, T, _ = m.shape
        R, d = len(self.regions), self.cfg.dim
        tok = torch.stack([emb(m[..., s:e]) for emb, (_, s, e) in zip(self.embed, self.regions)], 2)  # (B, T, R, d)
        if mask is not None:                              # (B, T, R) bool: True = hidden
            tok = torch.where(mask[..., None], self.mask_token.expand_as(tok), tok)
        tok = tok + self.region_pos                       # (B, T, R, d)
        tok = self.spatial(tok.reshape(B * T, R, d)).reshape(B, T, R, d)
        # temporal scan per region: regions go to the batch axis
        x = tok.permute(0, 2, 1, 3).reshape(B * R, T, d)  # (B·R, T, d)
        x, state = self.scan(x, state)
        x = x.reshape(B, R, T, d).permute(0, 2, 1, 3).reshape(B, T, R * d)   # (B, T, R·d)
        return self.out(x), state                         # (B, T, Dc)

    def random_mask(self, B: int, T: int, generator: torch.Generator | None = None, device=None):
        """(B, T, R) bool: each region token hidden with probability mask_ratio."""
        R = len(self.regions)
        return torch.rand(B, T, R, generator=generator, device=device) < self.cfg.mask_ratio


class LPE(nn.Module):
    """P_usr = F_gm(audio) + F_int(motion); streamable state {'audio': ..., 'motion': ...}."""

    def __init__(self, cfg: LPEConfig):
        super().__init__()
        self.cfg = cfg
        self.audio = AudioBranch(cfg)
        self.motion = MotionBranch(cfg)

    def forward(self, user_audio, user_motion, state=None, mask=None):
        state = state or {}
        f_gm, sa = self.audio(user_audio, state.get("audio"))          # (B, T, Dc)
        f_int, sm = self.motion(user_motion, state.get("motion"), mask)  # (B, T, Dc)
        return f_gm + f_int, {"audio": sa, "motion": sm}                 # (B, T, Dc)
