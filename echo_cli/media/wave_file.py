"""A decoded audio track kept in a temporary file and read back slice by slice.

    wave = WaveFile.decode("avatar.wav")      # 16 kHz mono float32, streamed by ffmpeg
    features.audio.audio_features(wave, fps, ...)   # reads wave[a:b] window by window
    wave.close()                              # the file is gone (also on garbage collection)

Why: an hour of 16 kHz float32 samples is 230 MB, and the feature extractors (log-mel,
energy, Silero VAD, the Whisper encoder) only ever look at one window or batch of it at a
time (features/audio.py). Held whole, the decoded track set the peak memory of hour-long
renders (docs/performance_e2e.md "## Memory"). Same approach as generate/rowfile.py: an
anonymous temporary file read with plain reads (no memory map, so no page of it stays
counted as the process's memory).

Only what those extractors use is offered: len(), .shape, .size, .dtype, wave[a:b] with a
step of 1 (-> a fresh float32 array), and `read_all()` for a consumer that needs the whole
track (transcription of a new input). Samples are the same float32 numbers
media.audio_io.load_audio returns (the same streaming decode).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from echo_cli.errors import InputError
from echo_cli.generate.rowfile import TempArrayFile


class WaveFile(TempArrayFile):
    """1-D float32 samples in an anonymous temporary file."""

    dtype = np.dtype(np.float32)
    ndim = 1

    def __init__(self, f, n: int, source: str | None = None):
        super().__init__(f)
        self.n, self.source = int(n), source

    @classmethod
    def decode(cls, path: str | Path) -> "WaveFile":
        """Decode `path`'s first audio stream (16 kHz mono) block by block into the file.
        InputError for a missing/corrupt file, no samples, or non-finite samples."""
        from echo_cli.generate.rowfile import _temp_file, write_temp
        from echo_cli.media.audio_io import iter_audio

        f = _temp_file()
        n = 0
        try:
            for block in iter_audio(path):
                block = np.ascontiguousarray(block, np.float32)
                if not np.isfinite(block).all():
                    raise InputError("the audio contains NaN or infinite samples", path=path,
                                     fix="re-export the audio as 16-bit PCM")
                write_temp(f, memoryview(block).cast("B"))
                n += block.size
            f.flush()
        except BaseException:
            f.close()
            raise
        if n == 0:
            f.close()
            raise InputError("the audio is empty (zero length)", path=path,
                             fix="use a file with at least a fraction of a second of audio")
        return cls(f, n, str(path))

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def size(self) -> int:
        return self.n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("WaveFile supports contiguous slices wave[a:b] only")
        a, b, _ = key.indices(self.n)
        if b <= a:
            return np.zeros(0, np.float32)
        return self._read_into(a * 4, np.empty(b - a, np.float32))

    def read_all(self) -> np.ndarray:
        return self[0:self.n]
