"""ECHO generator block (DiT-style, adaLN-Zero): time attention -> region attention ->
identity cross-attention -> SDCM -> FFN.

Tokens are per frame and per facial region: h (B, N, R, C) with N = T_prev + T frames
(the previous, clean frames are part of the sequence) and R region tokens (pose, mouth,
smile, eyes, brows, gaze, from MotionSpace.regions).

Information flow is constrained so that user context never reaches the articulation
(mouth) token, in any block:
  * time attention runs within one region (each region token attends to itself over time);
  * region attention mixes regions within a frame, but a "user-free" token (SDCM's
    M_face == 0: the mouth) attends only to user-free tokens (`region_mask`);
  * FFN, norms and adaLN act per token; adaLN reads only timestep + emotion (global);
  * identity cross-attention reads only identity tokens; SDCM masks the user path.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from echo_cli.model.attention import Attention
from echo_cli.model.sdcm import SDCM


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x (B, N, R, C); shift/scale (B, C): global conditioning, broadcast over tokens.
    # shift + x * (1 + scale) as one fused op (fewer temporaries on the CPU hot path)
    return torch.addcmul(shift[:, None, None, :], x, 1 + scale[:, None, None, :])


class FeedForward(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class EchoBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_ratio: float, m_face: torch.Tensor,
                 m_lip: torch.Tensor, region_mask: torch.Tensor | None, fusion: str, audio_window: int):
        super().__init__()
        self.norm_t = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn_t = Attention(dim, heads)              # over time, within a region
        self.norm_r = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn_r = Attention(dim, heads)              # over regions, within a frame
        self.norm_id = nn.LayerNorm(dim)
        self.attn_id = Attention(dim, heads)             # cross-attention to the reference identity
        self.sdcm = SDCM(dim, heads, m_face, m_lip, fusion, audio_window)
        self.norm_f = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ffn = FeedForward(dim, ffn_ratio)
        # shift/scale/gate for time-attn, region-attn and FFN (adaLN-Zero: gates start at 0)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        if region_mask is not None:
            self.register_buffer("region_mask", region_mask.clone(), persistent=False)   # (R, R) bool
        else:
            self.region_mask = None

    def forward(self, h: torch.Tensor, c: torch.Tensor, identity: torch.Tensor, user: torch.Tensor,
                audio: torch.Tensor) -> torch.Tensor:
        B, N, R, C = h.shape
        (sh_t, sc_t, g_t, sh_r, sc_r, g_r, sh_f, sc_f, g_f) = self.adaLN(c).chunk(9, dim=-1)  # 9 x (B, C)

        x = modulate(self.norm_t(h), sh_t, sc_t)                                  # (B, N, R, C)
        x = x.permute(0, 2, 1, 3).reshape(B * R, N, C)                            # (B*R, N, C)
        x = self.attn_t(x).view(B, R, N, C).permute(0, 2, 1, 3)                   # (B, N, R, C)
        h = torch.addcmul(h, g_t[:, None, None, :], x)

        x = modulate(self.norm_r(h), sh_r, sc_r).reshape(B * N, R, C)             # (B*N, R, C)
        x = self.attn_r(x, mask=self.region_mask).view(B, N, R, C)                # (B, N, R, C)
        h = torch.addcmul(h, g_r[:, None, None, :], x)

        x = self.norm_id(h).reshape(B, N * R, C)                                  # (B, N*R, C)
        h = h + self.attn_id(x, identity).view(B, N, R, C)                        # (B, N, R, C)

        h = self.sdcm(h, user, audio)                                             # (B, N, R, C)

        x = modulate(self.norm_f(h), sh_f, sc_f)
        h = torch.addcmul(h, g_f[:, None, None, :], self.ffn(x))                 # (B, N, R, C)
        return h


class FinalLayer(nn.Module):
    """adaLN-modulated norm; the per-region output maps live in the generator."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, h, c):
        shift, scale = self.adaLN(c).chunk(2, dim=-1)
        return modulate(self.norm(h), shift, scale)                               # (B, N, R, C)
