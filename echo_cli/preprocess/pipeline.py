"""Preprocess one media file: face track, audio features, transcript; each stage cached.

    result = preprocess_media("clip.mp4", fps=25)
    result["face"]        FaceTrack | None   (None for audio-only files)
    result["audio"]       AudioFeatures | None (None when the file has no audio track)
    result["transcript"]  Transcript | None  (None when not asked for or no speech)
    result["info"]        MediaInfo
    result["cached"]      {"face": bool, "audio": bool, "transcript": bool}
    result["notes"]       one-line remarks (e.g. "no audio track: face only")

The audio features are computed with the face track's frame count, so audio row i and
video frame i describe the same instant. Stages that fail raise typed errors (EchoError);
folder runs (api/preprocess.py) turn them into one line per file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from echo_cli import log
from echo_cli.errors import InputError
from echo_cli.preprocess.cache import Cache, file_sha256
from echo_cli.media.kinds import IMAGE_EXTS
from echo_cli.preprocess.face import TrackSettings

logger = log.get("echo_cli.preprocess.pipeline")


@dataclass(frozen=True)
class PreprocessOptions:
    """What a preprocess run computes (the CLI flags map onto this)."""
    fps: float | None = None                 # None: the video's own rate (25 for audio/images)
    face_index: int | None = None            # n-th face from the left when several
    pick: tuple[float, float] | None = None  # or the face nearest (x, y) in 0..1
    whisper: bool = True                     # Whisper encoder features in AudioFeatures
    whisper_layers: str = "final"            # which ones (features.audio.WHISPER_LAYERS): a model's
                                             # audio_encoder.WHISPER_LAYERS_OF[cfg.audio_input]
    on_disk: bool = False                    # the decoded track and the Whisper rows in temporary
                                             # files (media/wave_file.py, generate/rowfile.py), never
                                             # whole in memory: renders of any length
    transcript: str | None = None            # "auto" | "whisperx" | "faster-whisper" | None
    language: str | None = None              # transcript language (None: detect)
    require_audio: bool = False              # a video without audio is an error (else face only)
    track: TrackSettings = field(default_factory=TrackSettings)


def _media_info(path: Path):
    from echo_cli.media.probe import probe

    return probe(path)


def _sidecar_transcript(path: Path) -> Path | None:
    for ext in (".srt", ".vtt", ".json"):
        p = path.with_suffix(ext)
        if p.is_file():
            return p
    return None


def preprocess_media(path: str | Path, fps: float | None = None, cache: bool | Cache = True,
                     transcript_backend: str | None = None, face_index: int | None = None,
                     pick: tuple[float, float] | None = None, whisper: bool = True,
                     options: PreprocessOptions | None = None, whisper_layers: str = "final",
                     on_disk: bool = False) -> dict:
    """Face track + audio features (+ transcript) of one file, from the cache when possible."""
    from echo_cli.features import audio as A
    from echo_cli.preprocess import face as F
    from echo_cli.preprocess import transcript as TR

    opts = options or PreprocessOptions(fps=fps, face_index=face_index, pick=pick, whisper=whisper,
                                        transcript=transcript_backend, whisper_layers=whisper_layers,
                                        on_disk=on_disk)
    path = Path(path)
    c = cache if isinstance(cache, Cache) else Cache(enabled=bool(cache))
    info = _media_info(path)
    sha = file_sha256(path)
    notes: list[str] = []
    cached = {"face": False, "audio": False, "transcript": False}
    is_image = info.is_image or path.suffix.lower() in IMAGE_EXTS
    out_fps = float(opts.fps or (info.fps if info.has_video and not is_image and info.fps > 0 else 25.0))
    src_info = {"source": str(path)}

    # -- face -------------------------------------------------------------------------
    face = None
    if info.has_video or is_image:
        settings = F.cache_settings(path, None if is_image else out_fps, opts.face_index, opts.pick, opts.track)
        key = c.key("face", sha, settings, F.TRACK_VERSION)
        face, cached["face"] = c.get_or_compute(
            "face", key, "npz",
            lambda: F.track_face(path, fps=None if is_image else opts.fps, face_index=opts.face_index,
                                 pick=opts.pick, settings=opts.track, cache=False),
            F.save_track, F.load_track, src_info)
        face.source = str(path)

    # -- audio ------------------------------------------------------------------------
    audio = None
    wave = None
    if info.has_audio and not is_image:
        n_frames = face.n_frames if face is not None else None

        def compute_audio():
            nonlocal wave
            if opts.on_disk:
                from echo_cli.media.wave_file import WaveFile

                wave = WaveFile.decode(path)
            else:
                wave = A.read_audio(path)
            return A.audio_features(wave, out_fps, whisper=opts.whisper, n_frames=n_frames, source=str(path),
                                    whisper_layers=opts.whisper_layers, whisper_on_disk=opts.on_disk)

        wkey = {"whisper": opts.whisper}
        if opts.whisper and opts.whisper_layers != "final":      # keys of "final" caches stay valid
            wkey["whisper_layers"] = opts.whisper_layers
        key = c.key("audio", sha, {"fps": out_fps, **wkey, "n_frames": n_frames}, A.AUDIO_VERSION)
        audio, cached["audio"] = c.get_or_compute(
            "audio", key, "npz", compute_audio, A.save_audio_features,
            lambda p: A.load_audio_features(p, whisper_on_disk=opts.on_disk), src_info)
    elif info.has_video and not is_image:
        if opts.require_audio:
            raise InputError("no audio track", path=path, fix="use a video with sound, or drop --require-audio")
        notes.append("no audio track: face only")
    if face is None and audio is None:
        raise InputError("neither a face nor audio to process", path=path, fix="give a video, image or audio file")

    # -- transcript -------------------------------------------------------------------
    transcript = None
    side = _sidecar_transcript(path)
    if side is not None and side != path:
        transcript = TR.read_transcript(side)
        notes.append(f"transcript read from {side.name}")
    elif opts.transcript and audio is not None:
        if not audio.vad.any():
            notes.append("no speech detected: no transcript")
        else:
            key = c.key("transcript", sha, {"backend": TR.resolve_backend(opts.transcript), "language": opts.language})

            def compute_tr():
                w = wave if wave is not None else A.read_audio(path)
                if hasattr(w, "read_all"):       # transcription takes the whole track
                    w = w.read_all()
                return TR.transcribe(w, backend=opts.transcript, language=opts.language)

            transcript, cached["transcript"] = c.get_or_compute(
                "transcript", key, "json", compute_tr, TR.save_transcript, TR.read_transcript, src_info)
    if hasattr(wave, "close"):
        wave.close()
    return {"face": face, "audio": audio, "transcript": transcript, "info": info,
            "cached": cached, "notes": notes, "sha256": sha}


def options_dict(opts: PreprocessOptions) -> dict:
    return dataclasses.asdict(opts)
