"""Transcripts (real WhisperX and faster-whisper on real speech), provided SRT/VTT/JSON, turns."""
from __future__ import annotations

import json

import numpy as np
import pytest

from echo_cli.errors import InputError
from echo_cli.preprocess import transcript as TR
from echo_cli.preprocess.turns import TurnSettings, attach_text, clean_vad, turns_from_vad
from echo_cli.schema import Transcript, Word


def need_shared():
    import os
    from pathlib import Path

    p = Path(os.environ.get("ECHO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (p / "audio").is_dir():
        pytest.skip("../shared/data is absent (set ECHO_SHARED_DATA): real media needed")
    return p


RADIO_WORDS = {"holidays", "time", "celebrating", "loved", "ones"}


def _check_words(t: Transcript, duration: float = 8.0) -> None:
    words = [w.text.strip(".,!?").lower() for w in t.words]
    assert len(RADIO_WORDS & set(words)) >= 4, t.text
    assert t.language == "en"
    starts = np.array([w.start for w in t.words])
    ends = np.array([w.end for w in t.words])
    assert (np.diff(starts) >= 0).all() and (ends >= starts).all()
    assert starts[0] < 1.0 and ends[-1] <= duration + 0.5 and ends[-1] > duration - 2.0
    assert starts[-1] - starts[0] > 5.0           # timings spread over the clip, not all zero


@pytest.fixture(scope="module")
def radio():
    return need_shared() / "audio" / "RD_Radio31_000.wav"


def test_faster_whisper_words_with_timings(radio):
    t = TR.transcribe(radio, backend="faster-whisper")
    _check_words(t)
    assert t.method == "faster-whisper-words"
    assert all(w.score is not None and 0 <= w.score <= 1 for w in t.words)


def test_whisperx_words_with_timings(radio):
    t = TR.transcribe(radio, backend="whisperx", language="en")
    _check_words(t)
    assert t.method in ("whisperx-aligned", "whisperx-vad+faster-whisper-words")
    if t.method != "whisperx-aligned":            # the method and why are recorded
        assert any("alignment" in n for n in t.notes)


def _no_align_models(tmp_path, monkeypatch):
    """An environment with no wav2vec2 alignment model anywhere WhisperX would look."""
    monkeypatch.delenv("ECHO_ALIGN_MODEL_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    for var in ("TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))


def test_auto_backend_choice(tmp_path, monkeypatch):
    """auto = WhisperX only when its alignment model is on disk (without it WhisperX gives
    faster-whisper's words and times at ~3x the CPU: docs/preprocessing.md)."""
    _no_align_models(tmp_path, monkeypatch)
    assert not TR.alignment_model_on_disk()
    assert TR.resolve_backend("auto") == "faster-whisper"
    assert TR.resolve_backend("whisperx") == "whisperx" and TR.resolve_backend(None) is None
    # a torchaudio-style checkpoint in the torch hub, or an HF cache entry, turns WhisperX on
    ckpt = tmp_path / "torch_home" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "wav2vec2_fairseq_base_ls960_asr_ls960.pth").write_bytes(b"")
    assert TR.alignment_model_on_disk()
    pytest.importorskip("whisperx")
    assert TR.resolve_backend("auto") == "whisperx"


def test_auto_transcribes_with_faster_whisper_offline(radio, tmp_path, monkeypatch):
    _no_align_models(tmp_path, monkeypatch)
    t = TR.transcribe(radio)                      # the default backend is auto
    _check_words(t)
    assert t.method == "faster-whisper-words"


def test_whisperx_vad_checkpoint_allowance_is_scoped():
    import torch

    TR._whisperx_pipeline("en")                  # loads the bundled VAD under the allowance
    allowed = {getattr(c, "__name__", str(c)) for c in torch.serialization.get_safe_globals()}
    assert "ListConfig" not in allowed           # nothing stays allowed process-wide


def test_empty_audio_is_an_input_error():
    with pytest.raises(InputError):
        TR.transcribe(np.zeros(0, np.float32), backend="faster-whisper")


def test_unknown_backend_is_a_usage_error():
    from echo_cli.errors import UsageError

    with pytest.raises(UsageError):
        TR.transcribe(np.zeros(16000, np.float32), backend="nope")


# ---------------------------------------------------------------- provided files

def test_read_srt(tmp_path):
    p = tmp_path / "a.srt"
    p.write_text("1\n00:00:01,000 --> 00:00:02,500\nHello there\n\n2\n00:00:03,000 --> 00:00:04,000\n"
                 "General Kenobi\n")
    t = TR.read_transcript(p)
    assert [w.text for w in t.words] == ["Hello", "there", "General", "Kenobi"]
    assert t.words[0].start == 1.0 and t.words[1].end == 2.5 and t.words[2].start == 3.0
    assert t.method == "provided-srt"


def test_read_vtt(tmp_path):
    p = tmp_path / "a.vtt"
    p.write_text("WEBVTT\n\n00:01.000 --> 00:02.000 align:start\n<v Bob>Good morning\n\n"
                 "01:00:00.000 --> 01:00:01.000\nlater\n")
    t = TR.read_transcript(p)
    assert [w.text for w in t.words] == ["Good", "morning", "later"]
    assert t.words[2].start == 3600.0 and t.method == "provided-vtt"


def test_read_json_formats(tmp_path):
    ours = Transcript(words=[Word("hi", 0.1, 0.3, score=0.9)], method="faster-whisper-words", notes=["x"])
    p = tmp_path / "ours.json"
    TR.save_transcript(ours, p)
    back = TR.read_transcript(p)
    assert back.words == ours.words and back.method == ours.method and back.notes == ["x"]
    wx = {"segments": [{"start": 0, "end": 1, "text": "a b", "words": [{"word": "a", "start": 0.0, "end": 0.4},
                                                                      {"word": "b", "start": 0.5, "end": 1.0}]}]}
    p2 = tmp_path / "wx.json"
    p2.write_text(json.dumps(wx))
    assert [w.text for w in TR.read_transcript(p2).words] == ["a", "b"]


def test_bad_transcript_files(tmp_path):
    p = tmp_path / "bad.srt"
    p.write_text("1\n00:00:05,000 --> 00:00:01,000\nbackwards\n")
    with pytest.raises(InputError):
        TR.read_transcript(p)
    q = tmp_path / "bad.json"
    q.write_text("{not json")
    with pytest.raises(InputError):
        TR.read_transcript(q)
    q.write_text("[" * 100_000 + "]" * 100_000)       # json decodes nesting recursively: was an internal error
    with pytest.raises(InputError, match="nested too deeply"):
        TR.read_transcript(q)


# ---------------------------------------------------------------- turns (pure)

def _vad(fps, *spans, n=None):
    n = n or int(max(e for _, e in spans) * fps) + 10
    v = np.zeros(n, bool)
    for s, e in spans:
        v[int(round(s * fps)):int(round(e * fps))] = True
    return v


def test_turns_alternate_and_bridge_pauses():
    fps = 25.0
    a = _vad(fps, (0.0, 2.0), (2.3, 4.0), (8.0, 9.0), n=250)     # 0.3 s pause stays one turn
    u = _vad(fps, (4.6, 7.6), n=250)
    turns = turns_from_vad(a, u, fps)
    assert [t.speaker for t in turns] == ["avatar", "user", "avatar"]
    assert turns[0].start == 0.0 and turns[0].end == pytest.approx(4.0)
    assert turns[1].start == pytest.approx(4.6) and turns[1].end == pytest.approx(7.6)


def test_backchannel_does_not_take_the_floor():
    fps = 25.0
    a = _vad(fps, (0.0, 5.0), n=150)
    u = _vad(fps, (2.0, 2.4), n=150)                               # "mm-hm" during avatar speech
    turns = turns_from_vad(a, u, fps)
    assert [t.speaker for t in turns] == ["avatar"]


def test_clean_vad_drops_blips():
    v = _vad(25.0, (1.0, 1.08), (2.0, 3.0), n=100)
    c = clean_vad(v, 25.0, TurnSettings())
    assert not c[20:30].any() and c[55:70].all()


def test_attach_text():
    fps = 25.0
    turns = turns_from_vad(_vad(fps, (0, 1), n=75), _vad(fps, (1.5, 2.8), n=75), fps)
    tr_a = Transcript(words=[Word("hello", 0.1, 0.5)])
    tr_u = Transcript(words=[Word("hi", 1.6, 1.9), Word("there", 2.0, 2.4)])
    out = attach_text(turns, tr_a, tr_u)
    assert [t.text for t in out] == ["hello", "hi there"]
    # a text the dialogue gives wins over what recognition heard
    given = [turns[0].__class__(speaker=t.speaker, start=t.start, end=t.end, text=x, emotion=t.emotion)
             for t, x in zip(turns, ["hallo!", None])]
    assert [t.text for t in attach_text(given, tr_a, tr_u)] == ["hallo!", "hi there"]


@pytest.mark.parametrize("name,text,needle", [
    ("garbage.srt", "this is not a subtitle file\nat all\n", "no timed cues"),
    ("words.json", json.dumps({"words": "oops"}), "list of"),
    ("untimed.json", json.dumps({"words": [{"text": "hi"}, {"text": "there"}]}), "start and end"),
    ("backwards.json", json.dumps({"words": [{"text": "hi", "start": 2.0, "end": 1.0}]}), "start must be"),
    ("text_only.json", json.dumps({"text": "hello there"}), "no 'words' or 'segments'"),
    ("untimed_segments.json", json.dumps({"segments": [{"text": "hello there"}]}), "no segment has"),
    ("backwards_segment.json", json.dumps({"segments": [{"text": "hi", "start": 2.0, "end": 1.0}]}), "ends before"),
])
def test_transcripts_that_would_be_silently_empty_are_errors(tmp_path, name, text, needle):
    """A file the user gave on purpose that yields no usable words is a mistake to report,
    not an empty transcript to render with."""
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError) as ei:
        TR.read_transcript(p)
    assert needle in ei.value.message and ei.value.exit_code == 4
    p.with_suffix(".srt").write_text("")            # an empty file is an empty transcript
    assert TR.read_transcript(p.with_suffix(".srt")).words == []


def test_whisper_json_without_word_timings_is_spread_over_its_segments(tmp_path):
    """openai-whisper / faster-whisper JSON without word_timestamps: segments carry the times."""
    p = tmp_path / "whisper.json"
    p.write_text(json.dumps({"text": "Hello there, friend. Bye.", "language": "en", "segments": [
        {"id": 0, "start": 0.5, "end": 2.0, "text": " Hello there, friend."},
        {"id": 1, "start": 2.0, "end": 3.0, "text": " Bye.", "words": [{"word": " Bye.", "start": 2.1, "end": 2.6}]}]}))
    t = TR.read_transcript(p)
    assert [w.text for w in t.words] == ["Hello", "there,", "friend.", "Bye."]
    assert t.words[0].start == 0.5 and t.words[2].end == 2.0 and (t.words[3].start, t.words[3].end) == (2.1, 2.6)
    assert all(a.end <= b.start for a, b in zip(t.words, t.words[1:]))
    assert t.notes and "spread" in t.notes[0]
