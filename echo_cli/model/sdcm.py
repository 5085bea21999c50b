"""SDCM, the paper's speaking/listening decoupled cross-modal module (ECHO, Sec. "SDCM").

For the hidden state h of one block:

    h_usr = CrossAttn1(h, f_pu)              user context (from the LCU)
    h_avt = CrossAttn2(h, A_avt)             the avatar's own audio tokens
    g     = sigmoid(P([conv1(h_usr), conv2(h_avt)]))   two small temporal convolutions + a projector
    h'    = h + M_face * (g * h_avt + (1 - g) * h_usr) + M_lip * h_avt

M_face / M_lip are per-token weights (one per facial-region token), derived from
MotionSpace's per-component soft masks (`token_masks` in generator.py). The mouth
(articulation) token has M_face = 0 and M_lip = 1, so the user context cannot reach it
here; blocks.py keeps it from arriving any other way (region attention mask), which is
what makes "lip outputs have exactly zero gradient w.r.t. f_pu" hold for the whole model.

"No user" context: when the user context is absent (talking-head use, stage-1 training,
or classifier-free-guidance's unconditional branch) the user tokens are one learned null
token per frame (`EchoGenerator.null_user`), not zeros, so the gate learns what silence
from the user looks like.

`fusion="entangled"` is the ablation the docs measure: no masks, the gated mix is added to
every token (user context reaches the lips).

Shapes: h (B, N, R, C) = batch, frames (T_prev + T), region tokens, channels.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from echo_cli.model.attention import Attention, LocalCrossAttention


class SDCM(nn.Module):
    def __init__(self, dim: int, heads: int, m_face: torch.Tensor, m_lip: torch.Tensor,
                 fusion: str = "sdcm", audio_window: int = 2, gate_kernel: int = 3):
        super().__init__()
        self.fusion = fusion
        self.norm = nn.LayerNorm(dim)
        self.attn_usr = Attention(dim, heads)        # CrossAttn1(h, f_pu)
        self.attn_avt = LocalCrossAttention(dim, heads, audio_window)   # CrossAttn2(h, A_avt), +-w frames
        hidden = max(dim // 4, 8)
        self.conv_usr = nn.Conv1d(dim, hidden, gate_kernel, padding=gate_kernel // 2)   # f_conv1
        self.conv_avt = nn.Conv1d(dim, hidden, gate_kernel, padding=gate_kernel // 2)   # f_conv2
        self.proj = nn.Linear(2 * hidden, dim)                                          # f_g
        # (1, 1, R, 1) so they broadcast over batch, frames and channels.
        self.register_buffer("m_face", m_face.view(1, 1, -1, 1).clone(), persistent=False)
        self.register_buffer("m_lip", m_lip.view(1, 1, -1, 1).clone(), persistent=False)

    def _conv_time(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        B, N, R, C = x.shape
        y = conv(x.permute(0, 2, 3, 1).reshape(B * R, C, N))       # (B*R, C', N): per region, over time
        return y.view(B, R, -1, N).permute(0, 3, 1, 2)             # (B, N, R, C')

    def forward(self, h: torch.Tensor, user: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        B, N, R, C = h.shape
        x = self.norm(h)                                                            # (B, N, R, C)
        h_usr = self.attn_usr(x.reshape(B, N * R, C), user).view(B, N, R, C)        # (B, N, R, C)
        h_avt = self.attn_avt(x, audio)                                             # (B, N, R, C)
        g = torch.sigmoid(self.proj(torch.cat(
            [self._conv_time(self.conv_usr, h_usr), self._conv_time(self.conv_avt, h_avt)], -1)))  # (B, N, R, C)
        mix = g * h_avt + (1 - g) * h_usr                                           # (B, N, R, C)
        if self.fusion == "entangled":
            return h + mix
        return h + self.m_face * mix + self.m_lip * h_avt                          # (B, N, R, C)
