"""Stage-1 training data: real talking clips -> per-clip tensors, cached.

For each clip of ../shared/data with the speaker's own speech (talking/ and the five speech
clips of clips/, see the data README) we compute, at FPS = 25:
  motion    (T, D)   MotionSpace.encode(track_face(clip)); pose centred on the clip median
                     (generated pose is an offset from the reference's pose)
  whisper   (T, 512) Whisper-base encoder features; mel (T, 80) log-mel (features.audio)
  whisper_mid (T, 1024) the encoder's hidden states after blocks 2 and 3 (features.whisper_layers),
                     cached in a file of their own so adding them never re-tracks a face
  identity  (D,)     identity_vector(): the clip's neutral face in motion-space codes
  visemes   (T,)     viseme ids from the faster-whisper word timings (features.phonetic)
Speech without video (../shared/data/audio and espeak-ng synthetic speech) gives audio +
visemes only (`audio_only_items`); their mouth targets come from a viseme -> mouth-code
table fitted on the video clips (`viseme_mouth_table`).

Held-out speakers (validation, never trained on): HELD_OUT. Several clips of one person
share a speaker id so no held-out person leaks into training.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError

LOG = log.get("echo_cli.train.data")
FPS = 25.0
CACHE_VERSION = 2

# clip stem -> speaker id (only clips whose audio is the face's own speech)
SPEECH_CLIPS = {
    "talking/dfrf_cnn2_25fps.mp4": "dfrf_anchor",
    "talking/ed_pose_source2.mp4": "edtalk",
    "talking/mt_German_20s.mp4": "mimictalk_german",
    "talking/sty_Obama_clip1.mp4": "obama",
    "talking/sty_Obama_clip2.mp4": "obama",
    "talking/sty_Obama_clip3.mp4": "obama",
    "talking/sty_reagan_clip1.mp4": "reagan",
    "talking/sty_feifeili_clip1.mp4": "feifeili",
    "talking/sty_feifeili_clip2_short.mp4": "feifeili",
    "talking/ls_demo3.mp4": "latentsync",
    "talking/lrd_sample_video.mp4": "lrd",
    "talking/r3_May_5s.mp4": "may",
    "talking/vr_2.mp4": "retalking",
    "talking/grid_lrwp9a.mp4": "grid",
    "talking/grid_pwij3p.mp4": "grid",
    "clips/d6.mp4": "d6",
    "clips/d10.mp4": "d10",
    "clips/d11.mp4": "d11",
    "clips/d12.mp4": "d12",
    "clips/d20.mp4": "d20",
}
# Held-out speakers: a clear English clip of each kind (studio 30 fps, phone 25 fps, 480p).
HELD_OUT = ("reagan", "d6", "lrd")
AUDIO_ONLY = ("audio/RD_Radio31_000.wav", "audio/RD_Radio34_002.wav", "audio/RD_Radio36_000.wav",
              "audio/RD_Radio40_000.wav", "audio/sun.wav")


def shared_data_dir() -> Path | None:
    env = os.environ.get("ECHO_SHARED_DATA")
    d = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return d if d.is_dir() else None


def cache_dir() -> Path:
    from echo_cli.hashing import cache_root

    root = cache_root()
    d = root / "train_stage1"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class ClipData:
    name: str
    speaker: str
    motion: np.ndarray | None         # (T, D) or None for audio-only items
    whisper: np.ndarray | None        # (T, 512)
    mel: np.ndarray                   # (T, 80)
    identity: np.ndarray              # (D,)
    visemes: np.ndarray               # (T,) int64, -1 = unknown
    energy: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    neutral: np.ndarray | None = None  # (478, 3) canonical neutral (for decoding in eval)
    whisper_mid: np.ndarray | None = None  # (T, 1024) Whisper blocks 2-3 (audio_input "whisper_mid")

    @property
    def n_frames(self) -> int:
        return int(self.mel.shape[0])

    def has_audio(self, kind: str) -> bool:
        """Whether the generator input `kind` (model.audio_encoder.AUDIO_INPUTS) can be built."""
        return kind == "mel" or (self.whisper_mid if kind == "whisper_mid" else self.whisper) is not None

    def audio(self, kind: str) -> np.ndarray:
        """The generator's audio matrix (T, Fa) for input `kind`."""
        if not self.has_audio(kind):
            raise ValueError(f"{self.name} has no Whisper features ('{kind}')")
        if kind == "whisper_mid":
            return self.whisper_mid
        from echo_cli.model.audio_encoder import combine_rows

        return combine_rows(kind, self.whisper, self.mel)


#################################################################################
#                               Identity vector                                 #
#################################################################################

def identity_vector(space, neutral: np.ndarray) -> np.ndarray:
    """The neutral face's shape in motion-space codes (D,), pose part 0: the generator's
    identity input. Use the same function for a reference image at inference."""
    disp = np.asarray(neutral, np.float64)[None] - np.asarray(space.template, np.float64)[None]
    codes = space._encode_expr(disp)
    out = np.zeros(space.dim, np.float32)
    for name, sl in space.regions.items():
        if name in codes:
            out[sl] = codes[name][0]
    return out


#################################################################################
#                              Per-clip processing                              #
#################################################################################

def _key(path: Path, extra: str) -> str:
    from echo_cli.hashing import keyed

    return keyed(path, CACHE_VERSION, extra)


def _word_timings(wave: np.ndarray):
    """faster-whisper word timings (list of schema.Word); [] when Whisper is unavailable."""
    from echo_cli.schema import Word

    try:
        from echo_cli.features.audio import load_whisper_model
        model = load_whisper_model()
    except Exception as e:  # DependencyError or import failure: no phonetic prior for this clip
        LOG.warning("no word timings (%s)", e)
        return []
    # greedy, no temperature fallback, no conditioning on previous text: bounded time even on
    # clips where Whisper would otherwise loop (we saw a 5 s clip take > 10 min)
    # language fixed to English: on a short clip language detection can pick Welsh and loop
    segs, _ = model.transcribe(wave, word_timestamps=True, beam_size=1, vad_filter=False, temperature=0.0,
                               condition_on_previous_text=False, language="en")
    words = []
    for s in segs:
        for w in (s.words or []):
            if w.end > w.start:
                words.append(Word(text=w.word.strip(), start=float(w.start), end=float(w.end)))
    return words


def with_mid_features(c: ClipData, path: Path, use_cache: bool = True) -> ClipData:
    """c with whisper_mid (T, 1024) for the audio of `path`, T = c.n_frames (cached); unchanged
    when the Whisper model is not installed."""
    import dataclasses

    from echo_cli.errors import DependencyError
    from echo_cli.features.audio import frame_centres, read_audio, whisper_encoder_features

    ck = cache_dir() / f"{path.stem}-{_key(path, 'whisper-mid')}.npz"
    if use_cache and ck.is_file():
        with np.load(ck, allow_pickle=False) as z:
            mid = z["whisper_mid"]
        if mid.shape[0] == c.n_frames:
            return dataclasses.replace(c, whisper_mid=mid)
    try:
        mid = whisper_encoder_features(read_audio(path), frame_centres(c.n_frames, FPS), layers="mid")
    except DependencyError as e:
        LOG.warning("no Whisper mid-layer features for %s (%s)", path.name, e)
        return c
    _save_npz(ck, {"whisper_mid": mid.astype(np.float32)})
    return dataclasses.replace(c, whisper_mid=mid)


def process_clip(path: Path, speaker: str, space, use_cache: bool = True) -> ClipData:
    from echo_cli.features.audio import audio_features, read_audio
    from echo_cli.features.phonetic import viseme_track

    ck = cache_dir() / f"{path.stem}-{_key(path, 'video')}.npz"
    if use_cache and ck.is_file():
        z = np.load(ck, allow_pickle=False)
        return with_mid_features(_from_npz(z, path.stem, speaker), path, use_cache)
    from echo_cli.preprocess.face import track_face

    track = track_face(path, fps=FPS)
    wave = read_audio(path)
    feats = audio_features(wave, FPS, whisper=True, n_frames=track.n_frames, source=str(path))
    neutral = space.neutral_of(track)
    motion = space.encode(track, neutral=neutral)
    motion[:, :6] -= np.median(motion[:, :6], axis=0)
    words = _word_timings(wave)
    vis = viseme_track(words, track.n_frames, FPS)
    arrays = dict(motion=motion.astype(np.float32), mel=feats.mel.astype(np.float32),
                  whisper=(feats.whisper if feats.whisper is not None else np.zeros((0, 512))).astype(np.float32),
                  identity=identity_vector(space, neutral), visemes=vis.astype(np.int64),
                  energy=feats.energy.astype(np.float32), neutral=neutral.astype(np.float32),
                  valid=track.valid.astype(bool),
                  words=np.array(json.dumps([[w.text, w.start, w.end] for w in words])))
    _save_npz(ck, arrays)
    return with_mid_features(_from_npz(np.load(ck, allow_pickle=False), path.stem, speaker), path, use_cache)


def process_audio_only(path: Path, space_dim: int, use_cache: bool = True, words=None,
                       speaker: str = "audio") -> ClipData:
    from echo_cli.features.audio import audio_features, read_audio
    from echo_cli.features.phonetic import viseme_track

    ck = cache_dir() / f"{path.stem}-{_key(path, 'audio')}.npz"
    if use_cache and ck.is_file():
        return with_mid_features(_from_npz(np.load(ck, allow_pickle=False), path.stem, speaker), path, use_cache)
    wave = read_audio(path)
    feats = audio_features(wave, FPS, whisper=True, source=str(path))
    words = _word_timings(wave) if words is None else words
    vis = viseme_track(words, feats.n_frames, FPS)
    arrays = dict(mel=feats.mel.astype(np.float32),
                  whisper=(feats.whisper if feats.whisper is not None else np.zeros((0, 512))).astype(np.float32),
                  identity=np.zeros(space_dim, np.float32), visemes=vis.astype(np.int64),
                  energy=feats.energy.astype(np.float32),
                  words=np.array(json.dumps([[w.text, w.start, w.end] for w in words])))
    _save_npz(ck, arrays)
    return with_mid_features(_from_npz(np.load(ck, allow_pickle=False), path.stem, speaker), path, use_cache)


def _save_npz(path: Path, arrays: dict) -> None:
    from echo_cli.io_atomic import write_npz

    write_npz(path, arrays)


def _from_npz(z, name: str, speaker: str) -> ClipData:
    w = z["whisper"]
    return ClipData(name=name, speaker=speaker, motion=z["motion"] if "motion" in z else None,
                    whisper=w if w.shape[0] else None, mel=z["mel"], identity=z["identity"],
                    visemes=z["visemes"], energy=z["energy"],
                    neutral=z["neutral"] if "neutral" in z else None)


def speech_clips(data_dir: Path) -> dict[str, str]:
    """Training clips under data_dir: relative path -> speaker id.

    ../shared/data (or a copy laid out like it): SPEECH_CLIPS, the clips whose sound is the
    face's own speech (its README says which). Any other folder, e.g. your own talking-head
    recordings: every video under it with an audio track; the speaker is the clip's first
    sub-folder (DATA/alice/*.mp4 -> "alice", so one person's clips share an id and the
    speaker-wise CV never sees them on both sides) or, for a file at the top, its name."""
    if any((data_dir / rel).is_file() for rel in SPEECH_CLIPS):
        return SPEECH_CLIPS
    from echo_cli.media.kinds import VIDEO_EXTS
    from echo_cli.media.probe import probe

    found: dict[str, str] = {}
    for p in sorted(data_dir.rglob("*")):
        if p.suffix.lower() not in VIDEO_EXTS or not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(data_dir)
        try:
            if not probe(p).has_audio:
                LOG.warning("%s: no audio track, not a talking clip to learn lip sync from: skipped", rel)
                continue
        except InputError as e:
            LOG.warning("%s: skipped (%s)", rel, e.message)
            continue
        found[rel.as_posix()] = rel.parts[0] if len(rel.parts) > 1 else p.stem
    return found


def load_clips(data_dir: Path | None = None, names: list[str] | None = None, space=None,
               use_cache: bool = True) -> list[ClipData]:
    """Process (or load from cache) the speech clips; `names` filters by clip stem."""
    data_dir = Path(data_dir) if data_dir else shared_data_dir()
    if data_dir is None or not data_dir.is_dir():
        raise InputError("training data folder not found", path=data_dir or "../shared/data",
                         fix="pass DATA or set ECHO_SHARED_DATA to the shared data folder")
    if space is None:
        from echo_cli.motion.space import default_space
        space = default_space()
    out, missing = [], []
    for rel, spk in speech_clips(data_dir).items():
        p = data_dir / rel
        if names and p.stem not in names:
            continue
        if not p.is_file():
            missing.append(rel)
            continue
        LOG.info("preparing %s", rel)
        out.append(process_clip(p, spk, space, use_cache))
    if missing and out:         # none at all: the caller's error says so
        LOG.warning("%d of %d training clips missing under %s: %s", len(missing), len(missing) + len(out),
                    data_dir, ", ".join(missing))
    return out


def audio_only_items(data_dir: Path | None = None, space_dim: int = 31, use_cache: bool = True,
                     espeak: bool = True) -> list[ClipData]:
    """Speech without video: ../shared/data/audio (Whisper word timings) + espeak-ng sentences."""
    data_dir = Path(data_dir) if data_dir else shared_data_dir()
    out = espeak_items(space_dim, use_cache=use_cache) if espeak else []
    for rel in AUDIO_ONLY:
        p = data_dir / rel
        if p.is_file():
            out.append(process_audio_only(p, space_dim, use_cache))
    return out


ESPEAK_SENTENCES = (
    "Please bring me the blue bowl from the kitchen table",
    "We were waiting for the morning flight to Paris",
    "My father loves to fish on the river every summer",
    "Open the window and let the cool air move through the room",
    "She thought about the old photographs all afternoon",
    "Why would anyone choose to walk home in the pouring rain",
    "The bright yellow boat floated past the quiet village",
    "I have never seen so many people at the market",
    "Could you show me how the machine works",
    "Mama made a big pot of soup for everyone",
    "The judge thanked the jury and went back to her chair",
    "Five purple umbrellas were left at the museum",
)
ESPEAK_VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3")


def espeak_items(space_dim: int, n: int = len(ESPEAK_SENTENCES), use_cache: bool = True) -> list[ClipData]:
    """Synthetic speech with exact word timing (features.phonetic.synthesize_espeak)."""
    from scipy.io import wavfile

    from echo_cli.features.phonetic import espeak_available, synthesize_espeak
    from echo_cli.schema import SAMPLE_RATE

    if not espeak_available():
        LOG.warning("espeak-ng not installed: no synthetic speech items")
        return []
    out = []
    d = cache_dir() / "espeak"
    d.mkdir(exist_ok=True)
    for i, text in enumerate(ESPEAK_SENTENCES[:n]):
        voice = ESPEAK_VOICES[i % len(ESPEAK_VOICES)]
        wave, words = synthesize_espeak(text, voice=voice, speed=150 + 10 * (i % 4), seed=i)
        wav = d / f"espeak_{i:02d}.wav"
        wavfile.write(wav, SAMPLE_RATE, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
        out.append(process_audio_only(wav, space_dim, use_cache, words=words, speaker="espeak"))
    return out


def av_offset(c: ClipData, space, weights: np.ndarray, max_lag: int = 8) -> int:
    """Frames by which the mouth leads the audio in clip `c` (> 0: audio late), or 0 unless
    two independent estimates agree: the best lag of a band-energy regression (`weights`,
    lipsync_eval.fit_linear_baseline) and of the raw energy envelope against the decoded
    mouth opening must both be >= 3 frames, of one sign and inside the search range.
    Small lags are left alone: they are within what the estimates can tell apart."""
    from echo_cli.eval.metrics import best_lag_correlation
    from echo_cli.train.lipsync_eval import band_features, mouth_from_motion

    m = mouth_from_motion(space, c.motion, c.neutral)
    _, l1 = best_lag_correlation(band_features(c.mel) @ weights, m, max_lag)
    _, l2 = best_lag_correlation(c.energy, m, max_lag)
    if l1 * l2 <= 0 or min(abs(l1), abs(l2)) < 3 or max(abs(l1), abs(l2)) >= max_lag:
        return 0
    return int(np.round((l1 + l2) / 2))


def shift_clip(c: ClipData, lag: int) -> ClipData:
    """Re-pair audio and video by `lag` frames (av_offset's sign): audio[t + lag] with motion[t]."""
    if lag == 0:
        return c
    n = c.n_frames - abs(lag)
    a = slice(lag, lag + n) if lag > 0 else slice(0, n)       # audio-side frames
    v = slice(0, n) if lag > 0 else slice(-lag, -lag + n)     # video-side frames
    return ClipData(name=c.name, speaker=c.speaker, motion=c.motion[v],
                    whisper=None if c.whisper is None else c.whisper[a], mel=c.mel[a],
                    identity=c.identity, visemes=c.visemes[a],
                    energy=c.energy[a] if len(c.energy) else c.energy, neutral=c.neutral,
                    whisper_mid=None if c.whisper_mid is None else c.whisper_mid[a])


def prior_offset(c: ClipData, prior_motion: np.ndarray, space, max_lag: int = 4) -> int:
    """Frames by which clip c's audio is late against its mouth (av_offset's sign), read off
    an audio -> mouth prediction for it that never saw its speaker (`prior_motion` (T, D):
    the ridge prior's leave-its-speaker-out codes, the rest at the mean): the best lag of
    its decoded mouth opening against the real one. A far sharper sync detector than the
    band-energy regression av_offset starts from, so it also finds the 1-2 frame offsets."""
    from echo_cli.eval.metrics import best_lag_correlation
    from echo_cli.train.lipsync_eval import mouth_from_motion

    _, lag = best_lag_correlation(mouth_from_motion(space, prior_motion, c.neutral),
                                  mouth_from_motion(space, c.motion, c.neutral), max_lag)
    return int(lag)


def align_speech(clips: list[ClipData], space) -> list[ClipData]:
    """Training clips with their clear audio/video offsets removed (../shared/data/README
    names a few: Obama clips 1 and 3 ~4 frames, vr_2 ~5); estimated, never hard-coded."""
    from echo_cli.train.lipsync_eval import fit_linear_baseline

    w = fit_linear_baseline(clips, space)
    out = []
    for c in clips:
        lag = av_offset(c, space, w)
        if lag:
            LOG.info("%s: audio re-aligned by %+d frames", c.name, lag)
        out.append(shift_clip(c, lag))
    return out


def split(clips: list[ClipData], held_out=HELD_OUT) -> tuple[list[ClipData], list[ClipData]]:
    train = [c for c in clips if c.speaker not in held_out]
    val = [c for c in clips if c.speaker in held_out]
    return train, val


if __name__ == "__main__":   # python -m echo_cli.train.data  (fills the cache)
    import sys

    log.setup(0)
    clips = load_clips(names=sys.argv[1:] or None)
    if not sys.argv[1:]:
        clips += audio_only_items()
    for c in clips:
        print(c.name, c.speaker, c.n_frames, None if c.whisper is None else c.whisper.shape,
              int((c.visemes >= 0).sum()))
