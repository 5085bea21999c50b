"""Dyadic training conversations built from ../shared/data (there is no dyadic corpus here).

A training sample is one window of a two-person conversation: what the user does (face
motion, audio, behaviour text) and what the avatar should do (a motion target), with the
avatar's own audio. We build them by pairing real clips:

- avatar SPEAKING: the target is a window of a real speech clip (its own audio drives the
  lips; these are stage 1's clips); the user is a real non-speaking expressive clip
  (a listening user) with silent audio.
- avatar LISTENING: the target starts from a window of a real non-speaking clip (a real
  listener's head and face motion, with silence as the avatar audio); the user is a real
  speech clip (a talking user) or another expressive clip (a reacting user). The target is
  then time-aligned to the user by rules from the listener-behaviour literature, applied
  as edits in motion space (see `listener_targets`):
    1. closed mouth: a listener's articulation is damped toward its neutral (× mouth_damp = 0.15);
    2. delayed smile mirroring: the avatar's smile follows the user's smile (above its own
       median) after a delay drawn in 0.2–1.5 s (facial mimicry latencies; Dimberg et al.
       2000; Hess & Fischer 2013), with gain `mirror_gain`; the listener clip's own,
       user-independent smile movement is first shrunk to `smile_keep` of itself;
    3. backchannel nods at user pauses: a short nod (raised-cosine pitch bump) starts
       0.2–0.6 s after the user stops talking following ≥ 0.8 s of speech (backchannel
       opportunities at pauses; Ward & Tsukahara 2000; Gravano & Hirschberg 2011);
- emotion-congruent expression (both roles): each sample draws an emotion (happy,
  neutral, sad); the avatar's smile is shifted along the smile direction by the emotion's
  offset, and the emotion's canonical LAU description is the conditioning text (c_emo).

Held-out pairs: listening clips `HELD_OUT_LISTENERS` and stage 1's held-out speakers are
never used in training; `eval_pairs()` builds the evaluation pairs from them.

Limits (also in docs/lcu.md): the reactions are rule-based, not observed in real dyads;
"sad" is a lowered smile only; the user and avatar clips were never in one conversation,
so rPCC against "real listeners" is measured against the rule targets.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError
from echo_cli.eval.events import pause_onsets  # one pause detector for the rules and the follow test

LOG = log.get("echo_cli.train.dyadic")

FPS = 25.0
CACHE_VERSION = 1
# non-speaking expressive clips: listening / reacting users and the avatar's listening motion
SILENT_CLIPS = ("clips/d0.mp4", "clips/d3.mp4", "clips/d9.mp4", "clips/d13.mp4", "clips/d14.mp4",
                "clips/d18.mp4", "clips/d19.mp4", "clips/s20.mp4", "clips/s29.mp4", "clips/s32.mp4",
                "clips/sun.mp4")
HELD_OUT_LISTENERS = ("d19", "s32")
EMOTION_SMILE = {"happy": 0.06, "neutral": 0.0, "sad": -0.035}   # smile-width offsets (IOD units)


@dataclass(frozen=True)
class RuleConfig:
    # listener articulation kept (fraction of the real clip's). The non-speaking clips move
    # their mouths as much as the speech clips do (mouth-opening std 1.06x, laughs and
    # talk-like mimicry in d0, d3, d18); at 0.35 the targets themselves sat at 0.37x the
    # speakers' std, i.e. the rule taught "listening mouth = the acceptance ceiling". At
    # 0.15 the targets sit at about 0.16x (measured, docs/lcu.md): listeners barely articulate.
    mouth_damp: float = 0.15
    mirror_gain: float = 1.5         # avatar smile per unit of user smile (0.8 until 2026-11-25 evening)
    mirror_delay: tuple = (0.2, 1.5) # seconds, drawn per sample
    nod_amp: float = 0.15            # radians of pitch at the nod's peak (0.07 until 2026-11-25 evening)
    nod_len: float = 0.5             # seconds
    nod_delay: tuple = (0.2, 0.6)    # seconds after the pause onset
    min_speech: float = 0.8          # seconds of speech before a pause that invites a nod
    min_pause: float = 0.25          # seconds
    # fraction of the real listener's own smile movement (around its window median) kept
    # under the mirrored smile: the real clip's spontaneous smiles are independent of the
    # user, so at 1.0 they are noise as large as the reaction the model should learn
    smile_keep: float = 0.2


@dataclass
class DyadClip:
    """One real clip prepared for either role."""
    name: str
    kind: str                        # "speech" | "silent"
    motion: np.ndarray               # (T, D) raw motion, pose centred on the clip median
    neutral: np.ndarray              # (478, 3)
    identity: np.ndarray             # (D,)
    gen_audio: np.ndarray            # (T, Fa) the generator's audio input for this clip as the avatar
    user_audio: np.ndarray           # (T, 82) LPE audio input for this clip as the user
    vad: np.ndarray                  # (T,) bool
    smile: np.ndarray                # (T,) smile width relative to the clip median
    behaviour: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), np.float32))  # (T, 384)
    texts: list = field(default_factory=list)      # behaviour sentence per window

    @property
    def n_frames(self) -> int:
        return int(self.motion.shape[0])


def cache_dir() -> Path:
    from echo_cli.hashing import cache_root

    root = cache_root()
    d = root / "dyadic"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _key(path: Path) -> str:
    from echo_cli.hashing import keyed

    return keyed(path, "dyadic", CACHE_VERSION)


#################################################################################
#                          Motion-space directions                              #
#################################################################################

def smile_direction(space, neutral: np.ndarray | None = None) -> np.ndarray:
    """(D,) motion vector that raises the smile-width measure by 1 IOD unit (linearised)."""
    from echo_cli.motion import measures

    neutral = space.template if neutral is None else neutral
    sl = space.regions["smile"]
    base = float(measures.smile_width(space.decode(np.zeros((1, space.dim)), neutral))[0])
    g = np.zeros(space.dim)
    eps = 0.05
    for j in range(sl.start, sl.stop):
        m = np.zeros((1, space.dim)); m[0, j] = eps
        g[j] = (float(measures.smile_width(space.decode(m, neutral))[0]) - base) / eps
    return (g / max(float(g @ g), 1e-9)).astype(np.float32)


def smile_measure(space, motion: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(T,) smile width (lip corners / inter-ocular) of motion decoded on a neutral face."""
    from echo_cli.motion import measures

    return measures.smile_width(space.decode(motion, neutral)).astype(np.float32)


def mouth_measure(space, motion: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    from echo_cli.motion import measures

    return measures.mouth_opening(space.decode(motion, neutral)).astype(np.float32)


#################################################################################
#                               Clip preparation                                #
#################################################################################

_SILENCE: dict = {}


def silence_features(n: int, audio_input: str):
    """Generator audio features and AudioFeatures of n frames of silence (computed once)."""
    from echo_cli.features.audio import WHISPER_LAYERS, audio_features
    from echo_cli.model.audio_encoder import combine_rows, feature_request

    wa = feature_request(audio_input)
    key = wa["whisper_layers"] if wa["whisper"] else "mel"
    key = "whisper" if key == "final" else key           # the cache name of the first "final" files
    if key not in _SILENCE:
        ck = cache_dir() / f"silence-{key}-{CACHE_VERSION}.npz"
        if ck.is_file():
            z = np.load(ck)
            _SILENCE[key] = {k: z[k] for k in z.files}
        else:
            f = audio_features(np.zeros(int(16000 * 4.0), np.float32), FPS, n_frames=100, **wa)
            d = {"mel": f.mel, "energy": f.energy,
                 "whisper": f.whisper if f.whisper is not None
                 else np.zeros((100, WHISPER_LAYERS[wa["whisper_layers"]]), np.float32)}
            np.savez(ck, **d)
            _SILENCE[key] = d
    f = _SILENCE[key]
    # silence is stationary: tile its middle frame
    row = {k: v[50] for k, v in f.items()}
    mel = np.tile(row["mel"], (n, 1)); wh = np.tile(row["whisper"], (n, 1))
    gen = combine_rows(audio_input, wh, mel)
    return gen.astype(np.float32), mel.astype(np.float32), np.full(n, float(row["energy"]), np.float32)


def _gen_matrix(f, audio_input: str, n: int) -> np.ndarray:
    from echo_cli.features.audio import WHISPER_LAYERS
    from echo_cli.model.audio_encoder import combine_rows

    wh = f.whisper if f.whisper is not None else np.zeros((n, WHISPER_LAYERS[f.whisper_layers]), np.float32)
    return combine_rows(audio_input, wh, f.mel).astype(np.float32)


def clip_wave(name: str, data_dir: Path | None) -> np.ndarray | None:
    """16 kHz audio of a stage-1 speech clip by name (None if it cannot be found)."""
    from echo_cli.features.audio import read_audio
    from echo_cli.train.data import SPEECH_CLIPS

    rel = next((r for r in SPEECH_CLIPS if Path(r).stem == name), None)
    if data_dir is None or rel is None or not (Path(data_dir) / rel).is_file():
        return None
    return read_audio(Path(data_dir) / rel)


def gated_features(wave: np.ndarray, silent: np.ndarray, audio_input: str, fps: float = FPS) -> np.ndarray:
    """Generator audio features (len(silent), Fa) of `wave` with the frames marked `silent`
    zeroed — the avatar's track in a conversation (its speech, digital silence while the
    user talks). Whisper's encoder sees 30 s of context, so its features of the silent
    frames are NOT those of isolated silence: they vary with position and with the speech
    around them (measured: as far from the isolated-silence row as speech is, docs/lcu.md)."""
    from echo_cli.features.audio import audio_features
    from echo_cli.model.audio_encoder import feature_request

    n = len(silent)
    hop = 16000.0 / fps
    w = np.asarray(wave, np.float32)[: int(round(n * hop))].copy()
    for t in np.flatnonzero(silent):
        w[int(round(t * hop)):int(round((t + 1) * hop))] = 0.0
    f = audio_features(w, fps, n_frames=n, **feature_request(audio_input))
    return _gen_matrix(f, audio_input, n)


def conversation_gate(n: int, rng: np.random.Generator, speech_s=(2.0, 5.0), silence_s=(3.0, 6.0),
                      fps: float = FPS) -> np.ndarray:
    """(n,) bool silent frames: alternating speech and silence runs, speech first."""
    g = np.zeros(n, bool)
    t, speaking = 0, True
    while t < n:
        L = int(round(rng.uniform(*(speech_s if speaking else silence_s)) * fps))
        if not speaking:
            g[t:t + L] = True
        t += L
        speaking = not speaking
    return g


def silence_bank(speech: list[DyadClip], data_dir: Path | None, audio_input: str, min_len: int,
                 seed: int = 0, use_cache: bool = True) -> list[np.ndarray]:
    """Avatar-audio feature windows of silence *in conversation context*, one per silent run
    (≥ min_len frames) of each speech clip gated by `conversation_gate`. Stage 2's listening
    windows draw their avatar audio from here, so they see what a render feeds the generator
    while the user talks (cached per clip)."""
    bank = []
    for i, c in enumerate(speech):
        ck = cache_dir() / f"silbank-{c.name}-{audio_input}-{seed}-{CACHE_VERSION}.npz"
        if use_cache and ck.is_file():
            z = np.load(ck)
            feats, gate = z["feats"], z["gate"]
        else:
            wave = clip_wave(c.name, data_dir)
            if wave is None:
                continue
            gate = conversation_gate(c.n_frames, np.random.default_rng([seed, i]))
            feats = gated_features(wave, gate, audio_input)
            from echo_cli.io_atomic import write_npz
            write_npz(ck, dict(feats=feats, gate=gate))
        runs = np.flatnonzero(np.diff(np.r_[0, gate.astype(int), 0]))
        for a, b in zip(runs[::2], runs[1::2]):
            if b - a >= min_len:
                bank.append(feats[a:b].astype(np.float32))
    LOG.info("silence-in-context bank: %d windows from %d speech clips", len(bank), len(speech))
    return bank


def _behaviour(space, motion, neutral, energy, vad):
    from echo_cli.lcu.hbcu import behaviour_embeddings, describe_behaviour, signals_from_motion

    sig = signals_from_motion(motion, space, neutral, FPS, energy=energy, vad=vad)
    wins = describe_behaviour(sig)
    return sig, behaviour_embeddings(wins, len(motion)), [w.text for w in wins]


def prepare_silent(path: Path, space, audio_input: str, use_cache: bool = True) -> DyadClip:
    from echo_cli.lcu.hbcu import user_audio_features
    from echo_cli.train.data import identity_vector

    ck = cache_dir() / f"{path.stem}-{_key(path)}.npz"
    if use_cache and ck.is_file():
        z = np.load(ck)
        motion, neutral = z["motion"], z["neutral"]
    else:
        from echo_cli.preprocess.face import track_face

        track = track_face(path, fps=FPS)
        neutral = space.neutral_of(track)
        motion = space.encode(track, neutral=neutral)
        motion[:, :6] -= np.median(motion[:, :6], axis=0)
        from echo_cli.io_atomic import write_npz
        write_npz(ck, dict(motion=motion.astype(np.float32), neutral=neutral.astype(np.float32)))
    T = len(motion)
    gen, mel, energy = silence_features(T, audio_input)
    vad = np.zeros(T, bool)
    sig, beh, texts = _behaviour(space, motion, neutral, energy, vad)
    return DyadClip(path.stem, "silent", motion.astype(np.float32), neutral, identity_vector(space, neutral),
                    gen, user_audio_features(mel, energy, vad), vad, sig.smile, beh, texts)


def speech_vad(c, data_dir: Path | None, n: int) -> np.ndarray:
    """Silero VAD of a speech clip's own audio at FPS (cached); energy VAD if unavailable."""
    from echo_cli.features.audio import read_audio, vad_energy, vad_silero
    from echo_cli.train.data import SPEECH_CLIPS

    rel = next((r for r in SPEECH_CLIPS if Path(r).stem == c.name), None)
    if data_dir is not None and rel is not None and (Path(data_dir) / rel).is_file():
        p = Path(data_dir) / rel
        ck = cache_dir() / f"{c.name}-{_key(p)}-vad.npy"
        if ck.is_file():
            v = np.load(ck)
            if len(v) == n:
                return v
        try:
            v = vad_silero(read_audio(p), n, FPS).astype(bool)
            np.save(ck, v)
            return v
        except Exception as e:  # onnxruntime missing: fall back to the energy detector
            LOG.warning("Silero VAD unavailable for %s (%s)", c.name, e)
    energy = c.energy if len(c.energy) else np.full(n, -80.0, np.float32)
    return vad_energy(energy, FPS)


def prepare_speech(c, space, audio_input: str, data_dir: Path | None = None) -> DyadClip:
    """A stage-1 ClipData (train.data) → DyadClip."""
    from echo_cli.lcu.hbcu import user_audio_features

    T = c.n_frames
    gen = c.audio(audio_input)
    energy = c.energy if len(c.energy) else np.full(T, -80.0, np.float32)
    vad = speech_vad(c, data_dir, T)
    neutral = c.neutral if c.neutral is not None else space.template
    sig, beh, texts = _behaviour(space, c.motion, neutral, energy, vad)
    return DyadClip(c.name, "speech", c.motion.astype(np.float32), neutral, c.identity, gen.astype(np.float32),
                    user_audio_features(c.mel, energy, vad), vad, sig.smile, beh, texts)


def load_dyadic_clips(data_dir: Path | None = None, space=None, audio_input: str = "whisper",
                      speech_names: list[str] | None = None, silent_names: list[str] | None = None,
                      use_cache: bool = True) -> tuple[list[DyadClip], list[DyadClip]]:
    """(speech clips, silent clips) from ../shared/data, preprocessed and cached."""
    from echo_cli.train import data as D

    data_dir = Path(data_dir) if data_dir else D.shared_data_dir()
    if data_dir is None or not data_dir.is_dir():
        raise InputError("training data folder not found", path=data_dir or "../shared/data",
                         fix="pass DATA or set ECHO_SHARED_DATA to the shared data folder")
    if space is None:
        from echo_cli.motion.space import default_space
        space = default_space()
    wanted = [rel for rel in SILENT_CLIPS if not silent_names or Path(rel).stem in silent_names]
    if wanted and not any((data_dir / rel).is_file() for rel in wanted):
        raise InputError("none of stage 2's listening clips is here (it builds conversations from the silent, "
                         f"reacting faces of ../shared/data: {', '.join(wanted[:3])}, ...)", path=data_dir,
                         fix="pass ../shared/data (or set ECHO_SHARED_DATA); stage 1 trains on a folder of your own")
    speech = [prepare_speech(c, space, audio_input, data_dir)
              for c in D.load_clips(data_dir, names=speech_names, space=space, use_cache=use_cache)]
    silent = []
    for rel in wanted:
        p = data_dir / rel
        if not p.is_file():
            LOG.warning("missing dyadic clip %s", p)
            continue
        try:
            silent.append(prepare_silent(p, space, audio_input, use_cache))
        except InputError as e:
            LOG.warning("skipping %s: %s", p.name, e.message)
    return speech, silent


def split_pairs(speech: list[DyadClip], silent: list[DyadClip]):
    """Training clips and held-out clips (never trained on)."""
    from echo_cli.train.data import HELD_OUT, SPEECH_CLIPS

    spk = {Path(k).stem: v for k, v in SPEECH_CLIPS.items()}
    held_sp = [c for c in speech if spk.get(c.name) in HELD_OUT]
    tr_sp = [c for c in speech if spk.get(c.name) not in HELD_OUT]
    held_si = [c for c in silent if c.name in HELD_OUT_LISTENERS]
    tr_si = [c for c in silent if c.name not in HELD_OUT_LISTENERS]
    return (tr_sp, tr_si), (held_sp, held_si)


#################################################################################
#                           Listener rules (targets)                            #
#################################################################################

def nod_curve(n: int, fps: float, amp: float, length: float) -> np.ndarray:
    """A nod: pitch goes down and back (raised cosine), n frames long at most."""
    L = max(2, int(round(length * fps)))
    c = amp * 0.5 * (1 - np.cos(2 * np.pi * np.arange(L) / (L - 1)))
    return c[:n]


def listener_targets(avatar_motion: np.ndarray, user_smile: np.ndarray, user_vad: np.ndarray,
                     sdir: np.ndarray, mouth: slice, rng: np.random.Generator, rules: RuleConfig,
                     fps: float = FPS, smile: slice | None = None) -> tuple[np.ndarray, dict]:
    """Apply rules 1–3 to a real listening window (raw motion, (N, D)); user arrays are
    aligned with it and may start earlier (their extra history comes first). smile: the
    smile region, damped toward its window median by rules.smile_keep before mirroring."""
    N = len(avatar_motion)
    H = len(user_smile) - N                               # user history frames before the window
    out = avatar_motion.copy()
    # 1. closed mouth
    out[:, mouth] *= rules.mouth_damp
    if smile is not None and rules.smile_keep != 1.0 and N:
        med = np.median(out[:, smile], axis=0, keepdims=True)
        out[:, smile] = med + rules.smile_keep * (out[:, smile] - med)
    # 2. delayed smile mirroring
    d = int(round(rng.uniform(*rules.mirror_delay) * fps))
    us = np.maximum(user_smile, 0.0)
    idx = np.arange(N) + H - d
    mirrored = np.where(idx >= 0, us[np.clip(idx, 0, None)], 0.0)
    out += rules.mirror_gain * mirrored[:, None] * sdir[None]
    # 3. backchannel nods at user pauses (onsets may lie in the history)
    nods = []
    for p in pause_onsets(user_vad, fps, rules.min_speech, rules.min_pause):
        start = p - H + int(round(rng.uniform(*rules.nod_delay) * fps))
        if start >= N:
            continue
        c = nod_curve(N - max(start, 0) + max(0, -start), fps, rules.nod_amp, rules.nod_len)
        c = c[max(0, -start):]
        s0 = max(start, 0)
        out[s0:s0 + len(c), 1] += c
        nods.append(start)
    return out, {"mirror_delay_frames": d, "nods": nods}


#################################################################################
#                                Batching                                       #
#################################################################################

class DyadicBatcher:
    """Random dyadic windows: (T_prev + T) avatar frames, user frames with `history` more."""

    def __init__(self, speech: list[DyadClip], silent: list[DyadClip], t_prev: int, window: int,
                 history: int, stats: dict, sdir: np.ndarray, mouth: slice, rules: RuleConfig = RuleConfig(),
                 p_listen: float = 0.5, silence: list[np.ndarray] | None = None, p_context_silence: float = 0.8,
                 smile: slice | None = None):
        self.N = t_prev + window
        self.H = history
        need = self.N + self.H
        self.speech = [c for c in speech if c.n_frames >= need]
        self.silent = [c for c in silent if c.n_frames >= need]
        if not self.speech or len(self.silent) < 2:
            raise InputError("not enough clips to build dyadic pairs", fix="check ../shared/data")
        self.stats, self.sdir, self.mouth, self.rules, self.p_listen = stats, sdir, mouth, rules, p_listen
        self.smile = smile
        # listening avatar audio: silence in conversation context (bank) or isolated silence
        self.silence = [w for w in (silence or []) if len(w) >= self.N]
        self.p_context_silence = p_context_silence if self.silence else 0.0

    def _norm(self, m):
        return ((m - self.stats["motion_mean"]) / self.stats["motion_std"]).astype(np.float32)

    def _win(self, c: DyadClip, rng, n):
        s = int(rng.integers(0, c.n_frames - n + 1))
        return s

    def sample(self, rng: np.random.Generator, B: int) -> dict:
        from echo_cli.lcu.lau import EMOTIONS

        N, H = self.N, self.H
        keys = ("motion", "audio", "identity", "u_audio", "u_motion", "u_beh")
        out = {k: [] for k in keys}
        out["emotion"] = []
        out["listening"] = []
        for _ in range(B):
            listening = rng.random() < self.p_listen
            if listening:
                av = self.silent[rng.integers(len(self.silent))]
                pool = self.speech + [c for c in self.silent if c.name != av.name]
                us = pool[rng.integers(len(pool))]
            else:
                av = self.speech[rng.integers(len(self.speech))]
                us = self.silent[rng.integers(len(self.silent))]
            sa = self._win(av, rng, N)
            su = self._win(us, rng, N + H)
            target = av.motion[sa:sa + N].copy()
            if listening:
                target, _ = listener_targets(target, us.smile[su:su + N + H], us.vad[su:su + N + H],
                                             self.sdir, self.mouth, rng, self.rules, smile=self.smile)
            emo = ("happy", "neutral", "sad")[int(rng.integers(3))]
            target = target + EMOTION_SMILE[emo] * self.sdir[None]
            out["motion"].append(self._norm(target))
            audio = av.gen_audio[sa:sa + N]
            if listening and rng.random() < self.p_context_silence:
                w = self.silence[int(rng.integers(len(self.silence)))]
                s0 = int(rng.integers(0, len(w) - N + 1))
                audio = w[s0:s0 + N]
            out["audio"].append(audio)
            out["identity"].append(av.identity)
            um = us.motion[su:su + N + H]
            out["u_motion"].append(self._norm(um))
            out["u_audio"].append(us.user_audio[su:su + N + H])
            out["u_beh"].append(us.behaviour[su:su + N + H])
            out["emotion"].append(EMOTIONS[emo])
            out["listening"].append(listening)
        res = {k: np.stack(out[k]).astype(np.float32) for k in keys}
        res["emotion"] = out["emotion"]
        res["listening"] = np.array(out["listening"])
        return res


#################################################################################
#                     Held-out measurements (issue 7 acceptance)                #
#################################################################################

def rule_mouth_stats(speech: list[DyadClip], silent: list[DyadClip], space, mouth: slice,
                     rules: RuleConfig = RuleConfig()) -> dict:
    """Mouth-opening std of the real speech clips, of the raw listener clips and of the
    listener targets after rule 1 (mean over clips): what listening/speaking ratio the
    stage-2 targets themselves teach."""
    sp = float(np.mean([np.std(mouth_measure(space, c.motion, c.neutral)) for c in speech]))
    raw, damped = [], []
    for c in silent:
        raw.append(np.std(mouth_measure(space, c.motion, c.neutral)))
        m = c.motion.copy()
        m[:, mouth] *= rules.mouth_damp
        damped.append(np.std(mouth_measure(space, m, c.neutral)))
    return {"speech_std": sp, "listener_raw_std": float(np.mean(raw)), "listener_target_std": float(np.mean(damped)),
            "raw_ratio": float(np.mean(raw)) / sp, "target_ratio": float(np.mean(damped)) / sp,
            "mouth_damp": rules.mouth_damp}


def _emotion_vec(name: str | None):
    from echo_cli.features.text import embed_text
    from echo_cli.lcu.lau import EMOTIONS

    return None if name is None else embed_text(EMOTIONS.get(name, name))


def _ctx(gen, lcu, user: DyadClip, us: int, n: int):
    import torch

    from echo_cli.lcu.model import user_context

    with torch.no_grad():
        m = gen.normalize(torch.from_numpy(user.motion[us:us + n])).numpy()
    return user_context(lcu, user.user_audio[us:us + n], m, user.behaviour[us:us + n])


def evaluate(gen, lcu, space, data=None, clips=None, n: int = 200, seeds=(0, 1), settings=None,
             ablate: dict | None = None) -> dict:
    """Held-out dyadic measurements in motion space (avatar motion decoded on its neutral face).

    clips: (held-out speech, held-out silent) DyadClip lists; default: built from `data`.
    ablate: {"lpe": False, "hbcu": False, "lau": False} switches for inference-time ablation.
    """
    import dataclasses

    import torch

    from echo_cli.config import RenderSettings
    from echo_cli.eval import events as EV
    from echo_cli.eval import metrics as M
    from echo_cli.generate.engine import GenerationInputs, generate_all
    from echo_cli.lcu.model import LCU

    settings = settings or RenderSettings()
    ablate = ablate or {}
    if clips is None:
        speech, silent = load_dyadic_clips(data, space, gen.cfg.audio_input)
        _, (ho_sp, ho_si) = split_pairs(speech, silent)
        # reacting users: held-out listeners first; the training listeners as extra users
        # (their windows were seen as users, never with these held-out avatars)
        users = ho_si + [c for c in silent if c.name not in HELD_OUT_LISTENERS]
    else:
        ho_sp, ho_si = clips
        users = ho_si
    if ablate.get("lpe") is False or ablate.get("hbcu") is False:
        cfg = dataclasses.replace(lcu.cfg, use_lpe=ablate.get("lpe", True), use_hbcu=ablate.get("hbcu", True))
        lcu2 = LCU(cfg)
        lcu2.load_state_dict(lcu.state_dict())
        lcu = lcu2.eval()
    use_lau = ablate.get("lau", True)
    avatars = [c for c in ho_sp if c.n_frames >= n]
    talkers = [c for c in ho_sp if c.n_frames >= n]
    res: dict = {"held_out_avatars": [c.name for c in avatars], "users": [c.name for c in users],
                 "frames": n, "seeds": list(seeds), "space": "motion (decoded on the avatar's neutral)"}

    def gen_motion(av: DyadClip, audio, ctx, emo, seed, listening: bool):
        # the quiet gate (models with cfg.quiet_gate): the listening audio is digital silence
        # (-100 dBFS) around the avatar's gated speech; its own speech clips are recordings
        # (never below the gate's -60 dBFS for more than a blip), left as they are
        quiet = None
        if listening:
            audio, quiet = gen.gate_audio(audio, np.full(len(audio), -100.0, np.float32))
        inp = GenerationInputs(audio=audio, identity=av.identity, n_frames=len(audio), user_ctx=ctx, quiet=quiet,
                               emotion=_emotion_vec(emo) if use_lau else None)
        return generate_all(gen, inp, settings, seed=seed)

    # the avatar's audio while it listens: its own track in a conversation (its speech
    # gated to digital silence for n frames after 2 s), as a render feeds it; isolated
    # silence when the clip's audio is not at hand (tests with pre-built clips)
    iso_silence, _, _ = silence_features(n, gen.cfg.audio_input)
    data_dir = None
    if clips is None:
        from echo_cli.train.data import shared_data_dir
        data_dir = Path(data) if data else shared_data_dir()
    _sil: dict = {}

    def silence(av: DyadClip, k: int) -> np.ndarray:
        if av.name not in _sil:
            wave = clip_wave(av.name, data_dir) if data_dir is not None else None
            a0 = int(2 * FPS)
            if wave is None or av.n_frames < a0 + n:
                _sil[av.name] = iso_silence
            else:
                gate = np.zeros(av.n_frames, bool)
                gate[a0:a0 + n] = True
                _sil[av.name] = gated_features(wave, gate, gen.cfg.audio_input)[a0:a0 + n]
        return _sil[av.name][:k]

    res["listening_audio"] = "silence in context (own speech gated)" if data_dir is not None else "isolated silence"
    # 1. listening vs speaking mouth std
    ratios, lipcorr = [], []
    listen_runs = []
    for av in avatars:
        other = [c for c in talkers if c.name != av.name] or talkers
        talker = other[0]
        lis_user = users[0]
        for seed in seeds:
            sp = gen_motion(av, av.gen_audio[:n], _ctx(gen, lcu, lis_user, 0, n), "neutral", seed, False)
            ls = gen_motion(av, silence(av, n), _ctx(gen, lcu, talker, 0, n), "neutral", seed, True)
            m_sp, m_ls = mouth_measure(space, sp, av.neutral), mouth_measure(space, ls, av.neutral)
            ratios.append(float(np.std(m_ls) / max(np.std(m_sp), 1e-9)))
            lipcorr.append(M.pearson(m_sp, mouth_measure(space, av.motion[:n], av.neutral)))
            listen_runs.append((av, talker, ls))
    res["mouth_std_ratio"] = float(np.mean(ratios)) if ratios else float("nan")
    res["mouth_std_ratio_max"] = float(np.max(ratios)) if ratios else float("nan")
    res["lip_sync_pcc"] = float(np.nanmean(lipcorr)) if lipcorr else float("nan")

    # 2. reactions: smiling vs neutral user windows (by the user's measured smile), 4 s each
    W = min(n, 100)
    # smile of a window = its mean smile width above the user's own 10th percentile (their
    # resting mouth); the most and least smiling windows are the smiling / neutral users
    cands = []
    for u in users:
        if u.n_frames < W:
            continue
        rest = float(np.percentile(u.smile, 10))
        for s in range(0, u.n_frames - W + 1, W // 4):
            cands.append((float(np.mean(u.smile[s:s + W])) - rest, u, s))
    cands.sort(key=lambda x: x[0])
    k = max(1, min(4, len(cands) // 3))
    neutral_w, smiling_w = cands[:k], cands[-k:]
    wins, diffs, sds = [], [], []
    emo_wins = []
    for av in avatars:
        for (s_sm, u_sm, st_sm), (s_ne, u_ne, st_ne) in zip(smiling_w, neutral_w):
            for seed in seeds:
                a = gen_motion(av, silence(av, W), _ctx(gen, lcu, u_sm, st_sm, W), "neutral", seed, True)
                b = gen_motion(av, silence(av, W), _ctx(gen, lcu, u_ne, st_ne, W), "neutral", seed, True)
                sa_, sb_ = smile_measure(space, a, av.neutral), smile_measure(space, b, av.neutral)
                sds += [float(np.std(sa_)), float(np.std(sb_))]
                d = float(np.mean(sa_) - np.mean(sb_))
                diffs.append(d)
                wins.append(d > 0)
    res["reaction_smile_win_rate"] = float(np.mean(wins)) if wins else float("nan")
    # effect sizes beside real faces: how much more the users smile (the cause), and the
    # avatar's own frame-to-frame smile variability (what the difference must stand out of)
    res["reaction_user_smile_diff"] = float(np.mean([v for v, _, _ in smiling_w]) - np.mean([v for v, _, _ in neutral_w]))
    res["reaction_avatar_smile_sd"] = float(np.mean(sds)) if sds else float("nan")
    res["reaction_smile_mean_diff"] = float(np.mean(diffs)) if diffs else float("nan")
    res["reaction_pairs"] = len(wins)
    res["smiling_users"] = [f"{u.name}@{s / FPS:.1f}s (smile {v:+.3f})" for v, u, s in smiling_w]
    res["neutral_users"] = [f"{u.name}@{s / FPS:.1f}s (smile {v:+.3f})" for v, u, s in neutral_w]

    # 3. nod / smile ONSETS following user smile onsets and pauses at 0.2-1.5 s, against
    # circularly shifted user events (eval/events.py): listening to the held-out talkers
    # (pauses) and to reacting users (smiles), n frames each
    follow_seqs = []
    follow_runs = [(av, t, 0, ls) for (av, t, ls) in listen_runs] + \
                  [(av, u, 0, None) for av in avatars for u in users[:4] if u.n_frames >= n]
    for av, u, st, pre in follow_runs:
        m = pre if pre is not None else gen_motion(av, silence(av, n), _ctx(gen, lcu, u, st, n), "neutral", seeds[0], True)
        a_ev = EV.avatar_events(m[:, 1], smile_measure(space, m, av.neutral), FPS)
        u_ev = EV.user_events(FPS, len(m), u.smile[st:st + len(m)], FPS,
                              EV.pause_times(u.vad[st:st + len(m)], FPS))
        follow_seqs.append((u_ev, a_ev, len(m)))
    fr = EV.follow_test(follow_seqs, FPS, n_shifts=2000)
    res["follow_rate"], res["follow_chance"], res["follow_p"] = fr["rate"], fr["chance"], fr["p"]
    res["follow_events"] = fr["n_user_events"]
    res["follow_avatar_events_per_s"] = fr["avatar_rate_per_s"]

    # 4. emotion: happy vs sad on the same inputs
    if use_lau:
        for av in avatars:
            for audio, listening, (_, u, st) in ((av.gen_audio[:W], False, neutral_w[0]),
                                                 (silence(av, W), True, neutral_w[0]),
                                                 (silence(av, W), True, smiling_w[-1])):
                for seed in seeds:
                    ctx = _ctx(gen, lcu, u, st, W)
                    h = gen_motion(av, audio, ctx, "happy", seed, listening)
                    s_ = gen_motion(av, audio, ctx, "sad", seed, listening)
                    emo_wins.append(float(np.mean(smile_measure(space, h, av.neutral))
                                          - np.mean(smile_measure(space, s_, av.neutral))))
        res["emotion_happy_gt_sad_rate"] = float(np.mean([d > 0 for d in emo_wins])) if emo_wins else float("nan")
        res["emotion_mean_diff"] = float(np.mean(emo_wins)) if emo_wins else float("nan")
        res["emotion_target_diff"] = EMOTION_SMILE["happy"] - EMOTION_SMILE["sad"]

    # 5. paper-style metrics on listening generations: rPCC vs the rule target, SID, Var
    feats, pcc_g, pcc_r = [], [], []
    rng = np.random.default_rng(0)
    for av, talker, ls in listen_runs:
        sl = np.r_[0:3, space.regions["smile"].start:space.regions["smile"].stop]
        real, _ = listener_targets(np.zeros_like(ls), talker.smile[:n], talker.vad[:n],
                                   smile_direction(space), slice(*gen.cfg.regions["mouth"]), rng, RuleConfig())
        partner = talker.motion[:n][:, sl]
        r = M.rpcc(ls[:, sl], partner, real[:, sl])
        pcc_g.append(r["pcc"]); pcc_r.append(r["pcc_real"])
        feats.append(ls[:, sl])
    if feats:
        F_ = np.concatenate(feats)
        res["rpcc"] = float(abs(np.nanmean(pcc_r) - np.nanmean(pcc_g)))
        res["sid"] = M.sid(F_, k=20)
        res["var"] = M.motion_variance(F_)
    return res


def main(argv: list[str] | None = None) -> None:
    """python -m echo_cli.train.dyadic --checkpoint CKPT [--ablate lpe,hbcu,lau] [--json OUT]"""
    import argparse
    import json

    import torch

    from echo_cli.motion.space import default_space
    from echo_cli.train.stage2 import load_stage2

    p = argparse.ArgumentParser(prog="python -m echo_cli.train.dyadic", description="held-out dyadic measurements")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--ablate", default="", help="comma list of lpe, hbcu, lau to switch off at inference")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--json", default=None)
    p.add_argument("--set", action="append", default=[], help="render setting key=value, e.g. cfg_user=2")
    p.add_argument("--rule-stats", action="store_true", help="only print what ratio the listener targets teach")
    a = p.parse_args(argv)
    log.setup(0)
    torch.set_num_threads(1)
    if a.rule_stats:
        space = default_space()
        sp, si = load_dyadic_clips(space=space, audio_input="mel")
        (tr_sp, tr_si), _ = split_pairs(sp, si)
        mouth = space.regions["mouth"]
        for damp in (0.35, RuleConfig().mouth_damp):
            print(json.dumps(rule_mouth_stats(tr_sp, tr_si, space, mouth, RuleConfig(mouth_damp=damp))))
        return
    if a.checkpoint is None:
        from echo_cli.api.render import default_checkpoint
        a.checkpoint = default_checkpoint()
    gen, lcu, _ = load_stage2(a.checkpoint)
    abl = {k: False for k in a.ablate.split(",") if k}
    from echo_cli.config import RenderSettings
    over = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    res = evaluate(gen, lcu, default_space(), n=a.frames, ablate=abl, settings=RenderSettings(**over))
    res["settings"] = over
    text = json.dumps(res, indent=2, sort_keys=True)
    print(text)
    if a.json:
        from echo_cli.io_atomic import write_text
        write_text(a.json, text + "\n")


if __name__ == "__main__":
    main()
