"""Audio decode: any format ffmpeg reads -> float32 mono 16 kHz in [-1, 1].

`load_audio` decodes a whole file (the feature extractors need the whole track; an hour
of 16 kHz float32 is 230 MB). The render's output track never exists whole in memory:
`iter_audio` streams blocks, `count_samples` measures a track that way (or reads a WAV's
header when that is exact), and `write_mix`
sums tracks block by block into a float32 WAV that ffmpeg then muxes.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

from echo_cli import log
from echo_cli.errors import InputError, OutputError
from echo_cli.media import ffmpeg as ff
from echo_cli.media.probe import probe
from echo_cli.schema import SAMPLE_RATE

logger = log.get("echo_cli.media.audio_io")


START_AT_ZERO = "aresample=async=1:first_pts=0"


def _decode_args(path: Path, sr: int, start: float = 0.0, duration: float | None = None) -> list[str]:
    args = ff.base_args()
    if start:
        args += ["-ss", f"{start:.6f}"]
    args += ["-i", str(path)]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    # first_pts=0: an audio stream that starts after the container does (a video whose sound
    # begins 1 s in) is padded with silence at the start, so samples stay in sync with frames
    af = START_AT_ZERO
    try:
        channels = probe(path).audio_channels
    except InputError:
        channels = 0                    # the decode itself reports what is wrong with the file
    if channels > 2:
        # the standard downmix leaves out the LFE channel, and a 3-channel WAV of speech on its
        # third channel reads as "2.1": it became a silent track
        af += ":out_chlayout=mono:lfe_mix_level=1"
    return args + ["-map", "0:a:0", "-vn", "-sn", "-dn", "-af", af, "-ac", "1", "-ar", str(sr),
                   "-f", "f32le", "pipe:1"]


def _has_audio(path: Path):
    info = probe(path)
    if not info.has_audio:
        raise InputError("no audio stream in this file", path=path,
                         fix="give a file with sound, or a separate audio file in the dialogue.yaml")
    return info


def _blocks(args: list[str], path: Path, block: int) -> Iterator["np.ndarray"]:  # noqa: F821
    """float32 blocks of `block` samples (the last shorter) from a streaming ffmpeg, clipped
    to [-1, 1]; InputError on a failed decode, NaN/inf or no samples at all."""
    import subprocess

    import numpy as np

    with tempfile.TemporaryFile() as err:
        proc = ff.popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        total = 0
        try:
            while True:
                buf = proc.stdout.read(block * 4)
                if not buf:
                    break
                w = np.frombuffer(buf[: len(buf) // 4 * 4], np.float32).copy()
                del buf
                if not np.isfinite(w).all():
                    raise InputError("audio contains NaN/inf samples", path=path, fix="re-export the audio")
                total += w.size
                yield np.clip(w, -1.0, 1.0, out=w)
        finally:
            if proc.poll() is None and proc.stdout is not None:
                proc.stdout.close()
                proc.kill()
            rc = proc.wait()
        err.seek(0)
        if rc != 0:
            raise InputError(f"ffmpeg failed to decode audio: {ff.tail(err.read()) or f'exit {rc}'}", path=path,
                             fix="re-export the audio as WAV or AAC")
    if total == 0:
        raise InputError("audio stream has no samples (zero length)", path=path,
                         fix="give audio that is at least a fraction of a second long")


BLOCK_SAMPLES = 60 * SAMPLE_RATE      # one minute per block: 3.8 MB of float32


def load_audio(path: str | Path, sr: int = SAMPLE_RATE, *, start: float = 0.0,
               duration: float | None = None) -> "np.ndarray":  # noqa: F821
    """Decode the first audio stream, downmixed to mono and resampled to `sr`.

    InputError when the file is missing, corrupt, has no audio stream or no samples.
    Decoded block by block into one buffer sized from the probed duration, so the peak is
    the track plus a block (not the raw bytes, a copy and a clipped copy: 3x the track).
    """
    import numpy as np

    path = Path(path)
    info = _has_audio(path)
    est = (duration if duration is not None else max(float(info.duration or 0.0) - start, 0.0))
    out = np.empty(int(est * sr) + sr, np.float32)       # + 1 s: containers round their duration
    n = 0
    for b in _blocks(_decode_args(path, sr, start, duration), path, BLOCK_SAMPLES):
        if n + b.size > out.size:                        # duration was short: grow (rare)
            grown = np.empty(max(n + b.size, out.size + out.size // 2), np.float32)
            grown[:n] = out[:n]
            out = grown
        out[n:n + b.size] = b
        n += b.size
    out.resize(n, refcheck=False)                        # shrink in place (no copy)
    return out


def iter_audio(path: str | Path, sr: int = SAMPLE_RATE, block: int = BLOCK_SAMPLES) -> Iterator["np.ndarray"]:  # noqa: F821
    """The samples `load_audio` returns, as consecutive float32 blocks of `block` samples
    (the last one shorter), decoded by a streaming ffmpeg: memory does not grow with length."""
    path = Path(path)
    _has_audio(path)
    yield from _blocks(_decode_args(path, sr), path, block)


def count_samples(path: str | Path, sr: int = SAMPLE_RATE) -> int:
    """len(load_audio(path, sr)), exact (unlike a container's duration): read from the
    header of a WAV already at `sr` (`wav_frames`), else measured by streaming a decode."""
    n = wav_frames(path, sr)
    if n is not None:
        return n
    return sum(b.size for b in iter_audio(path, sr))


_WAV_FORMATS = {1, 3}          # PCM, IEEE float (WAVE_FORMAT_EXTENSIBLE carries one of these)


def wav_frames(path: str | Path, sr: int = SAMPLE_RATE) -> int | None:
    """Sample frames of a plain RIFF/WAVE file at exactly `sr` Hz (PCM or float, any channel
    count), from its header; None when that is not certain (another container or rate,
    RF64, a streamed/truncated data size, a partial last frame): then decode to count.

    At the same rate ffmpeg's decode (downmixed to mono, `-ar sr` a no-op) yields exactly
    one sample per frame, so this equals len(load_audio(path, sr)) without spawning ffmpeg
    (tests/test_audio_count.py checks both on real files). The render counts its inputs
    and its mixed track this way: ~0.1 s per track and process saved.
    """
    import struct

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            fmt = None
            while True:
                ch = f.read(8)
                if len(ch) < 8:
                    return None
                cid, clen = ch[:4], struct.unpack("<I", ch[4:])[0]
                if cid == b"fmt ":
                    body = f.read(clen)
                    if len(body) < 16:
                        return None
                    tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:16])
                    if tag == 0xFFFE and len(body) >= 26:          # extensible: the sub-format's tag
                        tag = struct.unpack("<H", body[24:26])[0]
                    fmt = (tag, channels, rate, align, bits)
                    if clen % 2:
                        f.seek(1, 1)
                elif cid == b"data":
                    if fmt is None:
                        return None
                    tag, channels, rate, align, bits = fmt
                    if (tag not in _WAV_FORMATS or rate != sr or channels < 1 or align != channels * bits // 8
                            or align <= 0 or bits not in (8, 16, 24, 32, 64)):
                        return None
                    if clen % align or f.tell() + clen > size or clen in (0, 0xFFFFFFFF):
                        return None
                    return clen // align
                else:
                    f.seek(clen + (clen % 2), 1)
    except OSError:
        return None


def _wav_float_header(n_samples: int, sr: int) -> bytes:
    """RIFF/WAVE header for mono IEEE float32 (format tag 3): ffmpeg reads it as pcm_f32le,
    so the mixed samples reach the AAC encoder unchanged (no 16-bit rounding)."""
    import struct

    data = n_samples * 4
    if data + 36 >= 2 ** 32:
        raise OutputError("the audio is too long for a WAV file (over 18 hours)", fix="split the dialogue")
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 3, 1, sr, sr * 4, 4, 32)
            + b"data" + struct.pack("<I", data))


def write_mix(paths: list, out_path: str | Path, n_samples: int | None = None, gains: list[float] | None = None,
              sr: int = SAMPLE_RATE, block: int = BLOCK_SAMPLES) -> int:
    """Stream `mix([load_audio(p) for p in paths])`, padded with silence to n_samples (default:
    the longest track), into a float32 WAV at out_path; returns the number of samples.

    Same samples as `mix` (summed in float32 in the same order, divided by the peak when it
    exceeds 1), but only one block per track is in memory: the peak is known only at the
    end, so a clipping mix is rescaled by a second pass over the file."""
    import numpy as np

    if not paths:
        raise ValueError("nothing to mix")
    out_path = Path(out_path)
    its = [iter_audio(p, sr, block) for p in paths]
    n_written, peak = 0, 0.0
    with open(out_path, "wb") as f:
        f.write(_wav_float_header(0, sr))
        live = list(range(len(its)))
        while live or (n_samples is not None and n_written < n_samples):
            blocks = []
            for i in list(live):
                b = next(its[i], None)
                if b is None:
                    live.remove(i)
                else:
                    blocks.append((i, b))
            m = max((b.size for _, b in blocks), default=0)
            if n_samples is not None:
                m = min(m, n_samples - n_written) if blocks else min(block, n_samples - n_written)
            if m <= 0:
                if not blocks:
                    break
                continue                                     # past n_samples: drain the decoders
            out = np.zeros(m, np.float32)
            for i, b in blocks:
                k = min(b.size, m)
                out[:k] += b[:k] * (gains[i] if gains else 1.0)
            peak = max(peak, float(np.abs(out).max()))
            f.write(out.astype("<f4").tobytes())
            n_written += m
        f.seek(0)
        f.write(_wav_float_header(n_written, sr))
    if peak > 1.0:                                           # same rescale as mix(), in place
        hdr = len(_wav_float_header(0, sr))
        with open(out_path, "r+b") as f:
            for s in range(0, n_written, block):
                k = min(block, n_written - s)
                f.seek(hdr + 4 * s)
                x = np.frombuffer(f.read(4 * k), "<f4").astype(np.float32)
                x /= peak
                f.seek(hdr + 4 * s)
                f.write(x.astype("<f4").tobytes())
    return n_written


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
