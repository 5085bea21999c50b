"""Audio decode: any format ffmpeg reads -> float32 mono 16 kHz in [-1, 1].

Whole-file decode is fine here: an hour of 16 kHz float32 is 230 MB, and our dialogues are
minutes long; video frames are what must stream.
"""
from __future__ import annotations

from pathlib import Path

from echo_cli import log
from echo_cli.errors import InputError
from echo_cli.media import ffmpeg as ff
from echo_cli.media.probe import probe
from echo_cli.schema import SAMPLE_RATE

logger = log.get("echo_cli.media.audio_io")


def load_audio(path: str | Path, sr: int = SAMPLE_RATE, *, start: float = 0.0,
               duration: float | None = None) -> "np.ndarray":  # noqa: F821
    """Decode the first audio stream, downmixed to mono and resampled to `sr`.

    InputError when the file is missing, corrupt, has no audio stream or no samples.
    """
    import numpy as np

    path = Path(path)
    info = probe(path)
    if not info.has_audio:
        raise InputError("no audio stream in this file", path=path,
                         fix="give a file with sound, or a separate audio file in the dialogue.yaml")
    args = ff.base_args()
    if start:
        args += ["-ss", f"{start:.6f}"]
    args += ["-i", str(path)]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    args += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sr), "-f", "f32le", "pipe:1"]
    raw = ff.run(args, what="decode audio", path=path, fix="re-export the audio as WAV or AAC")
    wave = np.frombuffer(raw, np.float32).copy()
    if wave.size == 0:
        raise InputError("audio stream has no samples (zero length)", path=path,
                         fix="give audio that is at least a fraction of a second long")
    if not np.isfinite(wave).all():
        raise InputError("audio contains NaN/inf samples", path=path, fix="re-export the audio")
    return np.clip(wave, -1.0, 1.0)


def write_wav(path: str | Path, wave, sr: int = SAMPLE_RATE) -> None:
    """16-bit PCM WAV, written atomically (used for mixes and samples)."""
    import wave as wave_mod

    import numpy as np

    from echo_cli.io_atomic import atomic_path

    pcm = (np.clip(np.asarray(wave, np.float32), -1, 1) * 32767).astype("<i2")
    with atomic_path(path) as tmp:
        with wave_mod.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sr)
            w.writeframes(pcm.tobytes())


def mix(waves: list, gains: list[float] | None = None) -> "np.ndarray":  # noqa: F821
    """Sum mono tracks (padding the shorter ones with silence); peak-limited to [-1, 1]."""
    import numpy as np

    if not waves:
        raise ValueError("nothing to mix")
    n = max(len(w) for w in waves)
    out = np.zeros(n, np.float32)
    for i, w in enumerate(waves):
        out[: len(w)] += np.asarray(w, np.float32) * (gains[i] if gains else 1.0)
    peak = float(np.abs(out).max()) if n else 0.0
    if peak > 1.0:
        out /= peak
    return out
