"""Flow matching (rectified flow): the noise process, the few-step ODE sampler and
classifier-free guidance. The network (model/generator.py) never imports this file.

Convention: t in [0, 1]; x_t = (1 - t) * noise + t * data; the network predicts the
velocity v = data - noise; sampling integrates dx/dt = v from t = 0 (noise) to t = 1.

Guidance (two conditions, as in InstructPix2Pix-style nested CFG):
    v = v(null) + s_a * (v(audio) - v(null)) + s_u * (v(audio, user) - v(audio))
The branches run as one batched forward. With no user context (or s_u == 0) the third
branch is skipped; with s_a == 1 and s_u == 1 only the full branch runs. Because SDCM keeps
the lips user-free, the user term is exactly zero on the mouth components.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

METHODS = ("euler", "heun")


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 4            # ODE steps (Heun costs two network calls per step)
    method: str = "euler"
    cfg_audio: float = 1.5
    cfg_user: float = 1.0
    shift: float = 1.0        # >1 spends more steps near the noise end (t small)


#################################################################################
#                                Noise process                                  #
#################################################################################

def interpolate(data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tt = t.view(-1, *([1] * (data.dim() - 1)))
    return (1 - tt) * noise + tt * data


def target_velocity(data: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return data - noise


def predicted_data(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The one-step estimate of the clean sample from x_t and a velocity."""
    tt = t.view(-1, *([1] * (x_t.dim() - 1)))
    return x_t + (1 - tt) * v


def sample_time(n: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """Training times: logit-normal (more weight mid-way, as in SD3), in (0, 1)."""
    return torch.sigmoid(torch.randn(n, generator=generator, device=device))


def timesteps(steps: int, shift: float = 1.0) -> torch.Tensor:
    t = torch.linspace(0.0, 1.0, steps + 1)
    if shift != 1.0:      # t' = t / (t + shift (1 - t)): shift > 1 -> denser near t = 0
        t = t / (t + shift * (1 - t))
    return t


#################################################################################
#                                   Guidance                                    #
#################################################################################

def guided_velocity(model, prev, audio, identity, user_ctx=None, emotion=None,
                    cfg_audio: float = 1.5, cfg_user: float = 1.0, quiet=None) -> Callable:
    """A velocity function v(x (B,T,D), t (B,)) with classifier-free guidance, conditioning
    tokens computed once. All tensors are batched (B, ...) and in normalised motion units;
    quiet (B, Na) bool: the quiet gate's frames (model.condition)."""
    B = identity.shape[0]
    has_user = user_ctx is not None and cfg_user != 0.0
    # branches: (drop_audio, drop_user) + weight of each branch in the final combination
    if not has_user:
        branches = [(True, True), (False, True)] if cfg_audio != 1.0 else [(False, True)]
        weights = [1 - cfg_audio, cfg_audio] if cfg_audio != 1.0 else [1.0]
    elif cfg_audio == 1.0 and cfg_user == 1.0:
        branches, weights = [(False, False)], [1.0]
    else:
        branches = [(True, True), (False, True), (False, False)]
        weights = [1 - cfg_audio, cfg_audio - cfg_user, cfg_user]
    k = len(branches)
    rep = lambda x: None if x is None else x.repeat(k, *([1] * (x.dim() - 1)))   # noqa: E731
    dev = identity.device
    drop_a = torch.tensor([a for a, _ in branches], device=dev).repeat_interleave(B)
    drop_u = torch.tensor([u for _, u in branches], device=dev).repeat_interleave(B)
    Tp = 0 if prev is None else prev.shape[1]
    prev_k = rep(prev)
    cache: dict = {}

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if "cond" not in cache:     # once per chunk: conditioning does not depend on t
            cache["cond"] = model.condition(Tp + x.shape[1], rep(audio), rep(identity), rep(user_ctx),
                                            rep(emotion), drop_a, drop_u, quiet=rep(quiet))
        cond = cache["cond"]
        v = model.velocity(rep(x), t.repeat(k), prev_k, cond)                   # (k*B, T, D)
        vs = v.view(k, B, *v.shape[1:])
        out = weights[0] * vs[0]
        for w, vi in zip(weights[1:], vs[1:]):
            out = out + w * vi
        return out                                                               # (B, T, D)
    return fn


#################################################################################
#                                   Sampler                                     #
#################################################################################

def sample(velocity_fn: Callable, noise: torch.Tensor, steps: int = 4, method: str = "euler",
           shift: float = 1.0) -> torch.Tensor:
    """Integrate from noise (t=0) to data (t=1). Deterministic given the noise."""
    if method not in METHODS:
        raise ValueError(f"unknown sampler method {method!r}")
    ts = timesteps(steps, shift).to(noise.device)
    x = noise
    B = noise.shape[0]
    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        v0 = velocity_fn(x, t0.expand(B))
        if method == "heun" and i < steps - 1:
            x1 = x + (t1 - t0) * v0
            v1 = velocity_fn(x1, t1.expand(B))
            x = x + (t1 - t0) * 0.5 * (v0 + v1)
        else:
            x = x + (t1 - t0) * v0
    return x
