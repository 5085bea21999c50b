"""Attention backends: xformers memory-efficient attention on CUDA, torch SDPA elsewhere.

The backend is chosen at run time, per call, from the tensor's device and the process-wide
setting (`set_backend("auto" | "xformers" | "sdpa")`, the CLI's `--attention`). xformers
has no CPU kernels, so "auto" means xformers only for CUDA tensors with xformers importable.
Asking for "xformers" where it cannot run raises DependencyError instead of silently
falling back: a render farm that asks for a backend must get it or a clear error.

Layout everywhere in this package: q (B, H, N, Dh), k/v (B, H, M, Dh); masks are boolean
(True = may attend), broadcastable to (B, H, N, M).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from echo_cli.errors import DependencyError, UsageError

BACKENDS = ("auto", "xformers", "sdpa")
SMALL_KEYS = 8
_BACKEND = "auto"


#################################################################################
#                               Backend selection                               #
#################################################################################

def set_backend(name: str) -> None:
    """Process-wide attention backend ("auto" picks xformers on CUDA when installed)."""
    global _BACKEND
    if name not in BACKENDS:
        raise UsageError(f"unknown attention backend '{name}'", fix=f"use one of: {', '.join(BACKENDS)}")
    _BACKEND = name


def get_backend() -> str:
    return _BACKEND


@functools.lru_cache(maxsize=1)
def xformers_available() -> bool:
    try:
        import xformers.ops  # noqa: F401
    except Exception:  # any import failure (missing wheel, CUDA mismatch) means "not usable"
        return False
    return True


def resolve_backend(device: torch.device, name: str | None = None) -> str:
    """The backend that will actually run for tensors on `device`."""
    name = name or _BACKEND
    if name == "sdpa":
        return "sdpa"
    usable = device.type == "cuda" and xformers_available()
    if name == "xformers":
        if not usable:
            why = "xformers is not installed" if not xformers_available() else "xformers has no CPU kernels"
            raise DependencyError(f"attention backend 'xformers' cannot run here: {why}",
                                  fix="use --attention sdpa (or auto), or run on a CUDA GPU with xformers")
        return "xformers"
    return "xformers" if usable else "sdpa"


#################################################################################
#                                Core attention                                 #
#################################################################################

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              backend: str | None = None) -> torch.Tensor:
    """Scaled dot-product attention. q (B,H,N,Dh), k/v (B,H,M,Dh), mask bool -> (B,H,N,Dh)."""
    which = resolve_backend(q.device, backend)
    if which == "xformers":
        return _xformers_attention(q, k, v, mask)
    if q.device.type == "cpu" and k.shape[2] <= SMALL_KEYS:
        # a handful of keys (regions, identity tokens): two small matmuls beat the tiled
        # flash kernel's set-up cost on CPU; same math (tests compare against SDPA)
        return reference_attention(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _xformers_attention(q, k, v, mask):
    import xformers.ops as xops

    B, H, N, Dh = q.shape
    M = k.shape[2]
    bias = None
    if mask is not None:
        # xformers wants an additive bias whose last dim is 8-aligned in memory: allocate
        # padded storage and slice it (the documented way to satisfy the alignment check).
        pad = (M + 7) // 8 * 8
        store = torch.zeros(B, H, N, pad, device=q.device, dtype=q.dtype)
        bias = store[..., :M]
        bias.masked_fill_(~mask.expand(B, H, N, M), float("-inf"))
    out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_bias=bias)      # (B, N, H, Dh)
    return out.transpose(1, 2)                                   # (B, H, N, Dh)


#################################################################################
#                                   Modules                                     #
#################################################################################

class Attention(nn.Module):
    """Multi-head attention; self-attention when `context` is None, else cross-attention."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        assert dim % heads == 0, "hidden size must be divisible by the number of heads"
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        ctx = x if context is None else context
        M = ctx.shape[1]
        q = self.q(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)          # (B, H, N, Dh)
        kv = self.kv(ctx).view(B, M, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]                                                           # (B, H, M, Dh)
        y = attention(q, k, v, mask)                                                  # (B, H, N, Dh)
        y = y.transpose(1, 2).reshape(B, N, C)                                        # (B, N, C)
        return self.out(y)


def reference_attention(q, k, v, mask=None):
    """Plain math attention, used by tests as ground truth for both backends."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return s.softmax(-1) @ v


class LocalCrossAttention(nn.Module):
    """Cross-attention from per-frame tokens to a time-aligned context, within +-window frames.

    x (B, N, R, C) queries (R tokens per frame), context (B, N, C) one token per frame.
    Frame n attends context frames n-w .. n+w only (banded). Computed on gathered windows
    (B, N, 2w+1, ...) rather than a dense masked (N*R, N) attention: same result, ~N/(2w+1)
    times less work, which is what keeps the default model fast on CPU. No backend choice:
    it is a handful of einsums.
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        assert dim % heads == 0
        self.heads, self.head_dim, self.window = heads, dim // heads, window
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, N, R, C = x.shape
        H, Dh, w = self.heads, self.head_dim, self.window
        K = 2 * w + 1
        q = self.q(x).view(B, N, R, H, Dh)                                        # (B, N, R, H, Dh)
        kv = self.kv(context)                                                     # (B, N, 2C)
        kv = F.pad(kv, (0, 0, w, w))                                              # (B, N+2w, 2C)
        win = kv.unfold(1, K, 1)                                                  # (B, N, 2C, K)
        win = win.view(B, N, 2, H, Dh, K)
        k, v = win[:, :, 0], win[:, :, 1]                                         # (B, N, H, Dh, K)
        s = torch.einsum("bnrhd,bnhdk->bnrhk", q, k) / math.sqrt(Dh)              # (B, N, R, H, K)
        pos = torch.arange(N, device=x.device)[:, None] + torch.arange(K, device=x.device) - w
        valid = (pos >= 0) & (pos < N)                                            # (N, K)
        s = s.masked_fill(~valid[None, :, None, None, :], float("-inf"))
        y = torch.einsum("bnrhk,bnhdk->bnrhd", s.softmax(-1), v)                  # (B, N, R, H, Dh)
        return self.out(y.reshape(B, N, R, C))                                    # (B, N, R, C)
