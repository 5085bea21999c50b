"""Speaker turns of a two-person conversation from the two tracks' voice activity (pure).

Used when dialogue.yaml gives no turns. Each track's VAD is cleaned first (pauses shorter
than `max_pause_s` inside speech are bridged, blips shorter than `min_speech_s` dropped);
then the floor goes to whoever speaks alone; during overlap the current holder keeps the
floor (a back-channel "mm-hm" does not take the turn); silence ends a turn only when it
lasts longer than `max_pause_s`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echo_cli.schema import Transcript, Turn


@dataclass(frozen=True)
class TurnSettings:
    max_pause_s: float = 0.5        # shorter silences stay inside a turn
    min_speech_s: float = 0.2       # shorter voice activity is noise or a back-channel
    min_turn_s: float = 0.3         # shorter turns merge into the neighbouring one


def clean_vad(vad: np.ndarray, fps: float, settings: TurnSettings = TurnSettings()) -> np.ndarray:
    """Bridge short pauses, then drop short bursts (both in frames)."""
    v = np.asarray(vad, dtype=bool).copy()
    gap = int(round(settings.max_pause_s * fps))
    blip = int(round(settings.min_speech_s * fps))
    v = _fill_runs(v, value=False, max_len=gap, interior_only=True)
    v = _fill_runs(v, value=True, max_len=blip - 1, interior_only=False)
    return v


def _runs(v: np.ndarray) -> list[tuple[bool, int, int]]:
    """[(value, start, end)] runs of equal values, end exclusive."""
    if v.size == 0:
        return []
    edges = np.flatnonzero(np.diff(v.astype(np.int8))) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [v.size]])
    return [(bool(v[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def _fill_runs(v: np.ndarray, value: bool, max_len: int, interior_only: bool) -> np.ndarray:
    out = v.copy()
    for val, s, e in _runs(v):
        if val == value and e - s <= max_len and (not interior_only or (s > 0 and e < v.size)):
            out[s:e] = not value
    return out


def turns_from_vad(avatar_vad: np.ndarray, user_vad: np.ndarray, fps: float,
                   settings: TurnSettings = TurnSettings()) -> list[Turn]:
    """Non-overlapping turns (speaker, start, end seconds), in time order."""
    n = max(len(avatar_vad), len(user_vad))
    a = np.zeros(n, bool)
    u = np.zeros(n, bool)
    a[: len(avatar_vad)] = clean_vad(avatar_vad, fps, settings)
    u[: len(user_vad)] = clean_vad(user_vad, fps, settings)
    label = np.full(n, -1, np.int8)          # -1 silence, 0 avatar, 1 user
    holder = -1
    for t in range(n):
        if a[t] and not u[t]:
            holder = 0
        elif u[t] and not a[t]:
            holder = 1
        elif a[t] and u[t]:
            holder = holder if holder >= 0 else 0
        else:
            holder = -1
        label[t] = holder
    # merge turns shorter than min_turn_s into the previous speaker's turn
    min_turn = int(round(settings.min_turn_s * fps))
    segs = [[int(lab), s, e] for lab, s, e in _label_runs(label) if lab >= 0]
    merged: list[list[int]] = []
    for seg in segs:
        if merged and (seg[0] == merged[-1][0] and seg[1] - merged[-1][2] <= int(round(settings.max_pause_s * fps))):
            merged[-1][2] = seg[2]
        elif merged and seg[2] - seg[1] < min_turn and seg[1] == merged[-1][2]:
            merged[-1][2] = seg[2]
        else:
            merged.append(seg)
    names = ("avatar", "user")
    return [Turn(speaker=names[lab], start=round(s / fps, 3), end=round(e / fps, 3)) for lab, s, e in merged]


def _label_runs(label: np.ndarray) -> list[tuple[int, int, int]]:
    if label.size == 0:
        return []
    edges = np.flatnonzero(np.diff(label)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [label.size]])
    return [(int(label[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def attach_text(turns: list[Turn], avatar: Transcript | None = None, user: Transcript | None = None) -> list[Turn]:
    """Fill each turn without text with its speaker's words whose midpoint falls inside the turn.
    A text the dialogue gives is the user's word (a correction of what recognition heard, or
    the line an actor was given) and is kept."""
    out = []
    for t in turns:
        if t.text:
            out.append(t)
            continue
        tr = avatar if t.speaker == "avatar" else user
        words = [w.text for w in (tr.words if tr else []) if t.start <= (w.start + w.end) / 2 < t.end]
        out.append(Turn(speaker=t.speaker, start=t.start, end=t.end,
                        text=" ".join(words) if words else t.text, emotion=t.emotion))
    return out


def turns_from_features(avatar_audio, user_audio, settings: TurnSettings = TurnSettings()) -> list[Turn]:
    """Turns from two AudioFeatures at the same fps (either may be None: silent track)."""
    fps = (avatar_audio or user_audio).fps
    a = avatar_audio.vad if avatar_audio is not None else np.zeros(0, bool)
    u = user_audio.vad if user_audio is not None else np.zeros(0, bool)
    return turns_from_vad(a, u, fps, settings)
