"""Typed records passed between pipeline stages (the contracts between modules).

Arrays are numpy float32 unless noted. T is the number of frames at the record's `fps`.
Every record that is cached has `save(path)` / `load(path)` in a versioned .npz/.json
format (see docs/formats.md); loaders validate shapes and raise InputError on damage.
"""
from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Literal

import numpy as np

N_LANDMARKS = 478          # MediaPipe face mesh with refined iris
SAMPLE_RATE = 16000        # all audio is 16 kHz mono float32 in [-1, 1]
N_MELS = 80
SCHEMA_VERSION = 1

Speaker = Literal["avatar", "user"]


@dataclass(frozen=True)
class MediaInfo:
    """ffprobe facts about one file, display-oriented (rotation and SAR applied to width/height)."""
    path: str
    duration: float                 # seconds (container or longest stream)
    has_video: bool
    has_audio: bool
    width: int = 0                  # display width after SAR and rotation
    height: int = 0
    fps: float = 0.0                # average frame rate
    n_frames: int = 0               # estimated
    sar: tuple[int, int] = (1, 1)
    rotation: int = 0               # degrees, from display matrix / rotate tag
    vfr: bool = False               # r_frame_rate != avg_frame_rate
    is_image: bool = False
    audio_sr: int = 0
    audio_channels: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    pix_fmt: str = ""


@dataclass
class Pose:
    """Rigid head pose per frame, from a fit of the landmarks to the canonical face."""
    rotation: np.ndarray            # (T, 3, 3) rotation matrices
    euler: np.ndarray               # (T, 3) yaw, pitch, roll in radians
    translation: np.ndarray         # (T, 2) image-plane translation of the face centre, pixels
    scale: np.ndarray               # (T,) pixels per canonical unit


@dataclass
class FaceTrack:
    """One person's face over a video (or a single image: T == 1)."""
    fps: float
    width: int                      # frame size the landmarks refer to (display-oriented)
    height: int
    landmarks: np.ndarray           # (T, 478, 3) pixels: x, y, and z in x units; smoothed
    detected: np.ndarray            # (T,) bool: MediaPipe found the face in this frame
    valid: np.ndarray               # (T,) bool: detected or short gap interpolated
    pose: Pose
    canonical: np.ndarray           # (T, 478, 3) pose-free landmarks in canonical units
    boxes: np.ndarray               # (T, 4) smoothed square crop box x0, y0, x1, y1 (pixels)
    source: str = ""                # path of the media it came from

    @property
    def n_frames(self) -> int:
        return int(self.landmarks.shape[0])


@dataclass
class AudioFeatures:
    """Audio features resampled to a video frame rate (one row per frame)."""
    fps: float
    mel: np.ndarray                 # (T, 80) log-mel, 25 ms windows centred on each frame
    energy: np.ndarray              # (T,) RMS energy in dB
    vad: np.ndarray                 # (T,) bool voice activity
    whisper: np.ndarray | None = None   # (T, 512) Whisper-base encoder features, if available; a
                                        # generate.rowfile.RowFile when preprocessed on_disk
    duration: float = 0.0           # seconds of audio
    whisper_layers: str = "final"   # which encoder layers `whisper` holds ("mid": (T, 1024),
                                    # features.audio.WHISPER_LAYERS)

    @property
    def n_frames(self) -> int:
        return int(self.mel.shape[0])


@dataclass(frozen=True)
class Word:
    text: str
    start: float                    # seconds
    end: float
    speaker: Speaker | None = None
    score: float | None = None


@dataclass
class Transcript:
    words: list[Word]
    language: str = "en"
    method: str = ""                # "whisperx-aligned" | "faster-whisper-words" | "provided-srt" | ...
    notes: list[str] = field(default_factory=list)   # e.g. "wav2vec2 alignment model absent: ..."

    @property
    def text(self) -> str:
        return " ".join(w.text.strip() for w in self.words).strip()

    def to_dict(self) -> dict:
        return {"schema": SCHEMA_VERSION, "language": self.language, "method": self.method,
                "notes": list(self.notes), "words": [asdict(w) for w in self.words]}

    @classmethod
    def from_dict(cls, d: dict) -> "Transcript":
        return cls(words=[Word(**w) for w in d.get("words", [])], language=d.get("language", "en"),
                   method=d.get("method", ""), notes=list(d.get("notes", [])))


@dataclass(frozen=True)
class Turn:
    speaker: Speaker
    start: float
    end: float
    text: str | None = None
    emotion: str | None = None      # free text, e.g. "happy", "primarily calm and warm"
