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
    1. closed mouth: a listener's articulation is damped toward its neutral (× mouth_damp);
    2. delayed smile mirroring: the avatar's smile follows the user's smile (above its own
       median) after a delay drawn in 0.2–1.5 s (facial mimicry latencies; Dimberg et al.
       2000; Hess & Fischer 2013), with gain `mirror_gain`;
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
    mouth_damp: float = 0.35         # listener articulation kept (fraction of the real clip's)
    mirror_gain: float = 0.8         # avatar smile per unit of user smile
    mirror_delay: tuple = (0.2, 1.5) # seconds, drawn per sample
    nod_amp: float = 0.07            # radians of pitch at the nod's peak
    nod_len: float = 0.5             # seconds
    nod_delay: tuple = (0.2, 0.6)    # seconds after the pause onset
    min_speech: float = 0.8          # seconds of speech before a pause that invites a nod
    min_pause: float = 0.25          # seconds


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
    from echo_cli.features.audio import audio_features

    want_whisper = audio_input != "mel"
    key = "whisper" if want_whisper else "mel"
    if key not in _SILENCE:
        ck = cache_dir() / f"silence-{key}-{CACHE_VERSION}.npz"
        if ck.is_file():
            z = np.load(ck)
            _SILENCE[key] = {k: z[k] for k in z.files}
        else:
            f = audio_features(np.zeros(int(16000 * 4.0), np.float32), FPS, whisper=want_whisper, n_frames=100)
            d = {"mel": f.mel, "energy": f.energy,
                 "whisper": f.whisper if f.whisper is not None else np.zeros((100, 512), np.float32)}
            np.savez(ck, **d)
            _SILENCE[key] = d
    f = _SILENCE[key]
    # silence is stationary: tile its middle frame
    row = {k: v[50] for k, v in f.items()}
    mel = np.tile(row["mel"], (n, 1)); wh = np.tile(row["whisper"], (n, 1))
    gen = {"mel": mel, "whisper": wh, "whisper+mel": np.concatenate([wh, mel], 1)}[audio_input]
    return gen.astype(np.float32), mel.astype(np.float32), np.full(n, float(row["energy"]), np.float32)


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
    if audio_input == "mel":
        gen = c.mel
    elif audio_input == "whisper":
        gen = c.whisper
    else:
        gen = np.concatenate([c.whisper, c.mel], 1)
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
    speech = [prepare_speech(c, space, audio_input, data_dir)
              for c in D.load_clips(data_dir, names=speech_names, space=space, use_cache=use_cache)]
    silent = []
    for rel in SILENT_CLIPS:
        p = data_dir / rel
        if silent_names and p.stem not in silent_names:
            continue
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

def pause_onsets(vad: np.ndarray, fps: float, min_speech: float, min_pause: float) -> list[int]:
    """Frames where the user stops after ≥ min_speech s of speech, for ≥ min_pause s."""
    out, run = [], 0
    ms, mp = int(round(min_speech * fps)), int(round(min_pause * fps))
    for i in range(1, len(vad)):
        run = run + 1 if vad[i - 1] else 0
        if vad[i - 1] and not vad[i] and run >= ms and not vad[i:i + mp].any() and i + mp <= len(vad):
            out.append(i)
    return out


def nod_curve(n: int, fps: float, amp: float, length: float) -> np.ndarray:
    """A nod: pitch goes down and back (raised cosine), n frames long at most."""
    L = max(2, int(round(length * fps)))
    c = amp * 0.5 * (1 - np.cos(2 * np.pi * np.arange(L) / (L - 1)))
    return c[:n]


def listener_targets(avatar_motion: np.ndarray, user_smile: np.ndarray, user_vad: np.ndarray,
                     sdir: np.ndarray, mouth: slice, rng: np.random.Generator, rules: RuleConfig,
                     fps: float = FPS) -> tuple[np.ndarray, dict]:
    """Apply rules 1–3 to a real listening window (raw motion, (N, D)); user arrays are
    aligned with it and may start earlier (their extra history comes first)."""
    N = len(avatar_motion)
    H = len(user_smile) - N                               # user history frames before the window
    out = avatar_motion.copy()
    # 1. closed mouth
    out[:, mouth] *= rules.mouth_damp
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
                 p_listen: float = 0.5):
        self.N = t_prev + window
        self.H = history
        need = self.N + self.H
        self.speech = [c for c in speech if c.n_frames >= need]
        self.silent = [c for c in silent if c.n_frames >= need]
        if not self.speech or len(self.silent) < 2:
            raise InputError("not enough clips to build dyadic pairs", fix="check ../shared/data")
        self.stats, self.sdir, self.mouth, self.rules, self.p_listen = stats, sdir, mouth, rules, p_listen

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
                                             self.sdir, self.mouth, rng, self.rules)
            emo = ("happy", "neutral", "sad")[int(rng.integers(3))]
            target = target + EMOTION_SMILE[emo] * self.sdir[None]
            out["motion"].append(self._norm(target))
            out["audio"].append(av.gen_audio[sa:sa + N])
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

def _events_up(x: np.ndarray, thr: float, refractory: int) -> list[int]:
    """Frames where x rises above thr (onsets), at least `refractory` frames apart."""
    above = x > thr
    on = [i for i in range(1, len(x)) if above[i] and not above[i - 1]]
    out = []
    for i in on:
        if not out or i - out[-1] >= refractory:
            out.append(i)
    return out


def nod_events(pitch: np.ndarray, fps: float, thr: float = 0.03) -> list[int]:
    """Nod onsets: the high-passed pitch (minus its 1 s moving average) leaves ±thr, where
    thr is at least 3× the sequence's median deviation (so ordinary head sway is no nod)."""
    k = max(3, int(fps))
    hp = pitch - np.convolve(np.pad(pitch, k // 2, mode="edge"), np.ones(k) / k, "valid")[:len(pitch)]
    thr = max(thr, 3.0 * float(np.median(np.abs(hp))))
    return _events_up(np.abs(hp), thr, int(fps))


def follow_rate(user_events: list[int], avatar_events: list[int], n: int, fps: float,
                lo: float = 0.2, hi: float = 1.5, n_shifts: int = 50, seed: int = 0) -> dict:
    """Fraction of user events followed by an avatar event within [lo, hi] s, and the same
    for the user events circularly shifted at random (chance)."""
    a = np.zeros(n + 1, bool)
    a[np.asarray(avatar_events, int)] = True
    cs = np.concatenate([[0], np.cumsum(a)])
    L, Hh = int(round(lo * fps)), int(round(hi * fps))

    def rate(ev):
        ev = [e for e in ev if e + Hh < n]
        if not ev:
            return float("nan"), 0
        hits = [cs[e + Hh + 1] - cs[e + L] > 0 for e in ev]
        return float(np.mean(hits)), len(ev)

    r, k = rate(user_events)
    rng = np.random.default_rng(seed)
    chance = [rate([(e + int(rng.integers(int(2 * fps), max(int(2 * fps) + 1, n - int(2 * fps)))) ) % n
                    for e in user_events])[0] for _ in range(n_shifts)]
    chance = [c for c in chance if np.isfinite(c)]
    return {"rate": r, "chance": float(np.mean(chance)) if chance else float("nan"), "n_events": k}


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

    def gen_motion(av: DyadClip, audio, ctx, emo, seed):
        inp = GenerationInputs(audio=audio, identity=av.identity, n_frames=len(audio), user_ctx=ctx,
                               emotion=_emotion_vec(emo) if use_lau else None)
        return generate_all(gen, inp, settings, seed=seed)

    silence_gen, _, _ = silence_features(n, gen.cfg.audio_input)
    # 1. listening vs speaking mouth std
    ratios, lipcorr = [], []
    listen_runs = []
    for av in avatars:
        other = [c for c in talkers if c.name != av.name] or talkers
        talker = other[0]
        lis_user = users[0]
        for seed in seeds:
            sp = gen_motion(av, av.gen_audio[:n], _ctx(gen, lcu, lis_user, 0, n), "neutral", seed)
            ls = gen_motion(av, silence_gen, _ctx(gen, lcu, talker, 0, n), "neutral", seed)
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
    wins, diffs = [], []
    emo_wins = []
    for av in avatars:
        for (s_sm, u_sm, st_sm), (s_ne, u_ne, st_ne) in zip(smiling_w, neutral_w):
            for seed in seeds:
                a = gen_motion(av, silence_gen, _ctx(gen, lcu, u_sm, st_sm, W), "neutral", seed)
                b = gen_motion(av, silence_gen, _ctx(gen, lcu, u_ne, st_ne, W), "neutral", seed)
                d = float(np.mean(smile_measure(space, a, av.neutral)) - np.mean(smile_measure(space, b, av.neutral)))
                diffs.append(d)
                wins.append(d > 0)
    res["reaction_smile_win_rate"] = float(np.mean(wins)) if wins else float("nan")
    res["reaction_smile_mean_diff"] = float(np.mean(diffs)) if diffs else float("nan")
    res["reaction_pairs"] = len(wins)
    res["smiling_users"] = [f"{u.name}@{s / FPS:.1f}s (smile {v:+.3f})" for v, u, s in smiling_w]
    res["neutral_users"] = [f"{u.name}@{s / FPS:.1f}s (smile {v:+.3f})" for v, u, s in neutral_w]

    # 3. nod / smile following user smiles and pauses at 0.2-1.5 s
    ev_rates, ev_chance, n_ev = [], [], 0
    follow_runs = [(av, u, st, None) for av in avatars for (_, u, st) in smiling_w] + \
                  [(av, t, 0, ls) for (av, t, ls) in listen_runs]
    for av, u, st, pre in follow_runs:
        m = pre if pre is not None else gen_motion(av, silence_gen, _ctx(gen, lcu, u, st, W), "neutral", seeds[0])
        sm = smile_measure(space, m, av.neutral)
        a_ev = sorted(set(nod_events(m[:, 1], FPS) + _events_up(sm - np.median(sm), 0.03, int(FPS))))
        u_ev = pause_onsets(u.vad[st:st + W], FPS, 0.8, 0.25) + _events_up(u.smile[st:st + W], 0.035, int(FPS))
        fr = follow_rate(sorted(u_ev), a_ev, len(m), FPS)
        if np.isfinite(fr["rate"]):
            ev_rates.append(fr["rate"] * fr["n_events"]); ev_chance.append(fr["chance"] * fr["n_events"])
            n_ev += fr["n_events"]
    res["follow_rate"] = float(np.sum(ev_rates) / n_ev) if n_ev else float("nan")
    res["follow_chance"] = float(np.sum(ev_chance) / n_ev) if n_ev else float("nan")
    res["follow_events"] = n_ev

    # 4. emotion: happy vs sad on the same inputs
    if use_lau:
        for av in avatars:
            for audio, (_, u, st) in ((av.gen_audio[:W], neutral_w[0]), (silence_gen, neutral_w[0]),
                                      (silence_gen, smiling_w[-1])):
                for seed in seeds:
                    ctx = _ctx(gen, lcu, u, st, W)
                    h = gen_motion(av, audio, ctx, "happy", seed)
                    s_ = gen_motion(av, audio, ctx, "sad", seed)
                    emo_wins.append(float(np.mean(smile_measure(space, h, av.neutral))
                                          - np.mean(smile_measure(space, s_, av.neutral))))
        res["emotion_happy_gt_sad_rate"] = float(np.mean([d > 0 for d in emo_wins])) if emo_wins else float("nan")
        res["emotion_mean_diff"] = float(np.mean(emo_wins)) if emo_wins else float("nan")

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
    a = p.parse_args(argv)
    log.setup(0)
    torch.set_num_threads(1)
    if a.checkpoint is None:
        from echo_cli.api.render import default_checkpoint
        a.checkpoint = default_checkpoint()
    gen, lcu, _ = load_stage2(a.checkpoint)
    abl = {k: False for k in a.ablate.split(",") if k}
    res = evaluate(gen, lcu, default_space(), n=a.frames, ablate=abl)
    text = json.dumps(res, indent=2, sort_keys=True)
    print(text)
    if a.json:
        from echo_cli.io_atomic import write_text
        write_text(a.json, text + "\n")


if __name__ == "__main__":
    main()
