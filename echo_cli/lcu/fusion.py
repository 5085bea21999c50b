"""f_align + gated cross-attention (GCA fusion) of S_usr with P_usr → f_pu.

ECHO aligns the behaviour tokens S_usr of its understanding model to the LPE feature space
(f_align) and fuses them with P_usr by gated cross-attention ξ_GCA. Here S_usr is one
MiniLM embedding per behaviour window (e.g. 1 s), broadcast to its frames. Each frame's
P_usr token queries a small causal set of behaviour tokens: the current window, the
previous `n_past` windows and a learned "nothing" token (so a frame may ignore the
description). The attended value is added back through a learned per-channel gate
(sigmoid of [P; attended]) times a tanh scalar alpha. Flamingo initialises alpha at 0 to
protect a *pretrained* path; here P_usr is as fresh as the fusion (stage 2 trains the whole
LCU from scratch), and alpha = 0 also zeroes the gradient of every fusion weight (d f_pu /
d attended = tanh(alpha)·g), so in 250 stage-2 steps the gate stayed shut (alpha 5e-4 in the
2026-11-25 default: HBCU contributed nothing). `gate_init` (default 0.5) opens it from the
start; 0 gives the Flamingo behaviour (f_pu = P_usr at initialisation).
Cost is O(T · (n_past + 2)): linear in time; the state keeps the last n_past·window
aligned tokens so chunked streaming equals one pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from echo_cli.features.text import TEXT_DIM


@dataclass(frozen=True)
class FusionConfig:
    text_dim: int = TEXT_DIM   # S_usr width (MiniLM)
    ctx_dim: int = 128         # Dc
    heads: int = 4
    window: int = 25           # frames per behaviour window (1 s at 25 fps)
    n_past: int = 2            # earlier windows a frame may look at
    gate_init: float = 0.5     # initial alpha of the tanh gate (0 = closed, Flamingo-style)


class GCAFusion(nn.Module):
    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.ctx_dim
        self.align = nn.Sequential(nn.Linear(cfg.text_dim, D), nn.SiLU(), nn.Linear(D, D),
                                   nn.LayerNorm(D))                           # f_align
        self.null = nn.Parameter(torch.zeros(1, 1, 1, D))                     # "nothing" token
        self.lag_pos = nn.Parameter(torch.zeros(1, 1, cfg.n_past + 2, D))      # which window
        self.q = nn.Linear(D, D)
        self.kv = nn.Linear(D, 2 * D)
        self.o = nn.Linear(D, D)
        self.q_norm = nn.LayerNorm(D)
        self.gate = nn.Linear(2 * D, D)
        self.alpha = nn.Parameter(torch.tensor(float(cfg.gate_init)))          # tanh gate
        self.initialize_weights()

    def initialize_weights(self) -> None:
        nn.init.normal_(self.null, std=0.02)
        nn.init.normal_(self.lag_pos, std=0.02)

    def _shifted(self, s: torch.Tensor, hist: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack s shifted by 0, W, 2W ... frames (causal); hist = aligned tokens before this chunk."""
        B, T, D = s.shape
        W, P = self.cfg.window, self.cfg.n_past
        need = W * P
        if hist is None:
            hist = s.new_zeros(B, 0, D)
        full = torch.cat([hist, s], 1)                        # (B, H+T, D)
        H = hist.shape[1]
        outs, valid = [], []
        for k in range(P + 1):
            lag = k * W
            idx = torch.arange(T, device=s.device) + H - lag  # positions in `full`
            ok = idx >= 0
            g = full[:, idx.clamp(min=0)]                     # (B, T, D)
            outs.append(g)
            valid.append(ok)
        new_hist = full[:, -need:] if need > 0 else full[:, :0]
        return torch.stack(outs, 2), torch.stack(valid, 1), new_hist   # (B, T, P+1, D), (T, P+1)

    def forward(self, p_usr: torch.Tensor, s_usr: torch.Tensor, state: dict | None = None
                ) -> tuple[torch.Tensor, dict]:
        """p_usr (B, T, Dc), s_usr (B, T, 384) → f_pu (B, T, Dc)."""
        B, T, D = p_usr.shape
        Hh = self.cfg.heads
        s = self.align(s_usr)                                                  # (B, T, Dc)
        toks, valid, hist = self._shifted(s, (state or {}).get("hist"))       # (B, T, P+1, Dc)
        toks = torch.cat([self.null.expand(B, T, 1, D), toks], 2) + self.lag_pos   # (B, T, K, Dc)
        K = toks.shape[2]
        valid = torch.cat([torch.ones(T, 1, dtype=torch.bool, device=p_usr.device), valid], 1)  # (T, K)
        q = self.q(self.q_norm(p_usr)).reshape(B, T, Hh, 1, D // Hh)          # (B, T, H, 1, d)
        k, v = self.kv(toks).chunk(2, -1)
        k = k.reshape(B, T, K, Hh, D // Hh).transpose(2, 3)                   # (B, T, H, K, d)
        v = v.reshape(B, T, K, Hh, D // Hh).transpose(2, 3)
        att = (q * k).sum(-1) / (D // Hh) ** 0.5                              # (B, T, H, K)
        att = att.masked_fill(~valid[None, :, None, :], float("-inf")).softmax(-1)
        a = (att.unsqueeze(-1) * v).sum(-2).reshape(B, T, D)                  # (B, T, Dc)
        a = self.o(a)
        g = torch.sigmoid(self.gate(torch.cat([p_usr, a], -1)))              # (B, T, Dc)
        f_pu = p_usr + torch.tanh(self.alpha) * g * a                          # (B, T, Dc)
        return f_pu, {"hist": hist}
