"""Measure a video for evaluation: re-detected landmarks, mouth opening, speech envelope,
frame statistics and stream facts. Every metric of eval/ reads a `Measurement`, so a
rendered clip, a real clip and a baseline built from a real clip go through the same code.

Landmarks come from `echo_cli.preprocess.face.track_face` (MediaPipe face mesh) — the same
tracker the product uses — and are cached per file content under
`$ECHO_CACHE_DIR/eval/` (measuring a 70 s clip costs about a minute of CPU).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import DependencyError, InputError
from echo_cli.eval import metrics as M
from echo_cli.schema import SAMPLE_RATE

logger = log.get("echo_cli.eval.measure")

MEASURE_VERSION = 3        # bump when the cached content changes meaning (3: the avatar panel of side-by-side renders)
THUMB = 128                # side of the gray thumbnails kept for SSIM/PSNR and frozen frames


# ---------------------------------------------------------------------------------------
# Record
# ---------------------------------------------------------------------------------------

@dataclass
class Measurement:
    """What eval/ knows about one video (all per-frame arrays at `fps`)."""
    path: str
    fps: float
    landmarks: np.ndarray                  # (T, 478, 3) pixels (face tracker output)
    detected: np.ndarray                   # (T,) bool: a face was found in this frame
    frame_diffs: np.ndarray                # (T-1,) mean |frame[t] - frame[t-1]| on 0-255 gray thumbnails
    thumbs: np.ndarray                     # (T, THUMB, THUMB) uint8 gray thumbnails (whole frame)
    wave: np.ndarray | None = None         # (N,) float32 16 kHz mono, None if no audio stream
    euler: np.ndarray | None = None        # (T, 3) yaw, pitch, roll (radians) if the tracker gives it
    info: dict = field(default_factory=dict)   # stream facts: codec, pix_fmt, durations, size
    notes: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps if self.fps else 0.0

    def replace(self, **kw) -> "Measurement":
        return dataclasses.replace(self, **kw)


# ---------------------------------------------------------------------------------------
# Series derived from a measurement
# ---------------------------------------------------------------------------------------

def mouth_series(landmarks: np.ndarray) -> np.ndarray:
    """(T,) mouth opening: inner-lip gap (13-14) / inter-ocular distance (33-263).

    Uses the motion module's measure when it exists so eval and training agree; the
    fallback is the same definition.
    """
    try:
        from echo_cli.motion.measures import mouth_opening as _mo  # type: ignore
        return np.asarray(_mo(landmarks), dtype=np.float64)
    except (ImportError, AttributeError, TypeError):
        return M.mouth_opening(landmarks)


def speech_envelope(wave: np.ndarray | None, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) speech envelope: log RMS (dB) of the 300-3400 Hz band over each frame's
    interval, floored 50 dB below the clip's peak (silence then does not dominate the
    correlation). Zeros when there is no audio."""
    if wave is None or len(wave) == 0:
        return np.zeros(n_frames)
    from scipy.signal import butter, sosfiltfilt

    w = np.asarray(wave, dtype=np.float64)
    if len(w) > 30:
        sos = butter(4, [300, 3400], btype="band", fs=SAMPLE_RATE, output="sos")
        w = sosfiltfilt(sos, w)
    hop = SAMPLE_RATE / fps
    out = np.zeros(n_frames)
    for t in range(n_frames):
        a, b = int(round(t * hop)), int(round((t + 1) * hop))
        seg = w[a:b]
        out[t] = np.sqrt((seg ** 2).mean()) if len(seg) else 0.0
    db = 20 * np.log10(out + 1e-8)
    return np.maximum(db, db.max() - 50.0)


def voice_activity(wave: np.ndarray | None, fps: float, n_frames: int) -> np.ndarray:
    """(T,) bool: frames whose envelope is within 25 dB of the clip's loud frames (95th pct).
    A simple energy VAD; turns from a dialogue file take precedence where given."""
    env = speech_envelope(wave, fps, n_frames)
    if wave is None or not np.any(env):
        return np.zeros(n_frames, dtype=bool)
    # relative to the clip's loud frames, and above digital silence (-60 dBFS, the renderer's
    # quiet gate): an all-silent track has every frame "within 25 dB" of its own silence, and
    # was counted as speaking throughout
    return (env > np.percentile(env, 95) - 25.0) & (env > -60.0)


EXPRESSION_NAMES = ("mouth_open", "mouth_width", "smile", "brow_raise", "eye_open")
POSE_NAMES = ("yaw", "pitch", "roll")


def expression_features(landmarks: np.ndarray) -> np.ndarray:
    """(T, 5) scale-free expression measures from landmarks (all / inter-ocular distance):
    mouth opening, mouth width, smile (corner lift relative to the lip centre), brow raise
    (brow to eye), eye opening. Our stand-in for 3DMM expression coefficients."""
    L = np.asarray(landmarks, dtype=np.float64)[..., :2]
    iod = np.maximum(M.interocular(L), 1e-6)
    d = lambda i, j: np.linalg.norm(L[:, i] - L[:, j], axis=-1) / iod  # noqa: E731
    mid_y = (L[:, 13, 1] + L[:, 14, 1]) / 2
    smile = (mid_y - (L[:, 61, 1] + L[:, 291, 1]) / 2) / iod
    brow = (d(105, 33) + d(334, 263)) / 2
    eye = (d(159, 145) + d(386, 374)) / 2
    return np.stack([M.mouth_opening(L), d(61, 291), smile, brow, eye], axis=1)


def pose_features(landmarks: np.ndarray, euler: np.ndarray | None = None) -> np.ndarray:
    """(T, 3) yaw, pitch, roll: the tracker's rigid fit when present, else proxies from the
    landmarks (nose offset from the eye midpoint / inter-ocular distance, eye-line angle)."""
    if euler is not None and len(euler) == len(landmarks):
        return np.asarray(euler, dtype=np.float64)
    L = np.asarray(landmarks, dtype=np.float64)[..., :2]
    iod = np.maximum(M.interocular(L), 1e-6)
    eyes = (L[:, 33] + L[:, 263]) / 2
    nose = L[:, 1]
    v = L[:, 263] - L[:, 33]
    roll = np.arctan2(v[:, 1], v[:, 0])
    c, s = np.cos(-roll), np.sin(-roll)
    off = nose - eyes
    ox = c * off[:, 0] - s * off[:, 1]
    oy = s * off[:, 0] + c * off[:, 1]
    return np.stack([ox / iod, oy / iod, roll], axis=1)


def behaviour_features(m: Measurement) -> np.ndarray:
    """(T, 8) pose (3) + expression (5): the motion coefficients of rPCC / SID / Var."""
    return np.concatenate([pose_features(m.landmarks, m.euler), expression_features(m.landmarks)], 1)


def motion_speed(m: Measurement) -> np.ndarray:
    """(T,) per-frame landmark speed / inter-ocular distance (first frame 0): 'activity'."""
    L = m.landmarks[..., :2].astype(np.float64)
    v = np.zeros(len(L))
    if len(L) > 1:
        v[1:] = np.linalg.norm(L[1:] - L[:-1], axis=-1).mean(-1) / np.maximum(M.interocular(L)[1:], 1e-6)
    return v


# ---------------------------------------------------------------------------------------
# Reading media (through echo_cli.media when present)
# ---------------------------------------------------------------------------------------

def _iter_frames(path: str, size=None, max_frames: int | None = None):
    from echo_cli.media.video_io import iter_frames
    yield from iter_frames(path, size=size, max_frames=max_frames)


def load_wave(path: str) -> np.ndarray | None:
    """float32 mono 16 kHz, or None when the file has no audio stream."""
    try:
        from echo_cli.media.audio_io import load_audio  # type: ignore
    except ImportError:
        load_audio = None
    if load_audio is not None:
        from echo_cli.media.probe import probe
        if not probe(path).has_audio:
            return None
        return np.asarray(load_audio(path), dtype=np.float32)
    import subprocess

    from echo_cli.media.ffmpeg import base_args, tail
    r = subprocess.run(base_args() + ["-i", str(path), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
                                      "-f", "f32le", "-"], capture_output=True, check=False)
    if r.returncode != 0:
        if b"does not contain any stream" in r.stderr or b"Output file #0 does not contain" in r.stderr \
                or b"matches no streams" in r.stderr:
            return None
        raise InputError(f"cannot decode audio: {tail(r.stderr)}", path=path,
                         fix="check the file plays; re-encode it with ffmpeg")
    w = np.frombuffer(r.stdout, np.float32).copy()
    return w if len(w) else None


def _probe(path: str) -> dict:
    try:
        from echo_cli.media.probe import probe  # type: ignore
    except ImportError:
        return {}
    try:
        info = probe(path)
    except Exception as e:  # probe failure only loses the technical facts, not the metrics
        logger.warning("probe failed on %s: %s", path, e)
        return {}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(info).items()}


AVATAR_PANEL = (0.75, 0.5)     # a side-by-side render is user | avatar: the face nearest this point


def rendered_layout(path: str) -> str | None:
    """The `layout` tag echo-cli render writes into its outputs (None for other videos)."""
    from echo_cli.media.mux import read_metadata

    try:
        return read_metadata(path).get("layout") or None
    except Exception:  # noqa: BLE001 - a file without readable tags is simply not ours
        return None


def track(path: str, max_frames: int | None = None) -> tuple[float, np.ndarray, np.ndarray, np.ndarray | None, str]:
    """(fps, landmarks (T,478,3), detected (T,), euler (T,3)|None, tracker name).

    The product's tracker (preprocess.face) per frame, with short gaps interpolated but
    WITHOUT its One-Euro smoothing: eval measures the video as it is, and smoothing would
    hide the jitter we measure and delay the lips by a frame or so. Pose is therefore
    the landmark proxy of `pose_features` (the same for every video compared).
    """
    try:
        from echo_cli.preprocess.face import TrackSettings, fill_gaps, track_raw
    except ImportError as e:
        raise DependencyError(f"the face tracker is not available ({e})",
                              fix="reinstall echo-cli (pip install -e .)") from e
    s = TrackSettings()
    pick = AVATAR_PANEL if rendered_layout(path) == "side-by-side" else None
    if max_frames:
        from echo_cli.media.probe import probe
        fps = probe(path).fps or 25.0
        frames = np.stack(list(_iter_frames(path, max_frames=max_frames)))
        raw = track_raw(frames, fps, None, pick, s)
        raw.source = path
    else:
        raw = track_raw(path, None, None, pick, s)
    if not raw.detected.any():
        raise InputError("no face found in any frame", path=path,
                         fix="give a video with one clearly visible face")
    lm, _valid = fill_gaps(raw.landmarks, raw.detected, int(round(s.max_gap_s * raw.fps)))
    return float(raw.fps), np.asarray(lm, np.float32), np.asarray(raw.detected, bool), None, \
        "preprocess.face.track_raw+fill_gaps"


# ---------------------------------------------------------------------------------------
# Cache and the public entry point
# ---------------------------------------------------------------------------------------

def cache_dir() -> Path:
    from echo_cli.hashing import cache_root

    root = cache_root()
    return root / "eval"


def _file_key(path: str) -> str:
    from echo_cli.hashing import file_sha256

    return file_sha256(path)[:24]


def _frame_stats(path: str, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gray thumbnails (ffmpeg scales the whole frame to THUMB x THUMB) and their mean
    absolute differences between consecutive frames."""
    thumbs, diffs, prev = [], [], None
    w = np.array([0.299, 0.587, 0.114], np.float32)
    for fr in _iter_frames(path, size=(THUMB, THUMB), max_frames=max_frames):
        t = fr.astype(np.float32) @ w
        if prev is not None:
            diffs.append(float(np.abs(t - prev).mean()))
        prev = t
        thumbs.append(np.clip(t + 0.5, 0, 255).astype(np.uint8))
    return np.array(diffs, np.float32), np.array(thumbs, np.uint8).reshape(-1, THUMB, THUMB)


def measure_video(path: str | Path, use_cache: bool = True, max_seconds: float | None = None) -> Measurement:
    """Measure one video file (landmarks, frame statistics, audio, stream facts);
    `max_seconds` measures only the start of the file (tests, quick looks)."""
    path = str(path)
    if not Path(path).is_file():
        if Path(path).is_dir():
            raise InputError("this is a folder, not a video", path=path,
                             fix="give a video file, or the folder with --suite FOLDER")
        raise InputError("file not found", path=path, fix="check the path")
    from echo_cli.io_atomic import atomic_path

    max_frames = None
    if max_seconds:
        from echo_cli.media.probe import probe
        max_frames = max(2, int(round(max_seconds * (probe(path).fps or 25.0))))
    key = _file_key(path) + (f"-first{max_frames}" if max_frames else "")
    cfile = cache_dir() / f"{key}.v{MEASURE_VERSION}.npz"
    if use_cache and cfile.is_file():
        z = np.load(cfile, allow_pickle=False)
        fps, L, det = float(z["fps"]), z["landmarks"], z["detected"]
        euler = z["euler"] if z["euler"].size else None
        diffs, thumbs, tracker = z["frame_diffs"], z["thumbs"], str(z["tracker"])
    else:
        logger.info("measuring %s", path)
        fps, L, det, euler, tracker = track(path, max_frames)
        if len(L) == 0:
            raise InputError("no video frames", path=path, fix="give a video file with a video stream")
        diffs, thumbs = _frame_stats(path, max_frames)
        if use_cache:
            cfile.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cfile) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, fps=fps, landmarks=L.astype(np.float32), detected=det,
                                        euler=np.zeros(0) if euler is None else euler,
                                        frame_diffs=diffs, thumbs=thumbs, tracker=tracker)
    n = min(len(L), len(thumbs)) if len(thumbs) else len(L)
    L, det, thumbs = L[:n], det[:n], thumbs[:n]
    diffs = diffs[: max(0, n - 1)]
    if euler is not None:
        euler = euler[:n]
    info = _probe(path)
    info.setdefault("path", path)
    info["tracker"] = tracker
    if rendered_layout(path) == "side-by-side":
        info["measured_face"] = "the avatar's panel (right) of a side-by-side render"
    return Measurement(path=path, fps=fps, landmarks=np.asarray(L, np.float32), detected=det,
                       frame_diffs=diffs, thumbs=thumbs, wave=_cached_wave(path, key, use_cache, max_seconds),
                       euler=euler, info=info)


def _cached_wave(path: str, key: str, use_cache: bool, max_seconds: float | None = None) -> np.ndarray | None:
    """load_wave, cached beside the landmarks (decoding is most of a cached measurement's time)."""
    f = cache_dir() / f"{key}.wave.npy"
    if use_cache and f.is_file():
        w = np.load(f, allow_pickle=False)
        return w if w.size else None
    w = load_wave(path)
    if w is not None and max_seconds:
        w = w[: int(round(max_seconds * SAMPLE_RATE))]
    if use_cache:
        from echo_cli.io_atomic import atomic_path
        f.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(f) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.zeros(0, np.float32) if w is None else w)
    return w


__all__ = ["Measurement", "measure_video", "mouth_series", "speech_envelope", "voice_activity",
           "expression_features", "pose_features", "behaviour_features", "motion_speed",
           "load_wave", "track", "cache_dir"]
