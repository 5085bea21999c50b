"""Streaming chunked generation: any length, constant memory, deterministic.

    from echo_cli.generate.engine import generate, GenerationInputs
    for motion_chunk in generate(model, inputs, settings, seed=0):   # (n_i, D) float32, final
        ...

Inputs (GenerationInputs or a plain dict with the same keys):
  audio      (n, Fa) avatar audio features in the model's audio_input layout
             (model.audio_encoder.audio_matrix), or a callable (start, stop) -> (stop-start, Fa)
  identity   (D,) the reference's neutral-face shape codes (train.data.identity_vector), raw
  n_frames   frames to generate (default: len(audio))
  user_ctx   None ("no user"), (n, Dc) f_pu from the LCU, or a callable (start, stop) -> (m, Dc).
             Callables are called once per chunk with increasing, overlapping ranges
             [prev_start, stop): a stateful LCU can carry its scan state across calls.
  emotion    None, (384,) or (n, 384) c_emo (an array, or lcu.model.PiecewiseRows); per-frame
             values are averaged over each chunk
  prev       optional (k, D) motion preceding frame 0 (e.g. the end of a previous turn)

Settings: anything with chunk_frames, t_prev, overlap, steps, cfg_audio, cfg_user (RenderSettings).
Each chunk's noise comes from its own generator seeded by (seed, chunk index), so output
does not depend on how the stream is consumed. Only max(t_prev, overlap) frames of
history are held between chunks; inputs given as callables are never materialised whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError
from echo_cli.generate.chunking import plan_chunks
from echo_cli.generate.stitch import blend

LOG = log.get("echo_cli.generate.engine")


@dataclass
class GenerationInputs:
    audio: Any
    identity: np.ndarray
    n_frames: int | None = None
    user_ctx: Any = None
    emotion: Any = None
    prev: np.ndarray | None = None
    quiet: np.ndarray | None = None  # (n,) bool: the quiet gate's frames (model.gate_audio)


def _as_inputs(inputs) -> GenerationInputs:
    if isinstance(inputs, GenerationInputs):
        return inputs
    unknown = set(inputs) - set(GenerationInputs.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown generation inputs {sorted(unknown)}",
                         fix=f"use {sorted(GenerationInputs.__dataclass_fields__)}")
    return GenerationInputs(**inputs)


def _slicer(x, name: str, n: int | None) -> Callable[[int, int], np.ndarray] | None:
    """Array or callable -> f(start, stop) with edge padding past the end."""
    if x is None:
        return None
    if callable(x):
        def call(a, b):
            y = np.asarray(x(a, b), np.float32)
            if y.shape[0] != b - a:
                raise InputError(f"{name}({a}, {b}) returned {y.shape[0]} frames, expected {b - a}",
                                 fix=f"make the {name} callable return one row per frame")
            return y
        return call
    arr = np.asarray(x, np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty (frames, features) array, got shape {arr.shape}",
                         fix=f"pass {name} at the video frame rate")

    def sl(a, b):
        idx = np.clip(np.arange(a, b), 0, arr.shape[0] - 1)
        return arr[idx]
    return sl


def _window(sl, a: int, b: int) -> np.ndarray:
    """Rows for frames [a, b); frames before 0 repeat frame 0."""
    if a >= 0:
        return sl(a, b)
    body = sl(0, b)
    return np.concatenate([np.repeat(body[:1], -a, axis=0), body])


def seed_for_chunk(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0] >> 1)


def generate(model, inputs, settings, seed: int = 0, method: str = "euler") -> Iterator[np.ndarray]:
    """Yield final, stitched motion chunks (n_i, D) in raw motion units; sum(n_i) == n_frames."""
    import torch

    from echo_cli.generate.sampler import guided_velocity, sample
    from echo_cli.lcu.model import PiecewiseRows

    inp = _as_inputs(inputs)
    cfg = model.cfg
    audio = _slicer(inp.audio, "audio", None)
    if inp.n_frames is None:
        if callable(inp.audio):
            raise InputError("n_frames is required when audio is a callable", fix="pass n_frames")
        n = int(np.asarray(inp.audio).shape[0])
    else:
        n = int(inp.n_frames)
    if not callable(inp.audio):
        fa = np.asarray(inp.audio).shape[1]
        if fa != cfg.audio_dim:
            raise InputError(f"audio has {fa} features per frame; this model expects {cfg.audio_dim} "
                             f"('{cfg.audio_input}')", fix="build audio with model.audio_encoder.audio_matrix")
    user = _slicer(inp.user_ctx, "user_ctx", n)
    q = None if inp.quiet is None else np.asarray(inp.quiet, np.float32).reshape(-1, 1)
    quiet = None if q is None or not q.size else _slicer(q, "quiet", n)
    emo_arr = None if inp.emotion is None else inp.emotion if isinstance(inp.emotion, PiecewiseRows) \
        else np.asarray(inp.emotion, np.float32)          # a compact track is sliced per chunk, never expanded
    identity = np.asarray(inp.identity, np.float32).reshape(-1)
    if identity.shape[0] != cfg.motion_dim:
        raise InputError(f"identity has {identity.shape[0]} components; the model's motion space has "
                         f"{cfg.motion_dim}", fix="encode the reference with the checkpoint's MotionSpace")

    dev = next(model.parameters()).device
    lip_temp = float(getattr(settings, "lip_temperature", 1.0))
    lip_w = torch.tensor(cfg.lip_mask, dtype=torch.float32).to(dev)        # (D,) 1 on mouth components
    tp, ov = int(settings.t_prev), int(settings.overlap)
    steps = int(settings.steps)
    history = np.zeros((0, cfg.motion_dim), np.float32)       # last t_prev final frames
    if inp.prev is not None and tp > 0:
        history = np.asarray(inp.prev, np.float32)[-tp:]
    pending = None                                              # held-back, unblended tail
    was_training = model.training
    model.eval()
    ident_t = torch.from_numpy(identity).to(dev)[None]
    try:
        for ch in plan_chunks(n, int(settings.chunk_frames), tp, ov):
            # chunk 0 may start from a caller-given `prev`; later chunks from the final history
            n_prev = history.shape[0] if ch.index == 0 else min(tp, ch.n_prev)
            a0 = ch.start - n_prev
            with torch.inference_mode():
                prev_t = None
                if n_prev:
                    prev_t = model.normalize(torch.from_numpy(history[-n_prev:]).to(dev))[None]
                # conditioning covers the prev frames too (the audio they were made with)
                aud = torch.from_numpy(_window(audio, a0, ch.stop)).to(dev)[None]
                usr = None if user is None else torch.from_numpy(_window(user, a0, ch.stop)).to(dev)[None]
                qt = None if quiet is None else torch.from_numpy(_window(quiet, a0, ch.stop)[:, 0] > 0.5).to(dev)[None]
                emo = None
                if emo_arr is not None:
                    e = emo_arr if emo_arr.ndim == 1 else emo_arr[ch.start:ch.stop].mean(0) \
                        if ch.start < emo_arr.shape[0] else emo_arr[-1]
                    emo = torch.from_numpy(np.ascontiguousarray(e, np.float32)).to(dev)[None]
                fn = guided_velocity(model, prev_t, aud, ident_t, usr, emo,
                                     float(settings.cfg_audio), float(settings.cfg_user), quiet=qt)
                g = torch.Generator(device="cpu").manual_seed(seed_for_chunk(seed, ch.index))
                noise = torch.randn(1, ch.length, cfg.motion_dim, generator=g).to(dev)
                # Lips follow the avatar's audio: their trajectory is sampled from scaled noise
                # (0 = the flow's mean path), the rest of the face keeps full variety.
                noise = noise * (1.0 - lip_w * (1.0 - lip_temp))
                x = sample(fn, noise, steps=steps, method=method)
                gen = model.denormalize(x)[0].float().cpu().numpy()           # (L, D)
            if ch.blend and pending is not None:
                gen[: ch.blend] = blend(pending, gen[: ch.blend])
            k = ch.emit_stop - ch.start
            out, pending = gen[:k], gen[k:]
            if tp:
                history = np.concatenate([history, out])[-tp:]
            yield out
    finally:
        model.train(was_training)


def generate_all(model, inputs, settings, seed: int = 0, method: str = "euler") -> np.ndarray:
    """The whole sequence (n, D) at once (tests, short clips)."""
    parts = list(generate(model, inputs, settings, seed, method))
    if not parts:
        return np.zeros((0, model.cfg.motion_dim), np.float32)
    return np.concatenate(parts)
