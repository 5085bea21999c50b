"""HBCU, high-level behavioural context: per-window descriptions of the user → S_usr.

ECHO prompts a multimodal understanding model with the user's video and audio ("understand
user behaviours …") and takes its tokens as S_usr. We keep the idea with a measurable,
offline describer: for each window (default 1 s) the user's behaviour is *measured* from
the face motion and the audio, and written as a short sentence:

    "The user is silent, smiling and nodding."     "The user is speaking, looking away."

The sentence is embedded with MiniLM (384-d) and broadcast over the window's frames: that
is S_usr, which lcu.fusion aligns and fuses with P_usr.

Measures per frame (scale-free, relative to the user's own median so identities compare):
  smile   lip-corner distance / inter-ocular distance (motion.measures.smile_width), minus
          the clip median; mouth  inner-lip gap (measures.mouth_opening);
  yaw, pitch (radians) from the motion vector's pose part; speech from the VAD.
Window rules (thresholds in HBCUConfig): speaking if VAD ≥ half the window, else silent;
smiling if mean smile > smile_thr; laughing if smiling with the mouth open and voice
energy; nodding / shaking if the detrended pitch / yaw swings by more than nod_thr /
shake_thr and dominates the other axis; looking away if the head is turned beyond away_thr
from its median for most of the window.

Pluggable describer: anything with `describe(cues: list[WindowCues], media) -> list[str]`.
`EndpointDescriber` sends the measured cues (text only) to an OpenAI-compatible chat
endpoint, and video frames only when `send_media=True`; it is used only when configured
(HBCUConfig.endpoint or ECHO_HBCU_ENDPOINT) and falls back to the built-in describer on
any failure. Nothing here needs the network by default.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

import numpy as np

from echo_cli import log

_log = log.get("echo_cli.lcu.hbcu")

BEHAVIOURS = ("speaking", "silent", "smiling", "laughing", "nodding", "shaking head", "looking away")


@dataclass(frozen=True)
class HBCUConfig:
    window_s: float = 1.0          # seconds per behaviour window
    smile_thr: float = 0.035       # smile width above the user's median (inter-ocular units)
    laugh_mouth_thr: float = 0.12  # mouth opening for a laugh (with smiling and voice)
    nod_thr: float = 0.05          # peak-to-peak detrended pitch in a window (radians, ~3°)
    shake_thr: float = 0.08        # peak-to-peak detrended yaw (radians, ~4.5°)
    away_thr: float = 0.30         # head turned from its median (radians, ~17°)
    speak_frac: float = 0.5        # VAD fraction of a window that counts as speaking
    endpoint: str | None = None    # OpenAI-compatible base URL (…/v1) for an external describer
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    send_media: bool = False       # send sampled video frames to the endpoint (off: cues only)
    timeout_s: float = 20.0

    @classmethod
    def from_env(cls) -> "HBCUConfig":
        return cls(endpoint=os.environ.get("ECHO_HBCU_ENDPOINT") or None,
                   model=os.environ.get("ECHO_HBCU_MODEL", "gpt-4o-mini"),
                   send_media=os.environ.get("ECHO_HBCU_SEND_MEDIA", "0") == "1")


#################################################################################
#                                Signals                                        #
#################################################################################

@dataclass
class BehaviourSignals:
    """Per-frame measures of one user (T frames at fps)."""
    fps: float
    smile: np.ndarray      # (T,) smile width relative to the user's median
    mouth: np.ndarray      # (T,) mouth opening
    yaw: np.ndarray        # (T,) radians
    pitch: np.ndarray      # (T,) radians
    vad: np.ndarray        # (T,) bool
    energy: np.ndarray     # (T,) dB

    @property
    def n_frames(self) -> int:
        return int(self.smile.shape[0])


def signals_from_motion(motion: np.ndarray, space, neutral: np.ndarray, fps: float,
                        energy: np.ndarray | None = None, vad: np.ndarray | None = None) -> BehaviourSignals:
    """MotionSpace motion (T, D) of the user + its neutral face (+ audio) → BehaviourSignals."""
    from echo_cli.motion import measures

    motion = np.asarray(motion, np.float32)
    T = motion.shape[0]
    canon = space.decode(motion, neutral)                                  # (T, 478, 3)
    sw = measures.smile_width(canon)
    smile = sw - np.median(sw)
    mouth = measures.mouth_opening(canon)
    pose = motion[:, space.regions["pose"]]
    energy = np.full(T, -80.0, np.float32) if energy is None else _fit(np.asarray(energy, np.float32), T, -80.0)
    vad = np.zeros(T, bool) if vad is None else _fit(np.asarray(vad, bool), T, False)
    return BehaviourSignals(fps=float(fps), smile=smile.astype(np.float32), mouth=mouth.astype(np.float32),
                            yaw=pose[:, 0].astype(np.float32), pitch=pose[:, 1].astype(np.float32),
                            vad=vad, energy=energy)


def _fit(x: np.ndarray, T: int, fill) -> np.ndarray:
    """Trim or pad (with `fill`) a per-frame array to T frames (audio and video lengths differ)."""
    if len(x) >= T:
        return x[:T]
    return np.concatenate([x, np.full(T - len(x), fill, dtype=x.dtype)])


def user_audio_features(mel: np.ndarray, energy: np.ndarray, vad: np.ndarray | None = None) -> np.ndarray:
    """(T, 82) LPE audio input: log-mel scaled to about unit range, energy in 0..1, VAD 0/1."""
    mel = np.asarray(mel, np.float32)
    T = mel.shape[0]
    e = _fit(np.asarray(energy, np.float32), T, -80.0)
    v = np.zeros(T, np.float32) if vad is None else _fit(np.asarray(vad, np.float32), T, 0.0)
    m = (mel - mel.mean()) / (mel.std() + 1e-6) if mel.size else mel
    return np.concatenate([m, np.clip((e[:, None] + 80.0) / 80.0, 0, 1.5), v[:, None]], 1).astype(np.float32)


#################################################################################
#                                Window cues                                    #
#################################################################################

@dataclass
class WindowCues:
    t0: float                     # seconds
    t1: float
    start: int                    # frames [start, stop)
    stop: int
    flags: dict[str, bool]        # behaviour -> present
    values: dict[str, float]      # the measures behind the flags (for --explain and endpoints)


def window_cues(sig: BehaviourSignals, cfg: HBCUConfig | None = None) -> list[WindowCues]:
    cfg = cfg or HBCUConfig()
    W = max(1, int(round(cfg.window_s * sig.fps)))
    med_yaw, med_pitch = float(np.median(sig.yaw)), float(np.median(sig.pitch))
    out = []
    for s in range(0, sig.n_frames, W):
        e = min(sig.n_frames, s + W)
        sl = slice(s, e)
        n = e - s
        x = np.arange(n, dtype=np.float64)

        def swing(v):
            """Peak-to-peak of the detrended angle; 0 unless it goes back and forth (an
            oscillation crosses its trend line at least twice; a plain head turn does not)."""
            v = v.astype(np.float64)
            if n < 3:
                return 0.0
            v = v - np.polyval(np.polyfit(x, v, 1), x)          # remove slow drift / turns
            crossings = int((np.diff(np.sign(v[np.abs(v) > 0.15 * np.abs(v).max()])) != 0).sum())
            return float(v.max() - v.min()) if crossings >= 2 else 0.0

        speak = float(sig.vad[sl].mean()) >= cfg.speak_frac
        smile = float(sig.smile[sl].mean())
        mouth = float(sig.mouth[sl].mean())
        energy = float(sig.energy[sl].mean())
        p_sw, y_sw = swing(sig.pitch[sl]), swing(sig.yaw[sl])
        away = float(np.mean((np.abs(sig.yaw[sl] - med_yaw) > cfg.away_thr)
                             | (np.abs(sig.pitch[sl] - med_pitch) > cfg.away_thr)))
        smiling = smile > cfg.smile_thr
        voiced = float(sig.vad[sl].mean()) > 0.2 or energy > -35.0
        flags = {
            "speaking": speak,
            "silent": not speak,
            "smiling": smiling,
            "laughing": smiling and mouth > cfg.laugh_mouth_thr and voiced,
            "nodding": p_sw > cfg.nod_thr and p_sw >= 1.2 * y_sw,
            "shaking head": y_sw > cfg.shake_thr and y_sw >= 1.2 * p_sw,
            "looking away": away > 0.5,
        }
        out.append(WindowCues(s / sig.fps, e / sig.fps, s, e, flags,
                              {"smile": smile, "mouth": mouth, "pitch_swing": p_sw, "yaw_swing": y_sw,
                               "away_frac": away, "vad_frac": float(sig.vad[sl].mean()), "energy_db": energy}))
    return out


def cue_sentence(c: WindowCues) -> str:
    """Built-in description of one window."""
    head = "speaking" if c.flags["speaking"] else "silent"
    acts = []
    if c.flags["laughing"]:
        acts.append("laughing")
    elif c.flags["smiling"]:
        acts.append("smiling")
    for k in ("nodding", "shaking head", "looking away"):
        if c.flags[k]:
            acts.append("shaking their head" if k == "shaking head" else k)
    if not acts:
        return f"The user is {head}, with a neutral and still face."
    body = acts[0] if len(acts) == 1 else ", ".join(acts[:-1]) + " and " + acts[-1]
    return f"The user is {head}, {body}."


#################################################################################
#                                Describers                                     #
#################################################################################

class Describer(Protocol):
    name: str

    def describe(self, cues: Sequence[WindowCues], media: str | None = None) -> list[str]: ...


class BuiltinDescriber:
    """Rule-based sentences from the measured cues (offline, deterministic)."""
    name = "builtin"

    def describe(self, cues: Sequence[WindowCues], media: str | None = None) -> list[str]:
        return [cue_sentence(c) for c in cues]


_PROMPT = ("You describe a user's behaviour in a video call, one short sentence per time window, "
           "starting with 'The user is'. Focus on: speaking or silent, smiling, laughing, nodding, "
           "shaking the head, looking away. Answer with a JSON list of strings, one per window.")


class EndpointDescriber:
    """An OpenAI-compatible multimodal chat endpoint (only when configured)."""
    name = "endpoint"

    def __init__(self, cfg: HBCUConfig):
        if not cfg.endpoint:
            raise ValueError("EndpointDescriber needs HBCUConfig.endpoint")
        self.cfg = cfg

    def _frames(self, media: str, cues: Sequence[WindowCues]) -> list[str]:
        """One JPEG (base64) per window, from the middle of the window (only with send_media)."""
        import cv2

        from echo_cli.media.video_io import iter_frames

        fps = (cues[0].stop - cues[0].start) / max(1e-6, cues[0].t1 - cues[0].t0)
        want = {int((c.start + c.stop) // 2): i for i, c in enumerate(cues)}
        out = [""] * len(cues)
        for k, fr in enumerate(iter_frames(media, fps=fps, size=256)):
            if k in want:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(fr, cv2.COLOR_RGB2BGR))
                if ok:
                    out[want[k]] = base64.b64encode(buf.tobytes()).decode()
            if k > max(want):
                break
        return out

    def describe(self, cues: Sequence[WindowCues], media: str | None = None) -> list[str]:
        cfg = self.cfg
        measured = [{"t0": round(c.t0, 2), "t1": round(c.t1, 2),
                     "measured": [k for k, v in c.flags.items() if v],
                     **{k: round(v, 3) for k, v in c.values.items()}} for c in cues]
        content: list = [{"type": "text", "text": json.dumps(measured)}]
        if cfg.send_media and media:
            for b64 in self._frames(media, cues):
                if b64:
                    content.append({"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64}"}})
        from echo_cli.lcu.endpoint import chat

        texts = json.loads(chat(cfg, _PROMPT, content))
        if not isinstance(texts, list) or len(texts) != len(cues):
            raise ValueError("endpoint answered a list of the wrong length")
        return [str(t)[:300] for t in texts]


def make_describer(cfg: HBCUConfig | None = None) -> Describer:
    cfg = cfg or HBCUConfig()
    return EndpointDescriber(cfg) if cfg.endpoint else BuiltinDescriber()


#################################################################################
#                                Public API                                     #
#################################################################################

@dataclass
class BehaviourWindow:
    t0: float
    t1: float
    start: int
    stop: int
    text: str
    source: str
    flags: dict[str, bool] = field(default_factory=dict)


def describe_behaviour(sig: BehaviourSignals, cfg: HBCUConfig | None = None,
                       describer: Describer | None = None, media: str | None = None) -> list[BehaviourWindow]:
    """Per-window behaviour sentences (built-in unless an endpoint is configured)."""
    cfg = cfg or HBCUConfig()
    cues = window_cues(sig, cfg)
    describer = describer or make_describer(cfg)
    source = describer.name
    try:
        texts = describer.describe(cues, media)
    except Exception as e:  # network / HTTP / JSON errors: never fatal, fall back
        _log.warning("behaviour describer '%s' failed (%s); using the built-in one", describer.name, e)
        texts, source = BuiltinDescriber().describe(cues), "builtin"
    return [BehaviourWindow(c.t0, c.t1, c.start, c.stop, t, source, dict(c.flags)) for c, t in zip(cues, texts)]


NO_USER_TEXT = "There is no user in view."


def behaviour_embeddings(windows: Sequence[BehaviourWindow], n_frames: int) -> np.ndarray:
    """S_usr per frame: (n_frames, 384), each window's sentence embedding over its frames."""
    from echo_cli.features.text import TEXT_DIM, embed_texts

    out = np.zeros((n_frames, TEXT_DIM), np.float32)
    if not windows:
        return out
    emb = embed_texts([w.text for w in windows])
    for w, e in zip(windows, emb):
        out[w.start:min(w.stop, n_frames)] = e
    last = max(w.stop for w in windows)
    if last < n_frames:                                   # frames past the last window: no user
        out[last:] = embed_texts([NO_USER_TEXT])[0]
    return out


def summarize(windows: Sequence[BehaviourWindow]) -> dict[str, float]:
    """Fraction of windows showing each behaviour (for --explain and eval)."""
    if not windows:
        return {b: 0.0 for b in BEHAVIOURS}
    return {b: float(np.mean([w.flags.get(b, False) for w in windows])) for b in BEHAVIOURS}
