"""A small SyncNet-style lip-sync scorer of our own: lip landmarks vs log-mel audio.

Why: SyncNet's pretrained weights (the LSE-D / LSE-C of the talking-head literature) cannot
be downloaded here, and the plain mouth-opening / envelope correlation barely separates
real from mismatched audio on short clips. So we train a tiny two-tower contrastive model
(Chung & Zisserman 2016, "Out of time: automated lip sync in the wild") on the landmarks
MediaPipe gives and on log-mel audio, on ../shared/data/talking with speakers held out.

Scoring follows SyncNet's evaluation: for every video window t and every audio offset L in
[-max_lag, max_lag], the embedding distance d(t, L) = |v_t - a_{t-L}|; averaged over t it
gives a curve D(L). Then
    lag      = argmin_L D(L)        (frames at 25 fps; > 0 = the video is late)
    distance = min_L D(L)           (our LSE-D analogue, lower is better)
    confidence = median_L D(L) - min_L D(L)   (our LSE-C analogue, higher is better)
Values are NOT comparable with SyncNet's LSE-D/LSE-C numbers (other network, other input,
unit-norm embeddings: distances lie in [0, 2]); they are comparable between our runs.

Train: `python -m echo_cli.eval.syncnet train` (about two minutes on 2 CPU cores);
weights ship as echo_cli/checkpoints/syncnet.safetensors + syncnet.json.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError, ModelError
from echo_cli.schema import SAMPLE_RATE

logger = log.get("echo_cli.eval.syncnet")

FORMAT = "echo-cli.syncnet"
SCHEMA_VERSION = 1
FPS = 25.0                                   # the scorer's frame rate (inputs are resampled)
MEL_PER_FRAME = 4                            # 100 Hz mel: 4 audio steps per video frame
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"

# Lip contour (40) + chin and jaw (5): the points whose motion follows speech.
LIP_POINTS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269,
              270, 409, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13,
              312, 311, 310, 415, 152, 148, 377, 176, 400)

# Held out from training (validation speakers): the strongest-sync English news clip, a
# second English speaker at 30 fps, and German speech (another language). Documented in
# docs/evaluation.md; the suite `talking-heldout` runs on exactly these.
HELDOUT = ("dfrf_cnn2_25fps.mp4", "sty_reagan_clip1.mp4", "mt_German_20s.mp4")
# Not used for training because their audio is offset from the video by several frames
# (../shared/data/README.md); contrastive training on them would teach the wrong alignment.
OFFSET_CLIPS = ("sty_Obama_clip1.mp4", "sty_Obama_clip3.mp4", "vr_2.mp4")


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncNetConfig:
    window: int = 5                 # video frames per window (0.2 s, as SyncNet)
    n_mels: int = 40                # mel bands of the audio tower
    n_points: int = len(LIP_POINTS)  # lip/jaw landmarks, x and y each
    hidden: int = 64                # conv channels in each tower
    dropout: float = 0.0            # after each conv block (0: no dropout layer at all)
    embed: int = 64                 # embedding size (unit norm)
    max_lag: int = 15               # offsets searched at scoring time (frames at 25 fps)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch: int = 48
    lr: float = 2e-3
    weight_decay: float = 1e-4
    neg_lag: int = 8                # same-clip audio offsets 1..neg_lag used as hard negatives
    temperature: float = 0.1
    seed: int = 0
    threads: int = 1


# ---------------------------------------------------------------------------------------
# Input features (pure numpy)
# ---------------------------------------------------------------------------------------

def resample_series(x: np.ndarray, fps_in: float, fps_out: float = FPS) -> np.ndarray:
    """Linear interpolation of a (T, ...) series from fps_in to fps_out (same start time)."""
    x = np.asarray(x, np.float64)
    if abs(fps_in - fps_out) < 1e-6:
        return x
    T = len(x)
    n = int(math.floor((T - 1) / fps_in * fps_out)) + 1
    t = np.arange(n) / fps_out * fps_in
    i0 = np.clip(np.floor(t).astype(int), 0, T - 1)
    i1 = np.clip(i0 + 1, 0, T - 1)
    w = (t - i0).reshape(-1, *([1] * (x.ndim - 1)))
    return (1 - w) * x[i0] + w * x[i1]


def lip_features(landmarks: np.ndarray) -> np.ndarray:
    """(T, 2 * n_points) lip/jaw shape per frame: centred on the mouth, rotated so the eye
    line is horizontal, divided by the inter-ocular distance, minus the sequence median
    (so the speaker's resting lip shape is removed and the motion remains)."""
    L = np.asarray(landmarks, np.float64)[..., :2]
    eye_l, eye_r = L[:, 33], L[:, 263]
    v = eye_r - eye_l
    iod = np.maximum(np.linalg.norm(v, axis=-1), 1e-6)
    ang = np.arctan2(v[:, 1], v[:, 0])
    c, s = np.cos(-ang), np.sin(-ang)
    P = L[:, list(LIP_POINTS)]
    P = P - P[:, :40].mean(1, keepdims=True)
    x = c[:, None] * P[..., 0] - s[:, None] * P[..., 1]
    y = s[:, None] * P[..., 0] + c[:, None] * P[..., 1]
    F = np.stack([x, y], -1) / iod[:, None, None]
    F = F - np.median(F, axis=0, keepdims=True)
    return (F.reshape(len(F), -1) * 10.0).astype(np.float32)     # x10: unit-ish scale


def _mel_filterbank(n_mels: int, n_fft: int, sr: int = SAMPLE_RATE, fmin=55.0, fmax=7600.0) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular HTK-mel filters."""
    mel = lambda f: 2595 * np.log10(1 + f / 700.0)  # noqa: E731
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)   # noqa: E731
    pts = imel(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return fb


def audio_mel(wave: np.ndarray, n_frames: int, n_mels: int = 40) -> np.ndarray:
    """(n_frames * MEL_PER_FRAME, n_mels) log-mel at 100 Hz for `n_frames` 25-fps frames,
    25 ms windows; normalised per band over the sequence (loudness and channel removed).

    Our own 100 Hz mel rather than features.audio's one-row-per-video-frame mel: lip sync
    lives in the timing inside a frame, which a per-frame average blurs."""
    w = np.asarray(wave, np.float64) if wave is not None else np.zeros(0)
    hop = int(SAMPLE_RATE / FPS / MEL_PER_FRAME)                 # 160 samples = 10 ms
    win, n_fft = 400, 512
    n = n_frames * MEL_PER_FRAME
    need = n * hop + win
    pad = np.zeros(need)
    m = min(len(w), need - win // 2)
    pad[win // 2: win // 2 + m] = w[:m]                         # window j centred at j * 10 ms
    idx = np.arange(n)[:, None] * hop + np.arange(win)[None]
    frames = pad[idx] * np.hanning(win)[None]
    spec = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    mel = np.log(spec @ _mel_filterbank(n_mels, n_fft).T + 1e-8)
    mel = (mel - mel.mean(0)) / (mel.std(0) + 1e-3)
    return mel.astype(np.float32)


def prepare(landmarks: np.ndarray, fps: float, wave: np.ndarray | None, n_mels: int = 40
            ) -> tuple[np.ndarray, np.ndarray]:
    """(lip features (T25, F), mel (T25 * 4, n_mels)) at the scorer's 25 fps."""
    lips = lip_features(resample_series(landmarks, fps, FPS))
    mel = audio_mel(wave if wave is not None else np.zeros(0), len(lips), n_mels)
    return lips, mel


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------

def _build(cfg: SyncNetConfig):
    import torch
    from torch import nn

    class Tower(nn.Module):
        """Conv1d over time, then a linear map to a unit-norm embedding."""

        def __init__(self, c_in: int, length: int, strides: tuple[int, ...]):
            super().__init__()
            layers, c = [], c_in
            for st in strides:
                layers += [nn.Conv1d(c, cfg.hidden, 3, stride=st, padding=1), nn.BatchNorm1d(cfg.hidden),
                           nn.GELU()] + ([nn.Dropout(cfg.dropout)] if cfg.dropout > 0 else [])
                c = cfg.hidden
                length = (length + 2 - 3) // st + 1
            self.net = nn.Sequential(*layers)
            self.head = nn.Linear(cfg.hidden * length, cfg.embed)

        def forward(self, x):                                   # (B, L, C)
            h = self.net(x.transpose(1, 2))                     # (B, H, L')
            z = self.head(h.flatten(1))                         # (B, E)
            return torch.nn.functional.normalize(z, dim=-1)

    class SyncNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = cfg
            self.video = Tower(2 * cfg.n_points, cfg.window, (1, 1))
            self.audio = Tower(cfg.n_mels, cfg.window * MEL_PER_FRAME, (1, 2, 2))
            self.initialize_weights()

        def initialize_weights(self):
            for m in self.modules():
                if isinstance(m, (nn.Conv1d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)

        def forward(self, lips, mel):                           # (B, W, 2P), (B, 4W, M)
            return self.video(lips), self.audio(mel)            # (B, E), (B, E)

    torch.manual_seed(0)
    return SyncNet()


def _windows_lips(lips: np.ndarray, W: int) -> np.ndarray:
    """(T-W+1, W, F) sliding windows."""
    T = len(lips)
    idx = np.arange(T - W + 1)[:, None] + np.arange(W)[None]
    return lips[idx]


def _windows_mel(mel: np.ndarray, starts: np.ndarray, W: int) -> np.ndarray:
    """(len(starts), 4W, M) audio windows starting at video frames `starts` (zeros outside)."""
    n = W * MEL_PER_FRAME
    pad = np.concatenate([np.zeros((n * 8, mel.shape[1]), mel.dtype), mel,
                          np.zeros((n * 8, mel.shape[1]), mel.dtype)])
    s = np.asarray(starts) * MEL_PER_FRAME + n * 8
    s = np.clip(s, 0, len(pad) - n)
    return pad[s[:, None] + np.arange(n)[None]]


# ---------------------------------------------------------------------------------------
# Scorer (inference)
# ---------------------------------------------------------------------------------------

@dataclass
class SyncScore:
    lag: float                      # frames at 25 fps (sub-frame, parabolic); > 0 = video late
    lag_s: float                    # seconds
    distance: float                 # min_L D(L): LSE-D analogue (lower = better)
    confidence: float               # median_L D(L) - min_L D(L): LSE-C analogue (higher = better)
    dist_at_zero: float             # D(0): distance with the audio as given
    curve: list[float] = field(default_factory=list)   # D(L) for L = -max_lag..max_lag
    n_windows: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class SyncScorer:
    """Loads the shipped (or a given) checkpoint once; `score(...)` on landmarks + audio."""

    def __init__(self, model, cfg: SyncNetConfig, meta: dict | None = None):
        self.model = model.eval()
        self.cfg = cfg
        self.meta = meta or {}

    # -- embeddings ----------------------------------------------------------------------
    def embed(self, lips: np.ndarray, mel: np.ndarray, lags: np.ndarray):
        """Video embeddings (N, E) for all windows and audio embeddings (K, N, E) at each lag.

        The audio tower runs once per distinct start frame (N + 2 max|lag| windows), not
        once per (window, lag) pair."""
        import torch
        W = self.cfg.window
        vw = _windows_lips(lips, W)                                        # (N, W, F)
        N = len(vw)
        K = int(np.max(np.abs(lags))) if len(lags) else 0
        starts = np.arange(-K, N + K)                                      # every start needed
        with torch.no_grad():
            v = self.model.video(torch.from_numpy(vw).float()).numpy()     # (N, E)
            aw = _windows_mel(mel, starts, W)                              # (N+2K, 4W, M)
            a_all = np.concatenate([self.model.audio(torch.from_numpy(aw[i:i + 2048]).float()).numpy()
                                    for i in range(0, len(aw), 2048)])     # (N+2K, E)
        t = np.arange(N)
        A = np.stack([a_all[t - int(L) + K] for L in lags])                # (K, N, E)
        return v, A

    def score(self, landmarks: np.ndarray, fps: float, wave: np.ndarray | None,
              max_lag: int | None = None) -> SyncScore:
        """Score a face track (T, 478, 3) at `fps` against 16 kHz mono audio."""
        lips, mel = prepare(landmarks, fps, wave, self.cfg.n_mels)
        return self.score_prepared(lips, mel, max_lag)

    def score_prepared(self, lips: np.ndarray, mel: np.ndarray, max_lag: int | None = None) -> SyncScore:
        K = self.cfg.max_lag if max_lag is None else max_lag
        W = self.cfg.window
        if len(lips) < W + 2:
            nan = float("nan")
            return SyncScore(nan, nan, nan, nan, nan, [], 0)
        lags = np.arange(-K, K + 1)
        v, A = self.embed(lips, mel, lags)
        d = np.linalg.norm(A - v[None], axis=-1)                           # (K, N)
        # only windows whose audio stays inside the clip for every lag
        N = d.shape[1]
        keep = np.arange(N)
        inside = (keep - K >= 0) & (keep + K + W <= N + W - 1)
        if inside.sum() >= 10:
            d = d[:, inside]
        curve = d.mean(1)
        i = int(np.argmin(curve))
        lag = float(lags[i])
        if 0 < i < len(curve) - 1:                                         # parabolic refinement
            y0, y1, y2 = curve[i - 1], curve[i], curve[i + 1]
            den = y0 - 2 * y1 + y2
            if den > 1e-9:
                lag += float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
        return SyncScore(lag=lag, lag_s=lag / FPS, distance=float(curve[i]),
                         confidence=float(np.median(curve) - curve[i]), dist_at_zero=float(curve[K]),
                         curve=[float(c) for c in curve], n_windows=int(d.shape[1]))


# ---------------------------------------------------------------------------------------
# Checkpoint (safetensors + JSON; never pickle)
# ---------------------------------------------------------------------------------------

def save(model, cfg: SyncNetConfig, meta: dict, path: Path = CHECKPOINT_DIR / "syncnet") -> None:
    from safetensors.torch import save_file

    from echo_cli.io_atomic import atomic_path, write_text
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path.with_suffix(".safetensors")) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "schema": str(SCHEMA_VERSION)})
    doc = {"format": FORMAT, "schema": SCHEMA_VERSION, "config": asdict(cfg), **meta}
    write_text(path.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")


_SCORERS: dict[str, SyncScorer] = {}


def load_scorer(path: str | Path | None = None) -> SyncScorer:
    """The scorer from `path` (stem, .json or .safetensors); default: the shipped one."""
    stem = Path(path) if path else CHECKPOINT_DIR / "syncnet"
    stem = stem.with_suffix("") if stem.suffix in (".json", ".safetensors") else stem
    key = str(stem.resolve())
    if key in _SCORERS:
        return _SCORERS[key]
    js, st = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not js.is_file() or not st.is_file():
        raise ModelError("sync scorer checkpoint missing", path=st,
                         fix="train it: python -m echo_cli.eval.syncnet train")
    try:
        doc = json.loads(js.read_text())
        if doc.get("format") != FORMAT or int(doc.get("schema", -1)) > SCHEMA_VERSION:
            raise ModelError(f"not a {FORMAT} v{SCHEMA_VERSION} config", path=js,
                             fix="retrain: python -m echo_cli.eval.syncnet train")
        cfg = SyncNetConfig(**doc["config"])
        from safetensors.torch import load_file
        model = _build(cfg)
        model.load_state_dict(load_file(str(st)))
    except ModelError:
        raise
    except Exception as e:  # corrupt JSON / safetensors, or keys that do not match the code
        raise ModelError(f"cannot load sync scorer: {e.__class__.__name__}: {e}", path=st,
                         fix="retrain: python -m echo_cli.eval.syncnet train") from e
    sc = SyncScorer(model, cfg, doc)
    _SCORERS[key] = sc
    return sc


# ---------------------------------------------------------------------------------------
# Data and training
# ---------------------------------------------------------------------------------------

def shared_data() -> Path | None:
    """../shared/data (or $ECHO_SHARED_DATA) if present."""
    env = os.environ.get("ECHO_SHARED_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return p if p.is_dir() else None


def training_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(train, held-out) clips: talking/ minus the held-out and offset clips, plus the real
    audio-visual speech clips of clips/ (d6, d10, d11, d12)."""
    talk = sorted((root / "talking").glob("*.mp4"))
    held = [p for p in talk if p.name in HELDOUT]
    train = [p for p in talk if p.name not in HELDOUT and p.name not in OFFSET_CLIPS]
    train += [root / "clips" / f"d{i}.mp4" for i in (6, 10, 11, 12) if (root / "clips" / f"d{i}.mp4").is_file()]
    return train, held


def load_clip(path: Path, n_mels: int = 40) -> tuple[np.ndarray, np.ndarray]:
    from echo_cli.eval.measure import measure_video
    m = measure_video(path)
    if m.wave is None:
        raise InputError("no audio stream", path=path, fix="the sync scorer needs speech audio")
    return prepare(m.landmarks, m.fps, m.wave, n_mels)


def window_accuracy(scorer: SyncScorer, clips: dict[str, tuple[np.ndarray, np.ndarray]],
                    seconds: float = 4.0) -> dict:
    """Per non-overlapping window of `seconds`: is the confidence with the clip's own audio
    higher than with another clip's audio (the next clip in the list, same window
    length)? Also the fraction of windows whose lag is within one frame of 0."""
    names = list(clips)
    n = int(seconds * FPS)
    wins, wins_lag, total = 0, 0, 0
    for k, name in enumerate(names):
        lips, mel = clips[name]
        other = clips[names[(k + 1) % len(names)]][1]
        for s in range(0, len(lips) - n + 1, n):
            lw, mw = lips[s:s + n], mel[s * MEL_PER_FRAME:(s + n) * MEL_PER_FRAME]
            o0 = (s * MEL_PER_FRAME) % max(1, len(other) - n * MEL_PER_FRAME)
            ow = other[o0:o0 + n * MEL_PER_FRAME]
            if len(ow) < n * MEL_PER_FRAME:
                continue
            lw = lw - np.median(lw, 0, keepdims=True)
            real = scorer.score_prepared(lw, mw)
            fake = scorer.score_prepared(lw, ow)
            total += 1
            wins += real.confidence > fake.confidence
            wins_lag += abs(real.lag) <= 1.0
    return {"windows": total, "real_beats_mismatched": wins / max(total, 1),
            "lag_within_1_frame": wins_lag / max(total, 1), "seconds": seconds}


def _augment_lips(lw: np.ndarray, rng) -> np.ndarray:
    """(W, 2P) -> same: a random overall scale and landmark noise.

    (A stronger recipe -- anisotropic scale, rotation, dropout 0.2, SpecAugment band masks
    on the mel -- learned far slower on this data (loss 3.35 vs 1.03 after the same
    budget) and was dropped.)"""
    return (lw * rng.uniform(0.85, 1.15) + rng.normal(0, 0.02, lw.shape)).astype(np.float32)


def train(cfg: SyncNetConfig = SyncNetConfig(), tcfg: TrainConfig = TrainConfig(),
          out: Path = CHECKPOINT_DIR / "syncnet", root: Path | None = None) -> dict:
    """Train on the talking clips (held-out speakers excluded), validate, save."""
    import torch

    root = root or shared_data()
    if root is None:
        raise InputError("../shared/data not found", fix="set ECHO_SHARED_DATA to the shared media folder")
    torch.set_num_threads(tcfg.threads)
    rng = np.random.default_rng(tcfg.seed)
    train_files, held_files = training_files(root)
    logger.info("sync scorer: %d training clips, %d held out", len(train_files), len(held_files))
    data = [load_clip(p, cfg.n_mels) for p in train_files]
    held = {p.name: load_clip(p, cfg.n_mels) for p in held_files}
    W, K = cfg.window, tcfg.neg_lag
    # sampling weight per clip = its number of usable windows
    sizes = np.array([max(0, len(l) - W - 2 * K) for l, _ in data], float)
    probs = sizes / sizes.sum()
    model = _build(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tcfg.lr, total_steps=tcfg.steps, pct_start=0.1)
    offsets = np.array([0] + [o for o in range(-K, K + 1) if o != 0])    # positive first
    t0 = time.time()
    for step in range(tcfg.steps):
        ci = rng.choice(len(data), size=tcfg.batch, p=probs)
        lips_b, mel_b = [], []
        for c in ci:
            lips, mel = data[c]
            t = int(rng.integers(K, len(lips) - W - K))
            lips_b.append(_augment_lips(lips[t:t + W], rng))
            mel_b.append(_windows_mel(mel, t - offsets, W))                     # (1+2K, 4W, M)
        lips_t = torch.from_numpy(np.stack(lips_b)).float()                    # (B, W, F)
        mel_t = torch.from_numpy(np.stack(mel_b)).float()                      # (B, 1+2K, 4W, M)
        B, O = mel_t.shape[:2]
        v, a = model(lips_t, mel_t.flatten(0, 1))                             # (B, E), (B*O, E)
        a = a.view(B, O, -1)
        # candidates per anchor: its own clip at every offset (hard negatives) + the other
        # anchors' in-sync audio (easy negatives)
        same = (a * v[:, None]).sum(-1)                                      # (B, O)
        cross = v @ a[:, 0].T                                                # (B, B)
        cross = cross.masked_fill(torch.eye(B, dtype=torch.bool), float("-inf"))
        logits = torch.cat([same, cross], 1) / tcfg.temperature
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(B, dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == tcfg.steps - 1:
            acc = (logits.argmax(1) == 0).float().mean().item()
            logger.info("step %d loss %.3f top1 %.2f (%.0fs)", step, loss.item(), acc, time.time() - t0)
    model.eval()
    scorer = SyncScorer(model, cfg)
    val = window_accuracy(scorer, held, 4.0)
    per_clip = {}
    for name, (lips, mel) in held.items():
        s = scorer.score_prepared(lips, mel)
        per_clip[name] = {"lag": round(s.lag, 2), "distance": round(s.distance, 4),
                          "confidence": round(s.confidence, 4)}
    meta = {
        "train_clips": [p.name for p in train_files],
        "heldout_clips": [p.name for p in held_files],
        "excluded_offset_clips": list(OFFSET_CLIPS),
        "train": asdict(tcfg),
        "validation_4s": val,
        "validation_per_clip": per_clip,
        "fps": FPS,
        "inputs": "lip/jaw landmarks (MediaPipe, eval.measure) + 100 Hz log-mel",
        "data": "../shared/data talking/ + clips/d6,d10,d11,d12 (MIT / Apache-2.0 sources, see its README)",
        "train_seconds": round(time.time() - t0, 1),
        "command": "python -m echo_cli.eval.syncnet train",
    }
    save(model, cfg, meta, out)
    _SCORERS.clear()
    logger.info("validation (held-out, 4 s windows): %s", val)
    return meta


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m echo_cli.eval.syncnet",
                                 description="train or check the lip-sync scorer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on ../shared/data/talking (held-out speakers excluded)")
    t.add_argument("--steps", type=int, default=TrainConfig.steps)
    t.add_argument("--out", default=str(CHECKPOINT_DIR / "syncnet"), help="checkpoint path stem")
    t.add_argument("--threads", type=int, default=TrainConfig.threads)
    sub.add_parser("validate", help="held-out 4 s window accuracy of the shipped scorer")
    args = ap.parse_args(argv)
    log.setup(0)
    if args.cmd == "train":
        meta = train(tcfg=TrainConfig(steps=args.steps, threads=args.threads), out=Path(args.out))
        print(json.dumps({"validation_4s": meta["validation_4s"],
                          "validation_per_clip": meta["validation_per_clip"]}, indent=2))
    else:
        root = shared_data()
        if root is None:
            raise SystemExit("../shared/data not found")
        _, held = training_files(root)
        sc = load_scorer()
        print(json.dumps(window_accuracy(sc, {p.name: load_clip(p, sc.cfg.n_mels) for p in held}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
