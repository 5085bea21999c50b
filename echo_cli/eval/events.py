"""Listener-reaction timing: does an avatar nod or smile *follow* the user's smiles and pauses?

The question (issue 7): "an avatar nod or smile follows a user's smile or pause with a delay
of 0.2–1.5 s more often than chance". A loose event detector makes this meaningless: if the
avatar has some event in almost every 1.3 s window, the observed rate and the chance rate
are both ≈ 1 (the first version measured 1.00 vs 0.997). So:

- events are ONSETS, sparse by construction: a nod onset is the first frame where the
  head-pitch *velocity* exceeds a threshold (a robust z above the sequence's own velocity
  noise and an absolute floor), with a refractory period; a smile onset is the first frame
  where the smile measure has risen by more than a threshold over the previous 0.4 s (again
  with a robust floor); a pause onset is where the user's voice stops after ≥ 0.8 s of
  speech (`pause_onsets`, which the stage-2 rules use too). Continuous sway and slow drift make no events.
- the statistic: the fraction of user events followed by ≥ 1 avatar event within
  [lo, hi] s (default 0.2–1.5 s);
- chance: the same fraction after circularly shifting each sequence's user events by a
  random offset (at least `min_shift_s` away from 0, so a real follower is not counted as
  chance), many times; chance = mean over shifts, p = (1 + #{shifted ≥ observed}) /
  (1 + shifts). Shifting keeps the user's event count and spacing and the avatar's own
  event train, so the null is "same event rates, no timing relation". Several sequences
  (pairs) are pooled: each shift draws one offset per sequence.
User events whose window [e + lo, e + hi] passes the sequence end are dropped (observed and
shifted alike), so the edges bias neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class EventConfig:
    nod_z: float = 3.0              # pitch speed above median + z·(1.4826·MAD) ...
    nod_floor: float = 0.25         # ... and above this many rad/s (or proxy units/s)
    smile_rise: float = 0.02        # smile gain over `smile_span_s`, IOD units (floor)
    smile_z: float = 3.0            # ... and above z robust deviations of such rises
    smile_span_s: float = 0.4
    refractory_s: float = 0.6       # one event per movement
    lo_s: float = 0.2
    hi_s: float = 1.5


def _robust_sigma(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if not len(x):
        return 0.0
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def onsets(mask: np.ndarray, refractory: int) -> list[int]:
    """First frames of True runs, at least `refractory` frames after the previous onset."""
    m = np.asarray(mask, bool)
    starts = np.flatnonzero(m & ~np.r_[False, m[:-1]])
    out: list[int] = []
    for s in starts:
        if not out or s - out[-1] >= refractory:
            out.append(int(s))
    return out


def _smooth(x: np.ndarray, k: int = 3) -> np.ndarray:
    if len(x) < k:
        return x
    return np.convolve(np.pad(x, k // 2, mode="edge"), np.ones(k) / k, "valid")


def nod_onsets(pitch: Sequence[float], fps: float, cfg: EventConfig = EventConfig()) -> list[int]:
    """Onsets of fast head-pitch movements (nods): |d pitch/dt| above a robust threshold."""
    p = np.asarray(pitch, float)
    if len(p) < 4:
        return []
    v = np.abs(np.gradient(_smooth(p), 1.0 / fps))                   # units per second
    thr = max(cfg.nod_floor, float(np.median(v)) + cfg.nod_z * _robust_sigma(v))
    return onsets(v > thr, int(round(cfg.refractory_s * fps)))


def smile_onsets(smile: Sequence[float], fps: float, cfg: EventConfig = EventConfig()) -> list[int]:
    """Onsets of smile rises: smile(t) − min(smile over the previous span) above a threshold."""
    s = _smooth(np.asarray(smile, float))
    k = max(1, int(round(cfg.smile_span_s * fps)))
    if len(s) <= k:
        return []
    rise = np.zeros(len(s))
    for t in range(k, len(s)):
        rise[t] = s[t] - s[t - k:t].min()
    thr = max(cfg.smile_rise, float(np.median(rise[k:])) + cfg.smile_z * _robust_sigma(rise[k:]))
    return onsets(rise > thr, int(round(cfg.refractory_s * fps)))


def merge_events(*trains: Sequence[int], refractory: int = 0) -> list[int]:
    """Union of event trains (sorted; events closer than `refractory` merged)."""
    ev = sorted({int(e) for t in trains for e in t})
    return onsets(np.isin(np.arange(max(ev) + 1 if ev else 0), ev), max(refractory, 1)) if ev else []


def _hits(user: np.ndarray, cum: np.ndarray, n: int, L: int, H: int) -> tuple[int, int]:
    u = user[user + H < n]
    if not len(u):
        return 0, 0
    return int(np.sum(cum[u + H + 1] - cum[u + L] > 0)), int(len(u))


def follow_test(sequences: Sequence[tuple[Sequence[int], Sequence[int], int]], fps: float,
                lo_s: float = 0.2, hi_s: float = 1.5, n_shifts: int = 1000, min_shift_s: float = 2.0,
                seed: int = 0) -> dict:
    """Pooled follow rate of avatar events after user events vs circularly shifted user events.

    sequences: (user_events, avatar_events, n_frames) per pair. Returns rate, chance
    (mean over shifts), p (one-sided, shifted ≥ observed), n_user_events, n_avatar_events,
    avatar_rate_per_s and lift = rate − chance."""
    L, H = int(round(lo_s * fps)), int(round(hi_s * fps))
    ms = int(round(min_shift_s * fps))
    prepared = []
    for ue, ae, n in sequences:
        n = int(n)
        a = np.zeros(n, bool)
        ae = np.asarray([e for e in ae if 0 <= e < n], int)
        a[ae] = True
        prepared.append((np.asarray([e for e in ue if 0 <= e < n], int), np.r_[0, np.cumsum(a)], n, len(ae)))
    hit = tot = 0
    for u, cum, n, _ in prepared:
        h, k = _hits(u, cum, n, L, H)
        hit += h; tot += k
    n_av = sum(p[3] for p in prepared)
    frames = sum(p[2] for p in prepared)
    res = {"n_user_events": tot, "n_avatar_events": int(n_av),
           "avatar_rate_per_s": float(n_av / (frames / fps)) if frames else float("nan"),
           "window_s": [lo_s, hi_s], "n_shifts": n_shifts}
    if tot == 0:
        return {**res, "rate": float("nan"), "chance": float("nan"), "p": float("nan"), "lift": float("nan")}
    rate = hit / tot
    rng = np.random.default_rng(seed)
    null = np.empty(n_shifts)
    for i in range(n_shifts):
        h_s = t_s = 0
        for u, cum, n, _ in prepared:
            if not len(u):
                continue
            lo, hi = ms, n - ms
            s = int(rng.integers(lo, hi + 1)) if hi > lo else int(rng.integers(1, max(2, n)))
            h, k = _hits((u + s) % n, cum, n, L, H)
            h_s += h; t_s += k
        null[i] = h_s / t_s if t_s else np.nan
    null = null[np.isfinite(null)]
    chance = float(null.mean()) if len(null) else float("nan")
    p = float((1 + np.sum(null >= rate - 1e-12)) / (1 + len(null))) if len(null) else float("nan")
    return {**res, "rate": float(rate), "chance": chance, "p": p, "lift": float(rate - chance)}


PROXY_EVENTS = EventConfig(nod_floor=0.1)   # pitch proxy (nose offset / IOD) moves ~0.55x radians


def avatar_events(pitch, smile, fps: float, cfg: EventConfig = EventConfig()) -> list[int]:
    """Nod onsets ∪ smile onsets of one face (a listener's visible reactions)."""
    return merge_events(nod_onsets(pitch, fps, cfg), smile_onsets(smile, fps, cfg),
                        refractory=int(round(0.2 * fps)))


def user_events(fps: float, n: int, smile=None, smile_fps: float | None = None, pauses_s=(),
                cfg: EventConfig = EventConfig()) -> list[int]:
    """User smile onsets (from a series at smile_fps) ∪ pause onsets (seconds), as frames at fps."""
    ev = [float(t) for t in pauses_s]
    if smile is not None and len(smile):
        sf = smile_fps or fps
        ev += [i / sf for i in smile_onsets(smile, sf, cfg)]
    fr = sorted({int(round(t * fps)) for t in ev if 0 <= t * fps < n})
    return merge_events(fr, refractory=int(round(0.2 * fps))) if fr else []


def pause_onsets(vad, fps: float, min_speech_s: float = 0.8, min_pause_s: float = 0.25) -> list[int]:
    """Frames where the voice stops after ≥ min_speech_s of speech, for ≥ min_pause_s (the
    user's pauses: a listener's cue for a backchannel nod, in training rules and in eval)."""
    v = np.asarray(vad, bool)
    ms, mp = int(round(min_speech_s * fps)), int(round(min_pause_s * fps))
    out, run = [], 0
    for i in range(1, len(v)):
        run = run + 1 if v[i - 1] else 0
        if v[i - 1] and not v[i] and run >= ms and i + mp <= len(v) and not v[i:i + mp].any():
            out.append(i)
    return out


def pause_times(vad, fps: float, min_speech_s: float = 0.8, min_pause_s: float = 0.25) -> list[float]:
    """`pause_onsets` in seconds."""
    return [i / fps for i in pause_onsets(vad, fps, min_speech_s, min_pause_s)]
