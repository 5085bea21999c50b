"""Attention backends: xformers memory-efficient attention on CUDA, torch SDPA elsewhere.

The backend is chosen at run time, per call, from the tensor's device and the process-wide
setting (`set_backend("auto" | "xformers" | "sdpa")`, the CLI's `--attention`). xformers
has no CPU kernels, so "auto" means xformers only for CUDA tensors, and only where its
kernels actually run for the dtype (a build for another torch imports but has none).
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


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Where the generator runs: "auto" is the first CUDA GPU when torch sees one, else the CPU.

    Asking for "cuda" without one raises DependencyError (a render farm that asks for a GPU
    must get it or a clear error, not a silent CPU render).
    """
    if name not in DEVICES:
        raise UsageError(f"unknown device '{name}'", fix=f"use one of: {', '.join(DEVICES)}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DependencyError("device 'cuda' asked for, but torch sees no CUDA GPU",
                              fix="use --device cpu (or auto), or install a CUDA build of torch on a GPU machine")
    return torch.device("cuda")


@functools.lru_cache(maxsize=1)
def xformers_available() -> bool:
    """xformers imports (it may still have no kernels for this torch/GPU: xformers_problem)."""
    try:
        import xformers.ops  # noqa: F401
    except Exception:  # any import failure (missing wheel, CUDA mismatch) means "not usable"
        return False
    return True


@functools.lru_cache(maxsize=None)
def xformers_problem(dtype: torch.dtype = torch.float32) -> str | None:
    """None when xformers' memory_efficient_attention runs on this machine's GPU for `dtype`
    at this package's head size, else why not (one line).

    Importing is not enough: a wheel built for another torch/CUDA imports fine but loads no
    kernels (seen on an H200 with torch 2.11+cu130 and xformers 0.0.35, built for
    2.10+cu128: every operator refused float32), so a tiny call decides, once per process.
    """
    if not xformers_available():
        return "xformers is not installed"
    if not torch.cuda.is_available():
        return "xformers has no CPU kernels"
    import xformers
    import xformers.ops as xops
    try:
        q = torch.zeros(1, 8, 2, 16, device="cuda", dtype=dtype)            # (B, N, H, Dh)
        xops.memory_efficient_attention(q, q, q)
    except Exception as e:   # NotImplementedError: no operator for these inputs
        return (f"xformers {getattr(xformers, '__version__', '?')} has no {str(dtype).replace('torch.', '')} "
                f"kernel for torch {torch.__version__} on this GPU ({e.__class__.__name__})")
    return None


def resolve_backend(device: torch.device, name: str | None = None,
                    dtype: torch.dtype = torch.float32) -> str:
    """The backend that will actually run for `dtype` tensors on `device`."""
    name = name or _BACKEND
    if name == "sdpa":
        return "sdpa"
    if device.type != "cuda":
        if name != "xformers":
            return "sdpa"           # without importing xformers (1.8 s): it has no CPU kernels anyway
        problem = "xformers is not installed" if not xformers_available() else "xformers has no CPU kernels"
    else:
        problem = xformers_problem(dtype)
    if name == "xformers" and problem:
        raise DependencyError(f"attention backend 'xformers' cannot run here: {problem}",
                              fix="use --attention sdpa (or auto), or install the xformers build for "
                                  "this torch and CUDA on a GPU machine")
    if problem and device.type == "cuda" and problem not in _WARNED:
        _WARNED.add(problem)                  # once per process, not once per attention call
        from echo_cli import log
        log.get("echo_cli.model.attention").warning("attention: %s; using torch SDPA", problem)
    return "sdpa" if problem else "xformers"


_WARNED: set[str] = set()


def place(device: str = "auto", attention: str = "auto") -> torch.device:
    """The torch device for a render's `device` / `attention` settings, after checking that
    both can run here (UsageError / DependencyError with the fix otherwise)."""
    dev = resolve_device(device)
    resolve_backend(dev, attention)
    return dev


#################################################################################
#                                Core attention                                 #
#################################################################################

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              backend: str | None = None) -> torch.Tensor:
    """Scaled dot-product attention. q (B,H,N,Dh), k/v (B,H,M,Dh), mask bool -> (B,H,N,Dh)."""
    which = resolve_backend(q.device, backend, q.dtype)
    if which == "xformers":
        return _xformers_attention(q, k, v, mask)
    # SDPA even for a handful of keys (regions, identity tokens): with torch 2.x on CPU it
    # beat plain matmul + softmax at every shape of the default model (measured, 1 thread).
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

class _ContextCache:
    """Keys/values of the last cross-attention context, reused while the same tensor comes
    back. The sampler passes one chunk's conditioning tokens (the same tensor objects) at
    every flow step, so the projections run once per chunk instead of once per step.
    Only without autograd (inference), and only for the same, unmodified tensor (`_version`;
    inference-mode tensors have none and cannot be modified outside inference mode, where
    nothing in this package writes to conditioning tokens)."""

    def __init__(self):
        self.key = None
        self.value = None

    @staticmethod
    def _version(ctx: torch.Tensor) -> int:
        return -1 if ctx.is_inference() else ctx._version

    def get(self, ctx: torch.Tensor, make):
        if torch.is_grad_enabled():
            self.key = self.value = None
            return make(ctx)
        if self.key is not None and self.key[0] is ctx and self.key[1] == self._version(ctx):
            return self.value
        self.value = make(ctx)
        self.key = (ctx, self._version(ctx))
        return self.value


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
        self._cache = _ContextCache()

    def _kv(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, M, _ = ctx.shape
        kv = self.kv(ctx).view(B, M, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]                                                           # (B, H, M, Dh)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)          # (B, H, N, Dh)
        k, v = self._kv(x) if context is None else self._cache.get(context, self._kv)  # (B, H, M, Dh)
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
        self._cache = _ContextCache()

    def _windows(self, context: torch.Tensor):
        B, N, C = context.shape
        H, Dh, w = self.heads, self.head_dim, self.window
        K = 2 * w + 1
        kv = F.pad(self.kv(context), (0, 0, w, w))                                # (B, N+2w, 2C)
        win = kv.unfold(1, K, 1).reshape(B, N, 2, H, Dh, K)                       # (B, N, 2, H, Dh, K)
        k = win[:, :, 0] * (1.0 / math.sqrt(Dh))                                  # (B, N, H, Dh, K), pre-scaled
        v = win[:, :, 1].contiguous()
        pos = torch.arange(N, device=context.device)[:, None] + torch.arange(K, device=context.device) - w
        invalid = ~((pos >= 0) & (pos < N))                                       # (N, K)
        return k, v, invalid[None, :, None, None, :]

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, N, R, C = x.shape
        H, Dh = self.heads, self.head_dim
        q = self.q(x).view(B, N, R, H, Dh)                                        # (B, N, R, H, Dh)
        k, v, invalid = self._cache.get(context, self._windows)                   # (B, N, H, Dh, K)
        s = torch.einsum("bnrhd,bnhdk->bnrhk", q, k)                              # (B, N, R, H, K)
        s = s.masked_fill(invalid, float("-inf"))
        y = torch.einsum("bnrhk,bnhdk->bnrhd", s.softmax(-1), v)                  # (B, N, R, H, Dh)
        return self.out(y.reshape(B, N, R, C))                                    # (B, N, R, C)
