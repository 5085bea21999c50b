"""A selective state-space scan (Mamba-2 style) in plain torch: linear in time and memory.

ECHO's LPE uses a long-range "Mamba" scan so the user context reaches back to the start of
the conversation. We need the same property on a CPU without custom kernels. Channels are
split into H heads of P channels; each head has one decay per frame (Mamba-2's scalar A):

    h_t = exp(Δ_t · A_h) · h_{t-1} + Δ_t · x_t ⊗ B_t          h: (H, P, N)
    y_t = h_t · C_t + D ⊙ x_t

Δ_t, B_t, C_t depend on the input (that is what makes the scan *selective*: the layer
decides per frame how much to remember). The recurrence is evaluated chunk by chunk: inside
a chunk of L frames it is a small (L, L) decay-weighted attention-like sum (parallel,
exponents ≤ 0 so it is numerically safe), between chunks only the state h is carried.
Time and memory are O(T · L · (N + P)), i.e. linear in T for a fixed L, and a long
conversation can be fed in pieces with `state` carried over: the result equals one pass
over the whole sequence (tested in tests/test_lcu.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ScanConfig:
    dim: int = 64          # channels D of the scanned sequence
    d_state: int = 8       # state size N
    expand: int = 1        # inner width = expand * dim
    headdim: int = 16      # channels P per head (one decay per head and frame)
    conv: int = 4          # causal depthwise conv kernel (local context before the scan)
    chunk: int = 16        # frames evaluated in parallel inside the scan
    dt_min: float = 0.01   # initial range of the step Δ (frames): long and short memories
    dt_max: float = 0.5


#################################################################################
#                              The scan itself                                  #
#################################################################################

def selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor,
                   Cm: torch.Tensor, h0: torch.Tensor | None = None, chunk: int = 16
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked evaluation of the selective recurrence.

    x: (B, T, H, P); dt: (B, T, H) ≥ 0; A: (H,) negative; Bm, Cm: (B, T, N);
    h0: (B, H, P, N) or None. Returns y (B, T, H, P) and the final state (B, H, P, N).
    """
    Bsz, T, H, P = x.shape
    N = Bm.shape[-1]
    h = x.new_zeros(Bsz, H, P, N) if h0 is None else h0
    ys = []
    for s in range(0, T, chunk):
        e = min(T, s + chunk)
        L = e - s
        xs, dts, Bs, Cs = x[:, s:e], dt[:, s:e], Bm[:, s:e], Cm[:, s:e]
        cum = torch.cumsum(dts * A, dim=1)                          # (B, L, H)  non-increasing
        diff = cum.unsqueeze(2) - cum.unsqueeze(1)                  # (B, L_i, L_j, H)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        decay = torch.where(causal[None, :, :, None], diff, diff.new_full((), -math.inf)).exp()
        cb = torch.einsum("bin,bjn->bij", Cs, Bs)                   # (B, L, L)
        w = decay * cb.unsqueeze(-1) * dts.unsqueeze(1)             # (B, L_i, L_j, H)
        y = torch.einsum("bijh,bjhp->bihp", w, xs)                  # (B, L, H, P) within the chunk
        y = y + torch.einsum("bin,bhpn->bihp", Cs, h) * cum.exp().unsqueeze(-1)   # from the past
        ys.append(y)
        last = (cum[:, -1:] - cum).exp() * dts                      # (B, L, H)
        h = h * cum[:, -1].exp()[..., None, None] + torch.einsum("bjh,bjhp,bjn->bhpn", last, xs, Bs)
    return torch.cat(ys, dim=1), h


def selective_scan_reference(x, dt, A, Bm, Cm, h0=None):
    """Frame-by-frame loop of the same recurrence (for tests only)."""
    Bsz, T, H, P = x.shape
    h = x.new_zeros(Bsz, H, P, Bm.shape[-1]) if h0 is None else h0
    ys = []
    for t in range(T):
        h = torch.exp(dt[:, t] * A)[..., None, None] * h \
            + (dt[:, t, :, None] * x[:, t])[..., None] * Bm[:, t, None, None, :]
        ys.append(torch.einsum("bhpn,bn->bhp", h, Cm[:, t]))
    return torch.stack(ys, 1), h


#################################################################################
#                               Scan block                                      #
#################################################################################

class SelectiveScanBlock(nn.Module):
    """Pre-norm residual block: x + out(scan(conv(in(x))) ⊙ silu(z)). Causal, streamable."""

    def __init__(self, cfg: ScanConfig):
        super().__init__()
        self.cfg = cfg
        inner = cfg.expand * cfg.dim
        assert inner % cfg.headdim == 0, "inner width must be a multiple of headdim"
        self.inner, self.heads = inner, inner // cfg.headdim
        self.norm = nn.LayerNorm(cfg.dim)
        self.in_proj = nn.Linear(cfg.dim, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, cfg.conv, groups=inner)   # applied causally (state = last K-1 inputs)
        self.x_proj = nn.Linear(inner, self.heads + 2 * cfg.d_state)  # Δ per head, B, C
        self.dt_bias = nn.Parameter(torch.zeros(self.heads))
        self.A_log = nn.Parameter(torch.zeros(self.heads))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, cfg.dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        cfg = self.cfg
        with torch.no_grad():
            # decay rates spread over heads: some heads remember seconds, others minutes
            self.A_log.copy_(torch.log(torch.linspace(1.0, 8.0, self.heads)))
            # Δ initialised log-uniform in [dt_min, dt_max] through the softplus bias
            dt = torch.exp(torch.rand(self.heads) * (math.log(cfg.dt_max) - math.log(cfg.dt_min))
                           + math.log(cfg.dt_min))
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            nn.init.zeros_(self.out_proj.weight)    # the block starts as the identity
            nn.init.zeros_(self.out_proj.bias)

    def init_state(self, batch: int, device=None) -> dict[str, torch.Tensor]:
        return {"h": torch.zeros(batch, self.heads, self.cfg.headdim, self.cfg.d_state, device=device),
                "conv": torch.zeros(batch, self.inner, self.cfg.conv - 1, device=device)}

    def forward(self, x: torch.Tensor, state: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, x.device)
        u, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)            # (B, T, I) each
        uc = torch.cat([state["conv"], u.transpose(1, 2)], dim=2)     # (B, I, K-1+T)
        new_conv = uc[:, :, uc.shape[2] - (self.cfg.conv - 1):]
        u = F.silu(self.conv(uc)).transpose(1, 2)                     # (B, T, I)
        dbc = self.x_proj(u)                                          # (B, T, H+2N)
        H, N = self.heads, self.cfg.d_state
        dt = F.softplus(dbc[..., :H] + self.dt_bias)                  # (B, T, H)
        Bm, Cm = dbc[..., H:H + N], dbc[..., H + N:]                  # (B, T, N)
        A = -torch.exp(self.A_log)                                    # (H,)
        xh = u.reshape(B, T, H, self.cfg.headdim)                     # (B, T, H, P)
        y, h = selective_scan(xh, dt, A, Bm, Cm, state["h"], self.cfg.chunk)   # (B, T, H, P)
        y = (y.reshape(B, T, self.inner) + u * self.D) * F.silu(z)    # (B, T, I)
        return x + self.out_proj(y), {"h": h, "conv": new_conv}      # (B, T, D)


class ScanStack(nn.Module):
    """n stacked scan blocks with a list of per-block states."""

    def __init__(self, cfg: ScanConfig, depth: int):
        super().__init__()
        self.blocks = nn.ModuleList([SelectiveScanBlock(cfg) for _ in range(depth)])

    def forward(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        state = state or [None] * len(self.blocks)
        new = []
        for blk, st in zip(self.blocks, state):
            x, s = blk(x, st)
            new.append(s)
        return x, new
