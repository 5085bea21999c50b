"""EchoGenerator: the ECHO avatar generator over compact facial-motion sequences.

A velocity network for flow matching (generate/sampler.py owns the noise process; this
file never imports it). Input: the noisy current motion x_t (B, T, D) and the T_prev
previous, clean frames; conditioning: flow time t, avatar audio features, the reference
identity, the user context f_pu (from the LCU, or None -> learned "no user" tokens) and
the emotion embedding c_emo (MiniLM, 384-d, or None -> learned null).

x_t and prev handed to `forward` are in *normalised* motion units: `normalize()` /
`denormalize()` apply the per-component mean/std stored in the checkpoint. identity (B, D)
is raw: the reference's neutral face shape in motion-space codes
(train.data.identity_vector), normalised inside with its own stored statistics.

Layout: one token per frame and facial region (MotionSpace.regions), built by per-region
linear maps; blocks in blocks.py; SDCM in sdcm.py. Presets in GENERATOR_PRESETS.

Mouth prior (cfg.mouth_prior; cfg.mouth_prior_kind "head" or frozen "ridge", see
model/audio_encoder.py): the audio encoder's mouth head regresses the normalised
mouth codes from audio alone; condition() adds its projection to the mouth token's input
(zero where audio is dropped), so the flow refines an audio-driven estimate of the lips.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn as nn

from echo_cli.errors import ModelError
from echo_cli.model.audio_encoder import AUDIO_INPUTS, PRIOR_KINDS, AudioEncoder
from echo_cli.model.blocks import EchoBlock, FinalLayer

FUSIONS = ("sdcm", "entangled")


#################################################################################
#                                   Config                                      #
#################################################################################

@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild the network; stored whole in the checkpoint JSON."""
    motion_dim: int                              # D, from MotionSpace
    regions: dict = field(default_factory=dict)  # name -> [start, stop) component slice
    lip_mask: tuple = ()                         # (D,) soft weights, 1 on articulation
    face_mask: tuple = ()                        # (D,) soft weights, 0 on articulation
    dim: int = 64                                # hidden size C
    depth: int = 4                               # L blocks
    heads: int = 4
    ffn_ratio: float = 2.0
    audio_input: str = "whisper"                 # see audio_encoder.AUDIO_INPUTS
    audio_window: int = 2                        # banded audio attention: |frame - audio frame| <= w
    user_dim: int = 64                           # Dc of f_pu (LCU output)
    emotion_dim: int = 384                       # MiniLM sentence embedding
    n_visemes: int = 15                          # auxiliary viseme head (features/phonetic.py)
    fusion: str = "sdcm"                         # "sdcm" | "entangled" (ablation)
    # Mouth prior: a deterministic audio -> mouth-code regression head on the audio encoder,
    # fed to the mouth token (the flow refines it). False / 3 / 0 / 0 = the first checkpoints.
    mouth_prior: bool = False
    audio_kernel: int = 3                        # second audio-encoder convolution's kernel
    audio_noise: float = 0.0                     # training-only feature noise (normalised units)
    audio_frame_drop: float = 0.0                # training-only share of masked audio frames
    # "head" (learned, the first prior checkpoints) | "ridge" (frozen closed-form fit over
    # +-prior_context frames of prior_rank principal feature directions; train/mouth_ridge.py)
    mouth_prior_kind: str = "head"
    prior_rank: int = 256                        # leave-one-speaker-out CV on the training speakers:
    prior_context: int = 3                       # 256 / +-3 scored 0.549, 64 / +-2 0.520 (docs/generator.md)
    prior_blend: float = 0.0                     # inference: 0 = flow's lips, 1 = the prior's (velocity())
    prior_gain: float = 1.0                      # inference: scale of the ridge prior's normalised output
                                                 # (ridge shrinks: its spread is ~1/4 of the targets')
    quiet_gate: bool = False                     # inference: digitally silent audio frames read as the
                                                 # feature mean (audio_encoder.gate_quiet)

    def __post_init__(self):
        if self.audio_input not in AUDIO_INPUTS:
            raise ModelError(f"unknown audio_input '{self.audio_input}'", fix=f"use one of {list(AUDIO_INPUTS)}")
        if self.mouth_prior_kind not in PRIOR_KINDS:
            raise ModelError(f"unknown mouth_prior_kind '{self.mouth_prior_kind}'", fix=f"use one of {PRIOR_KINDS}")
        if self.fusion not in FUSIONS:
            raise ModelError(f"unknown fusion '{self.fusion}'", fix=f"use one of {FUSIONS}")
        if len(self.lip_mask) != self.motion_dim or len(self.face_mask) != self.motion_dim:
            raise ModelError("lip_mask/face_mask length differs from motion_dim",
                             fix="build the config with layout_from_motion_space()")

    @property
    def audio_dim(self) -> int:
        return AUDIO_INPUTS[self.audio_input]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["regions"] = {k: list(v) for k, v in self.regions.items()}
        d["lip_mask"] = [float(x) for x in self.lip_mask]
        d["face_mask"] = [float(x) for x in self.face_mask]
        return d

    @property
    def n_mouth(self) -> int:
        """Mouth components the prior head predicts (0: no prior)."""
        if not self.mouth_prior or "mouth" not in self.regions:
            return 0
        a, b = self.regions["mouth"]
        return int(b - a)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["regions"] = {k: tuple(v) for k, v in known.get("regions", {}).items()}
        known["lip_mask"] = tuple(known.get("lip_mask", ()))
        known["face_mask"] = tuple(known.get("face_mask", ()))
        return cls(**known)


# Architecture presets (CLI choices). "tiny" is the default: it keeps motion generation
# above 250 frames/s on 2 CPU cores and the checkpoint (with the LCU) under 10 MB.
# prior_rank 512: on "whisper_mid" (1024-d) features leave-one-speaker-out CV scored 0.664 at
# rank 512 vs 0.651 at 256 (docs/generator.md "Whisper's middle layers")
_AUDIO = dict(mouth_prior=True, mouth_prior_kind="ridge", prior_blend=1.0, audio_kernel=5, audio_noise=0.2,
              audio_frame_drop=0.1, prior_rank=512)
GENERATOR_PRESETS: dict[str, dict] = {
    "micro": dict(dim=32, depth=2, heads=2, ffn_ratio=2.0, **_AUDIO),   # tests
    "tiny": dict(dim=64, depth=4, heads=4, ffn_ratio=2.0, **_AUDIO),
    "small": dict(dim=128, depth=6, heads=4, ffn_ratio=4.0, **_AUDIO),
}


def layout_from_motion_space(space) -> dict:
    """motion_dim / regions / masks from a MotionSpace (duck-typed: regions, lip_mask, face_mask)."""
    import numpy as np

    regions = {k: (int(s.start), int(s.stop)) for k, s in space.regions.items()}
    lip = np.asarray(space.lip_mask, np.float32)
    face = np.asarray(space.face_mask, np.float32)
    return dict(motion_dim=int(lip.shape[0]), regions=regions,
                lip_mask=tuple(float(x) for x in lip), face_mask=tuple(float(x) for x in face))


def synthetic_layout(motion_dim: int = 24) -> dict:
    """A MotionSpace-shaped layout for tests and synthetic development (no MediaPipe)."""
    names = ["pose", "mouth", "smile", "eyes", "brows", "gaze"]
    per = motion_dim // len(names)
    regions, lip, face = {}, [0.0] * motion_dim, [1.0] * motion_dim
    for i, n in enumerate(names):
        stop = motion_dim if i == len(names) - 1 else (i + 1) * per
        regions[n] = (i * per, stop)
    for j in range(*regions["mouth"]):
        lip[j], face[j] = 1.0, 0.0
    return dict(motion_dim=motion_dim, regions=regions, lip_mask=tuple(lip), face_mask=tuple(face))


def make_config(preset: str = "tiny", layout: dict | None = None, **overrides) -> GeneratorConfig:
    if preset not in GENERATOR_PRESETS:
        raise ModelError(f"unknown generator preset '{preset}'", fix=f"use one of {list(GENERATOR_PRESETS)}")
    layout = layout or synthetic_layout()
    return GeneratorConfig(**{**layout, **GENERATOR_PRESETS[preset], **overrides})


def region_table(cfg: GeneratorConfig) -> tuple[list[str], list[tuple[int, int]]]:
    """Region names and slices, sorted by start, plus a "rest" region for uncovered components."""
    items = sorted(cfg.regions.items(), key=lambda kv: kv[1][0])
    covered = set()
    names, slices = [], []
    for name, (a, b) in items:
        comps = [j for j in range(a, b) if j not in covered]
        if not comps:
            continue
        covered.update(comps)
        names.append(name)
        slices.append((a, b))
    rest = [j for j in range(cfg.motion_dim) if j not in covered]
    if rest:
        names.append("rest")
        slices.append((min(rest), max(rest) + 1))
    return names, slices


def token_masks(cfg: GeneratorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (M_face, M_lip), each (R,): the mean of MotionSpace's per-component masks over
    the region's components. The mouth region (lip 1, face 0) gives M_face = 0, M_lip = 1."""
    _, slices = region_table(cfg)
    lip = torch.tensor(cfg.lip_mask, dtype=torch.float32)
    face = torch.tensor(cfg.face_mask, dtype=torch.float32)
    m_face = torch.stack([face[a:b].mean() for a, b in slices])
    m_lip = torch.stack([lip[a:b].mean() for a, b in slices])
    return m_face, m_lip


def region_attention_mask(m_face: torch.Tensor) -> torch.Tensor:
    """(R, R) bool, True = query region may attend key region. User-free tokens (M_face == 0)
    attend only to user-free tokens; others attend to all."""
    free = m_face == 0
    return (~free)[:, None] | free[None, :]


#################################################################################
#                               Embedding helpers                               #
#################################################################################

def sinusoidal(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """positions (...,) float -> (..., dim) sin/cos embedding."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=positions.device) / half)
    args = positions[..., None].float() * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Flow time t in [0, 1] -> (B, C), as in DiT (sinusoid then MLP)."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        return self.mlp(sinusoidal(t * 1000.0, self.freq_dim))                   # (B, C)


class RegionLinear(nn.Module):
    """Per-region linear maps between motion components and region tokens, batched as one einsum."""

    def __init__(self, motion_dim: int, slices: list[tuple[int, int]], dim: int, to_tokens: bool):
        super().__init__()
        R, width = len(slices), max(b - a for a, b in slices)
        self.motion_dim, self.to_tokens = motion_dim, to_tokens
        gather = torch.full((R, width), motion_dim, dtype=torch.long)    # motion_dim = a zero column
        scatter = torch.zeros(motion_dim, dtype=torch.long)
        for r, (a, b) in enumerate(slices):
            gather[r, : b - a] = torch.arange(a, b)
            for k, j in enumerate(range(a, b)):
                scatter[j] = r * width + k
        self.register_buffer("gather", gather, persistent=False)
        self.register_buffer("scatter", scatter, persistent=False)
        if to_tokens:
            self.weight = nn.Parameter(torch.empty(R, width, dim))
            self.bias = nn.Parameter(torch.zeros(R, dim))
            # padded input slots never carry signal; keep their weights at zero (init) and unused
        else:
            self.weight = nn.Parameter(torch.zeros(R, dim, width))
            self.bias = nn.Parameter(torch.zeros(R, width))

    def forward(self, x):
        if self.to_tokens:                                                         # x (B, N, D)
            xp = torch.cat([x, torch.zeros_like(x[..., :1])], dim=-1)             # (B, N, D+1)
            xr = xp[..., self.gather]                                              # (B, N, R, W)
            return torch.einsum("bnrw,rwc->bnrc", xr, self.weight) + self.bias     # (B, N, R, C)
        y = torch.einsum("bnrc,rcw->bnrw", x, self.weight) + self.bias             # (B, N, R, W)
        return y.flatten(2)[..., self.scatter]                                     # (B, N, D)


#################################################################################
#                                 The generator                                 #
#################################################################################

class EchoGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        C = cfg.dim
        self.region_names, slices = region_table(cfg)
        R = len(slices)
        m_face, m_lip = token_masks(cfg)
        self.register_buffer("m_face", m_face, persistent=False)
        self.register_buffer("m_lip", m_lip, persistent=False)
        region_mask = region_attention_mask(m_face) if cfg.fusion == "sdcm" else None

        # Normalisation of motion (fitted on the training set, saved in the checkpoint).
        self.register_buffer("motion_mean", torch.zeros(cfg.motion_dim))
        self.register_buffer("motion_std", torch.ones(cfg.motion_dim))
        self.register_buffer("identity_mean", torch.zeros(cfg.motion_dim))
        self.register_buffer("identity_std", torch.ones(cfg.motion_dim))

        self.motion_in = RegionLinear(cfg.motion_dim, slices, C, to_tokens=True)
        self.motion_out = RegionLinear(cfg.motion_dim, slices, C, to_tokens=False)
        self.region_emb = nn.Parameter(torch.zeros(R, C))
        self.prev_emb = nn.Parameter(torch.zeros(C))         # marks the clean T_prev context frames
        self.identity_emb = nn.Parameter(torch.zeros(C))     # marks identity tokens
        self.t_embed = TimestepEmbedder(C)
        self.emo_proj = nn.Linear(cfg.emotion_dim, C)
        self.null_emo = nn.Parameter(torch.zeros(C))
        self.audio_enc = AudioEncoder(cfg.audio_dim, C, cfg.n_visemes, cfg.n_mouth, cfg.audio_kernel,
                                      cfg.audio_noise, cfg.audio_frame_drop, cfg.mouth_prior_kind,
                                      cfg.prior_rank, cfg.prior_context)
        # the mouth prior enters the mouth token only (audio-driven, so SDCM's decoupling holds)
        self.mouth_index = self.region_names.index("mouth") if cfg.n_mouth else -1
        self.prior_in = nn.Linear(cfg.n_mouth, C) if cfg.n_mouth else None
        self.null_audio = nn.Parameter(torch.zeros(C))
        self.user_proj = nn.Linear(cfg.user_dim, C)
        self.null_user = nn.Parameter(torch.zeros(C))        # the documented "no user" context
        self.blocks = nn.ModuleList([EchoBlock(C, cfg.heads, cfg.ffn_ratio, m_face, m_lip,
                                               region_mask, cfg.fusion, cfg.audio_window)
                                     for _ in range(cfg.depth)])
        self.final = FinalLayer(C)
        self.initialize_weights()

    def initialize_weights(self):
        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(_basic)
        nn.init.xavier_uniform_(self.motion_in.weight.view(-1, self.cfg.dim))
        for p in (self.region_emb, self.prev_emb, self.identity_emb, self.null_emo,
                  self.null_audio, self.null_user):
            nn.init.normal_(p, std=0.02)
        for m in self.t_embed.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, the output as zero velocity.
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN[-1].weight)
            nn.init.zeros_(blk.adaLN[-1].bias)
            for attn in (blk.attn_id, blk.sdcm.attn_usr, blk.sdcm.attn_avt):
                nn.init.zeros_(attn.out.weight)
                nn.init.zeros_(attn.out.bias)
        nn.init.zeros_(self.final.adaLN[-1].weight)
        nn.init.zeros_(self.final.adaLN[-1].bias)
        nn.init.zeros_(self.motion_out.weight)
        nn.init.zeros_(self.motion_out.bias)

    # --- inputs --------------------------------------------------------------------
    def gate_audio(self, audio, energy) -> tuple:
        """(audio rows, quiet frames) this model should read. With cfg.quiet_gate, frames of
        digital silence (energy in dBFS, AudioFeatures.energy; audio_encoder.quiet_frames)
        read as its feature mean and are passed on as `quiet`, where condition() puts the
        resting mouth on the mouth prior; else (audio, None)."""
        if not self.cfg.quiet_gate or energy is None:
            return audio, None
        from echo_cli.model.audio_encoder import gate_quiet, quiet_frames

        quiet = quiet_frames(energy)
        return gate_quiet(audio, quiet, self.audio_enc.feat_mean.detach().cpu().numpy()), quiet

    # --- normalisation -------------------------------------------------------------
    def normalize(self, m: torch.Tensor) -> torch.Tensor:
        return (m - self.motion_mean) / self.motion_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.motion_std + self.motion_mean

    # --- conditioning tokens ---------------------------------------------------------
    def _pad_front(self, tokens: torch.Tensor, N: int, null: torch.Tensor) -> torch.Tensor:
        """Conditioning given for the current T frames only: null tokens for the T_prev frames."""
        B, M, C = tokens.shape
        if M == N:
            return tokens
        if M > N:
            raise ModelError(f"conditioning has {M} frames for a window of {N}",
                             fix="pass T or T_prev + T frames of audio / user context")
        return torch.cat([null.expand(B, N - M, C), tokens], dim=1)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return self.audio_enc(audio)                                               # (B, Na, C)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, prev: torch.Tensor | None,
                audio: torch.Tensor, identity: torch.Tensor, user_ctx: torch.Tensor | None = None,
                emotion: torch.Tensor | None = None, drop_audio: torch.Tensor | None = None,
                drop_user: torch.Tensor | None = None, return_aux: bool = False,
                mouth_prior: torch.Tensor | None = None):
        """x_t (B,T,D), t (B,), prev (B,Tp,D)|None, audio (B,T|Tp+T,Fa), identity (B,D),
        user_ctx (B,T|Tp+T,Dc)|None, emotion (B,384)|None, drop_* (B,) bool -> velocity (B,T,D).

        drop_audio / drop_user replace that sample's audio / user tokens by the learned null
        tokens (classifier-free guidance's unconditional branches, and condition dropout in
        training). return_aux adds {"viseme_logits": (B,T,V)} from the audio tokens.
        mouth_prior (B, Na, n_mouth), frame-aligned with audio: replaces the model's own prior
        (stage 1 feeds a ridge prior's out-of-speaker predictions for the training clips)."""
        Tp = 0 if prev is None else prev.shape[1]
        cond = self.condition(Tp + x_t.shape[1], audio, identity, user_ctx, emotion, drop_audio, drop_user,
                              mouth_prior=mouth_prior)
        v = self.velocity(x_t, t, prev, cond)
        if return_aux:
            aux = {"viseme_logits": self.audio_enc.visemes(cond["audio_raw"][:, Tp:])}
            if "mouth_prior_raw" in cond:
                aux["mouth_prior"] = cond["mouth_prior_raw"][:, Tp:]
            return v, aux
        return v

    def condition(self, N: int, audio: torch.Tensor, identity: torch.Tensor,
                  user_ctx: torch.Tensor | None = None, emotion: torch.Tensor | None = None,
                  drop_audio: torch.Tensor | None = None, drop_user: torch.Tensor | None = None,
                  mouth_prior: torch.Tensor | None = None, quiet: torch.Tensor | None = None) -> dict:
        """Conditioning tokens for a window of N = T_prev + T frames. They do not depend on the
        flow time, so the sampler computes them once per chunk and reuses them at every step.
        quiet (B, Na) bool: frames the quiet gate silenced (gate_audio); the mouth prior there
        is the resting mouth (the neutral face's, raw code 0), not a regression from features
        that carry no speech: a ridge prior maps them to an average, half-open mouth."""
        B = identity.shape[0]
        C, dev = self.cfg.dim, identity.device
        pos = sinusoidal(torch.arange(N, device=dev), C)                           # (N, C)

        # emotion joins the global (adaLN) conditioning, never the user context
        emo = self.null_emo.expand(B, C) if emotion is None else self.emo_proj(emotion)   # (B, C)

        # identity tokens: the reference's neutral shape codes through the same region maps
        identity = (identity - self.identity_mean) / self.identity_std                # (B, D)
        idt = self.motion_in(identity[:, None, :])[:, 0] + self.region_emb + self.identity_emb  # (B, R, C)

        # avatar audio tokens (null for T_prev frames when only T are given); SDCM reads them
        # through banded attention (+-audio_window frames)
        tok = self.encode_audio(audio)                                             # (B, Na, C)
        a_raw = self._pad_front(tok, N, self.null_audio)                           # (B, N, C)
        a = a_raw
        if drop_audio is not None:
            a = torch.where(drop_audio[:, None, None], self.null_audio.expand_as(a), a)
        a = a + pos[None]                                                          # (B, N, C)

        # additive input of the motion tokens, fixed for the chunk: region + frame position
        # (+ the mouth prior on the mouth token; zero where audio is absent or dropped)
        tok_bias = (self.region_emb[None, None] + pos[:, None, :][None]).expand(B, N, -1, -1)  # (B, N, R, C)
        extra = {}
        if self.prior_in is not None:
            if mouth_prior is not None:
                mp = mouth_prior                                                   # (B, Na, n_mouth)
            elif self.cfg.mouth_prior_kind == "ridge":
                mp = self.audio_enc.ridge_mouth(audio)                             # (B, Na, n_mouth)
                if self.cfg.prior_gain != 1.0 and not self.training:
                    mp = mp * self.cfg.prior_gain       # about the normalised mean (0): articulation
            else:
                mp = self.audio_enc.mouth(tok)                                     # (B, Na, n_mouth)
            if quiet is not None:
                ms = slice(*self.cfg.regions["mouth"])
                rest = (-self.motion_mean[ms] / self.motion_std[ms]).to(mp.dtype)     # raw code 0, normalised
                mp = torch.where(quiet[..., None], rest.expand_as(mp), mp)
            mp = torch.cat([mp.new_zeros(B, N - mp.shape[1], mp.shape[2]), mp], 1)  # (B, N, n_mouth)
            extra["mouth_prior_raw"] = mp
            if drop_audio is not None:
                mp = torch.where(drop_audio[:, None, None], torch.zeros_like(mp), mp)
            extra["mouth_prior"] = mp
            k = self.mouth_index
            pe = self.prior_in(mp)                                                 # (B, N, C)
            tok_bias = torch.cat([tok_bias[:, :, :k], (tok_bias[:, :, k] + pe)[:, :, None],
                                  tok_bias[:, :, k + 1:]], dim=2)

        # user context f_pu (learned "no user" tokens when absent or dropped)
        if user_ctx is None:
            u = self.null_user.expand(B, N, C)
        else:
            u = self._pad_front(self.user_proj(user_ctx), N, self.null_user)      # (B, N, C)
            if drop_user is not None:
                u = torch.where(drop_user[:, None, None], self.null_user.expand_as(u), u)
        u = u + pos[None]                                                          # (B, N, C)
        return {"emo": emo, "identity": idt, "audio": a, "audio_raw": a_raw, "user": u, "pos": pos,
                "tok_bias": tok_bias, **extra}

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, prev: torch.Tensor | None, cond: dict) -> torch.Tensor:
        """The denoiser proper: x_t (B,T,D), t (B,), prev (B,Tp,D)|None, cond from condition()."""
        B, T, D = x_t.shape
        Tp = 0 if prev is None else prev.shape[1]
        m = x_t if prev is None else torch.cat([prev, x_t], dim=1)                 # (B, N, D)
        h = self.motion_in(m) + cond["tok_bias"]                                   # (B, N, R, C)
        if Tp:
            h = torch.cat([h[:, :Tp] + self.prev_emb, h[:, Tp:]], dim=1)           # (B, N, R, C)
        c = self.t_embed(t) + cond["emo"]                                          # (B, C)
        for blk in self.blocks:
            h = blk(h, c, cond["identity"], cond["user"], cond["audio"])           # (B, N, R, C)
        h = self.final(h, c)                                                       # (B, N, R, C)
        v = self.motion_out(h)[:, Tp:]                                             # (B, T, D)
        beta = self.cfg.prior_blend
        if beta > 0 and not self.training and "mouth_prior" in cond:
            # Inference only: pull the mouth toward the deterministic prior. (p - x_t) / (1 - t)
            # is the rectified-flow velocity that lands exactly on p at t = 1, so beta = 1 makes
            # the sampled lips the prior (times the audio guidance scale: the null-audio branch's
            # prior is 0) and beta = 0 leaves the flow alone. Why: the flow's own lips lose much
            # of the prior's held-out correlation (docs/generator.md, Measured).
            ms = slice(*self.cfg.regions["mouth"])
            mp = cond["mouth_prior"][:, Tp:]                                       # (B, T, n_mouth)
            pull = (mp - x_t[..., ms]) / (1.0 - t).clamp(min=1e-3)[:, None, None]
            v = torch.cat([v[..., :ms.start], (1.0 - beta) * v[..., ms] + beta * pull, v[..., ms.stop:]], -1)
        return v


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def with_fusion(cfg: GeneratorConfig, fusion: str) -> GeneratorConfig:
    return replace(cfg, fusion=fusion)
