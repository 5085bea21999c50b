"""`render()`: one dialogue -> one MP4. What `echo-cli render` and `echo-cli batch` call.

Stages, each timed and each failing with a typed one-line error:
  1. spec       load + validate dialogue.yaml (or an inline spec)      SpecError 3 / InputError 4
  2. settings   CLI > dialogue.yaml > preset > default                 UsageError 2
  3. preflight  ffmpeg present, every input probes, output writable    DependencyError 6 / InputError 4 / OutputError 7
  4. preprocess face track, audio features, transcript (preprocess.pipeline)
  5. model      checkpoint present and loadable                        ModelError 5
  6. generate   motion chunks (generate.engine), streaming
  7. render     motion -> frames (render.warp), layout (side-by-side), encode
  8. mux        H.264 yuv420p + AAC, length = audio, metadata, atomic  OutputError 7
                (in the encoder's own ffmpeg pass when the audio is a file: `encode`)
A stage whose module is not in this build stops the run with a one-line error naming the
stage (never a traceback). Nothing is written at the output path unless stage 8 succeeds.
"""
from __future__ import annotations

import importlib
import inspect
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from echo_cli import __version__, cancel, log
from echo_cli.config import SEED_MAX, SETTING_KEYS, RenderSettings, resolve_settings
from echo_cli.errors import DependencyError, InputError, ModelError, OutputError, SpecError, UsageError
from echo_cli.hashing import check_cache_writable

logger = log.get("echo_cli.api.render")

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = PACKAGE_DIR / "checkpoints" / "default.safetensors"

# Which issue delivers each stage module (for the "not built yet" message).
STAGE_MODULES = {
    "preprocess": ("echo_cli.preprocess.pipeline", "preprocessing (issue 4)"),
    "model": ("echo_cli.model.checkpoint", "the generator (issue 6)"),
    "generate": ("echo_cli.generate.engine", "the generator (issue 6)"),
    "render": ("echo_cli.render.warp", "the renderer (issue 5)"),
}


def cache_dir() -> Path:
    from echo_cli.hashing import cache_root

    return cache_root()


def default_checkpoint() -> Path:
    return Path(os.environ.get("ECHO_CHECKPOINT") or DEFAULT_CHECKPOINT)


# ---------------------------------------------------------------------------------------
# Progress (the CLI passes cli.common.progress; the library default shows nothing)
# ---------------------------------------------------------------------------------------
class _Null:
    def advance(self, n: int = 1) -> None: ...
    def update(self, completed: int) -> None: ...
    def set_total(self, total) -> None: ...


@contextmanager
def _null_progress(total=None, desc=""):
    yield _Null()


# Cancellation: the CLI's SIGINT/SIGTERM handler raises KeyboardInterrupt *and* sets this
# flag, because a library can swallow the exception (protobuf's C import does); the flag is
# checked at every stage boundary and per frame, so the run still stops promptly.
def request_cancel() -> None:
    """Stop the render in progress (from another thread): it raises errors.Interrupted at its
    next stage boundary or frame, leaving no partial output; later renders run normally."""
    cancel.request(by_caller=True)


def check_cancel() -> None:
    cancel.check()


def stage_module(stage: str):
    """Import a stage's module; a module that is not in this build is a one-line error."""
    name, owner = STAGE_MODULES[stage]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            err = ModelError if stage in ("model", "generate") else DependencyError
            raise err(f"stage '{stage}' is not available in this build ({name} missing)",
                      fix=f"update echo-cli to a version with {owner}") from None
        raise DependencyError(f"stage '{stage}' needs the package '{e.name}'",
                              fix=f"pip install {e.name} (or rerun scripts/setup.sh)") from None


# ---------------------------------------------------------------------------------------
# 1-2. spec and settings
# ---------------------------------------------------------------------------------------
def load_spec(spec_path: str | Path | None, *, reference=None, audio=None, user_video=None,
              user_audio=None, output=None, transcript=None):
    """A DialogueSpec from a YAML file, or an inline one built from media paths (batch).
    transcript (inline only): a source name (auto, whisperx, faster-whisper, none) or a
    transcript file's path."""
    from echo_cli.dialogue import RECOGNITION_SOURCES, DialogueSpec, load_dialogue

    inline = {k: v for k, v in (("reference", reference), ("audio", audio), ("user_video", user_video),
                                ("user_audio", user_audio), ("transcript", transcript)) if v is not None}
    if spec_path is not None and inline:       # they would be ignored without a word
        raise UsageError(f"give a dialogue file or inline inputs, not both (got {', '.join(inline)} "
                         "beside the dialogue)", fix="put them in the dialogue.yaml, or pass spec_path=None")
    if spec_path is not None:
        return load_dialogue(spec_path)
    if reference is None or audio is None or output is None:
        raise InputError("an inline render needs reference, audio and output", fix="give a dialogue.yaml instead")
    from echo_cli.media.probe import IMAGE_SUFFIXES

    ref = Path(reference).resolve()
    avatar = {"image" if ref.suffix.lower() in IMAGE_SUFFIXES else "video": ref, "audio": Path(audio).resolve()}
    user = {k: Path(v).resolve() for k, v in (("video", user_video), ("audio", user_audio)) if v}
    data = {"version": 1, "avatar": avatar, "output": {"path": Path(output).resolve()}}
    if user:
        data["user"] = user
    if transcript:
        data["transcript"] = ({"source": transcript} if str(transcript) in RECOGNITION_SOURCES
                              else {"source": "file", "path": Path(transcript).resolve()})
    for field, p in [("avatar.audio", avatar["audio"]), ("avatar.reference", ref), *[(f"user.{k}", v) for k, v in user.items()]]:
        if not p.is_file():
            raise InputError(f"{field}: file not found", path=p, fix="check the path")
    return DialogueSpec.model_validate(data)


def plan_settings(spec, preset: str | None = None, overrides: dict | None = None) -> RenderSettings:
    """Precedence: CLI flag (overrides) > dialogue.yaml > preset > built-in default."""
    return resolve_settings(preset or spec.preset, dialogue=spec.setting_overrides(), cli=overrides or {},
                            dialogue_path=spec.source_path)


# ---------------------------------------------------------------------------------------
# 3. preflight: cheap checks before any model loads
# ---------------------------------------------------------------------------------------
def _writable_dir(out: Path) -> None:
    from echo_cli.io_atomic import nearest_existing

    parent = nearest_existing(out.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError("output folder is not writable", path=parent, fix="choose another output.path or --output")
    if out.is_dir():
        raise OutputError("output path is a folder", path=out, fix="name an .mp4 file")


def _try_writing(out: Path) -> None:
    """A write where the output will go (io_atomic.try_writing): a folder that refuses it
    would otherwise fail the render only at its last stage, after all of the preprocessing
    and generation. Not in preflight: a dry run writes nothing."""
    from echo_cli.io_atomic import nearest_existing, try_writing

    parent = nearest_existing(out.parent)
    try:
        try_writing(parent)
    except OSError as e:
        raise OutputError(f"the output folder refuses writes ({e.strerror or e})", path=parent,
                          fix="choose another output.path or --output") from None


def field_where(spec, field: str, p) -> str:
    """`dialogue.yaml:LINE (field: path)` for an error about the file a field names (the
    bare path when the spec came from inline inputs)."""
    from echo_cli.dialogue import yaml_line

    src = spec.source_path
    return f"{yaml_line(src, field)} ({field}: {p})" if src else str(p)


def preflight(spec) -> dict:
    """ffmpeg, inputs, output. Returns {'avatar_ref': MediaInfo, 'avatar_audio': ..., ...} and,
    for `transcript: {source: file}`, 'transcript_file': the parsed Transcript."""
    from echo_cli.dialogue import output_clash, yaml_line
    from echo_cli.media.ffmpeg import ffmpeg_exe
    from echo_cli.media.probe import probe

    ffmpeg_exe()
    src = spec.source_path

    def where(field: str, p: Path) -> str:
        return field_where(spec, field, p)

    def check(field: str, p: Path, need_video=False, need_audio=False):
        try:
            info = probe(p)
        except InputError as e:
            raise InputError(e.message, path=where(field, p), fix=e.fix) from None
        if need_video and not info.has_video:
            raise InputError("no picture in this file", path=where(field, p), fix="give an image or a video")
        if need_video and info.is_image:        # cheap, and a dry run catches a cut-off image too
            from echo_cli.media.image_io import read_still

            try:
                read_still(p)
            except InputError as e:
                raise InputError(e.message, path=where(field, p), fix=e.fix) from None
        if need_audio and not info.has_audio:
            raise InputError("no audio stream in this file", path=where(field, p),
                             fix="add avatar.audio / user.audio with the speech")
        return info

    infos: dict = {}
    a = spec.avatar
    ref_field, ref = ("avatar.image", a.image) if a.image else ("avatar.video", a.video)
    infos["avatar_ref"] = check(ref_field, ref, need_video=True)
    if a.audio:
        infos["avatar_audio"] = check("avatar.audio", a.audio, need_audio=True)
    else:
        infos["avatar_audio"] = check("avatar.video", a.video, need_audio=True)
    if spec.user is not None:
        if spec.user.video:
            infos["user_video"] = check("user.video", spec.user.video, need_video=True)
        if spec.user.audio:
            infos["user_audio"] = check("user.audio", spec.user.audio, need_audio=True)
    if spec.transcript.source == "file":
        if not spec.transcript.path.is_file():
            raise InputError("transcript file not found", path=where("transcript.path", spec.transcript.path),
                             fix="fix transcript.path or use source: faster-whisper")
        from echo_cli.preprocess.transcript import read_transcript

        try:                            # cheap, and a dry run should catch a garbled file too
            infos["transcript_file"] = read_transcript(spec.transcript.path)     # run_preprocess uses it
        except InputError as e:
            raise InputError(e.message, path=where("transcript.path", spec.transcript.path), fix=e.fix) from None
    _check_turns_fit(spec, infos, src)
    _say_if_the_user_video_ends_early(spec, infos)
    _say_if_the_mix_has_no_user_voice(spec, infos, src)
    clash = output_clash(spec)
    if clash is not None:
        raise OutputError(f"the output is also the input {clash}; rendering would overwrite it",
                          path=spec.output.path, fix="write the video to another file (output.path or --output)")
    _writable_dir(spec.output.path)
    check_cache_writable()
    _readable_checkpoint(spec)
    return infos


def _readable_checkpoint(spec) -> None:
    """The checkpoint exists and is one (a safetensors header and its config; no tensors
    read): a dry run that says "valid" for a --checkpoint the render would refuse misleads."""
    from echo_cli.model.checkpoint import read_config

    read_config(Path(spec.checkpoint) if spec.checkpoint else default_checkpoint())


ABLATIONS = {"lpe", "hbcu", "lau"}      # paper components that can be switched off at inference
TURN_SLACK_S = 0.5      # turns may overrun the audio by rounding, not by whole seconds


def _say_if_the_mix_has_no_user_voice(spec, infos: dict, src) -> None:
    """`audio_mix: both` with a user who makes no sound mixes nothing in: not an error (the
    avatar's voice is still right), but not what the file asked for either."""
    if spec.output.audio_mix != "both" or spec.user is None or spec.user.audio:
        return
    if infos.get("user_video") is not None and infos["user_video"].has_audio:
        return
    logger.warning("%s: output.audio_mix is 'both' but the user has no sound (no user.audio, and %s has no "
                   "audio track); the video carries the avatar's voice only (give user.audio to mix it in)",
                   src or "dialogue", spec.user.video)


def _say_if_the_user_video_ends_early(spec, infos: dict) -> None:
    """A user video shorter than the conversation holds its last frame (side by side) and the
    avatar reacts to a still face from there on; fine for a trailing second, worth a word
    for more."""
    uv = infos.get("user_video")
    if uv is None or uv.is_image or not uv.duration:
        return
    length = max((i.duration or 0.0 for k, i in infos.items() if k in ("avatar_audio", "user_audio") and i is not None),
                 default=0.0)
    if length - uv.duration > TURN_SLACK_S:
        logger.warning("%s: the user video lasts %.1f s of the conversation's %.1f s: its last frame is held for "
                       "the rest (give a longer user.video to cover it)", spec.user.video, uv.duration, length)


def _check_turns_fit(spec, infos: dict, src) -> None:
    """Turns must lie inside the conversation's audio (the longer of the two tracks)."""
    from echo_cli.dialogue import yaml_line

    length = max((i.duration for k, i in infos.items() if k in ("avatar_audio", "user_audio", "user_video")
                  and i is not None and i.has_audio), default=0.0)
    for k, t in enumerate(spec.turns or []):
        if length and t.start >= length:
            field = f"turns.{k}.start"
            raise SpecError(f"field '{field}': turn starts at {t.start:g} s, after the audio ends ({length:.2f} s)",
                            path=yaml_line(src, field) if src else None,
                            fix=f"start the turn before {length:.2f} s or give the full audio")
        if length and t.end > length + TURN_SLACK_S:
            field = f"turns.{k}.end"
            raise SpecError(f"field '{field}': turn ends at {t.end:g} s but the audio lasts {length:.2f} s",
                            path=yaml_line(src, field) if src else None,
                            fix=f"end the turn by {length:.2f} s or give the full audio")


# ---------------------------------------------------------------------------------------
# Audio timeline
# ---------------------------------------------------------------------------------------
def load_tracks(spec, infos: dict, pre: dict | None = None) -> dict:
    """The avatar / user audio sources and the timeline length in 16 kHz samples (the
    longer track). Paths, not waves: the tracks are streamed (counted here, mixed by
    `output_audio`), so an hour-long dialogue costs no more memory than a minute.

    A track's length comes from its preprocessed audio features when `pre` has them
    (`run_preprocess` records the exact sample count the features were computed from:
    the same load_audio decode of the same file, cached by its hash), else from
    `count_samples` (a WAV header at 16 kHz, else a streamed decode)."""
    from echo_cli.media.audio_io import count_samples

    avatar = Path(spec.avatar.audio or spec.avatar.video)
    user = None
    if spec.user is not None:
        if spec.user.audio:
            user = Path(spec.user.audio)
        elif spec.user.video and infos.get("user_video") and infos["user_video"].has_audio:
            user = Path(spec.user.video)
    known = {v["path"]: v["n_samples"] for v in (pre or {}).values()
             if isinstance(v, dict) and v.get("n_samples") is not None and v.get("path")}

    def length(p: Path) -> int:
        n = known.get(str(p))
        return int(n) if n is not None else count_samples(p)

    n = max(length(avatar), length(user) if user is not None else 0)
    return {"avatar": avatar, "user": user, "n_samples": n}


def output_audio(spec, tracks: dict, path: Path) -> Path:
    """Write the output track (the mix of both, or the avatar alone, padded to the timeline)
    to `path` as a float32 WAV, streamed block by block; returns path for `mux`."""
    from echo_cli.media.audio_io import write_mix

    both = spec.output.audio_mix == "both" and tracks.get("user") is not None
    srcs = [tracks["avatar"], tracks["user"]] if both else [tracks["avatar"]]
    write_mix(srcs, path, n_samples=tracks["n_samples"])
    return path


# ---------------------------------------------------------------------------------------
# 4-7. preprocess, model, generate, render (wired to the stage modules' contracts)
# ---------------------------------------------------------------------------------------
def _call(fn: Callable, *args, **kw):
    """Call with only the keyword arguments `fn` accepts (stage APIs are still settling)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kw = {k: v for k, v in kw.items() if k in params}
    return fn(*args, **kw)


def _n_samples(audio) -> int | None:
    """A track's exact length in 16 kHz samples from its features (features.audio stores
    duration = samples / 16000 of load_audio(path)), so load_tracks needs no decode.

    A function of its own, not a local of run_preprocess: a frame that outlives its call
    (some library keeps a reference to it) would keep the last track's features, Whisper
    matrix included, alive for the whole frame loop (measured: 184 MB at 60 minutes)."""
    from echo_cli.schema import SAMPLE_RATE

    return int(round(float(audio.duration) * SAMPLE_RATE)) if audio is not None and audio.duration else None


def run_preprocess(spec, settings: RenderSettings, infos: dict) -> dict:
    """Face tracks, audio features and transcripts of every input, at the output fps (cached)."""
    from echo_cli.model.audio_encoder import feature_request
    from echo_cli.preprocess.face import TrackSettings

    pipeline = stage_module("preprocess")
    out: dict = {}
    backend = None if spec.transcript.source in ("file", "none") else spec.transcript.source
    if backend is not None and spec.turns and all(t.text for t in spec.turns):
        # the LAU reads the turns' own text and the turns are given: words from speech
        # recognition would be computed and thrown away (seconds per minute of speech)
        logger.info("every turn has its text: no speech recognition needed")
        backend = None
    jobs = [("avatar_ref", spec.avatar.image or spec.avatar.video, None)]
    if spec.avatar.audio:
        jobs.append(("avatar_audio", spec.avatar.audio, backend))
    elif spec.avatar.video:
        jobs[0] = ("avatar_ref", spec.avatar.video, backend)
    if spec.user is not None:
        jobs += [(k, p, backend) for k, p in (("user_video", spec.user.video), ("user_audio", spec.user.audio)) if p]
    # The user's tracks first: otherwise the avatar's (T, 512) Whisper features sit in memory
    # while the user's whole track is decoded and analysed, and that phase set the peak of
    # hour-long renders (docs/performance_e2e.md "## Memory").
    jobs.sort(key=lambda j: not j[0].startswith("user"))
    avatar_features = feature_request(audio_input_for(spec))
    for key, path, tr in jobs:
        check_cancel()
        logger.info("preprocess %s: %s", key, path)
        # Whisper encoder features drive the avatar's lips only (audio_matrix of the avatar
        # track); the user's side uses mel/energy/VAD. Not computing the user's saves its
        # encoder time and a (frames, 512) array held for the whole render (184 MB an hour).
        # Decoded tracks and the avatar's rows go to temporary files as they are made or
        # read from the cache (on_disk): an hour's samples (230 MB) and "mid" rows (369 MB)
        # were the peak of long renders.
        wanted = {"whisper": False} if key.startswith("user") else avatar_features
        # a video avatar's portrait is its first frame with a face (api.reenact.load_reference,
        # which also says when there is none): a face that shows up late is no error here
        track = TrackSettings(min_found=0.0) if key == "avatar_ref" and spec.avatar.video else TrackSettings()
        opts = pipeline.PreprocessOptions(fps=settings.fps, transcript=tr, on_disk=True, track=track, **wanted)
        try:
            out[key] = _call(pipeline.preprocess_media, path, cache=True, options=opts)
        except InputError as e:         # "no face found", a decode failure: name the YAML field too
            if not spec.source_path or str(e.path) != str(path):
                raise
            field = {"avatar_ref": "avatar.image" if spec.avatar.image else "avatar.video",
                     "avatar_audio": "avatar.audio", "user_video": "user.video", "user_audio": "user.audio"}[key]
            raise InputError(e.message, path=field_where(spec, field, path), fix=e.fix) from e
        if isinstance(out[key], dict):
            out[key]["path"] = str(path)
            out[key]["n_samples"] = _n_samples(out[key].get("audio"))
    if "transcript_file" in infos:      # parsed (and checked) by preflight
        out["transcript_file"] = infos["transcript_file"]
    _say_if_the_avatar_never_speaks(spec, out)
    _say_if_the_user_picture_stops_early(spec, out, settings.fps)
    return out


def _say_if_the_user_picture_stops_early(spec, pre: dict, fps: float) -> None:
    """A damaged or cut-off user video can probe as whole and then decode only its first
    part (ffmpeg exits 0 after "partial file"): its last good frame is then held, the side
    by side panel freezes and the avatar reacts to a still face. Preflight's length check
    reads the header, so this one reads what was decoded."""
    rec = pre.get("user_video")
    face, info = (rec.get("face"), rec.get("info")) if isinstance(rec, dict) else (None, None)
    if face is None or info is None or info.is_image or not info.duration:
        return
    decoded = face.n_frames / fps
    if info.duration - decoded > TURN_SLACK_S:
        logger.warning("%s: the picture stops at %.1f s of the %.1f s the file declares (damaged or cut off?): its "
                       "last frame is held for the rest (re-export the video, or check that it plays to the end)",
                       spec.user.video, decoded, info.duration)


def _say_if_the_avatar_never_speaks(spec, pre: dict) -> None:
    """Digital silence (or no voice at all) as the avatar's audio renders a listening face,
    which is right for a pure listener and a mistake when the wrong file was given: say so."""
    import numpy as np

    key = "avatar_audio" if "avatar_audio" in pre else "avatar_ref"
    audio = pre[key].get("audio") if isinstance(pre.get(key), dict) else None
    vad = getattr(audio, "vad", None)
    if vad is None or len(vad) == 0 or np.any(np.asarray(vad)):
        return
    path = spec.avatar.audio or spec.avatar.video
    if spec.user is None:
        logger.warning("%s: no speech found in the avatar's audio, and there is no user: the video will show an "
                       "idle face (check avatar.audio)", path)
    else:
        logger.warning("%s: no speech found in the avatar's audio: the avatar only listens (check avatar.audio "
                       "if it should speak)", path)


def audio_input_for(spec) -> str:
    """The audio input the checkpoint's generator reads (model.audio_encoder.AUDIO_INPUTS),
    from its config alone: preprocessing runs before the model is loaded."""
    from echo_cli.model.audio_encoder import AUDIO_INPUTS
    from echo_cli.model.checkpoint import read_config

    ckpt = Path(spec.checkpoint) if spec.checkpoint else default_checkpoint()
    kind = read_config(ckpt).get("generator", {}).get("audio_input", "whisper")
    if kind not in AUDIO_INPUTS:
        raise ModelError(f"the checkpoint's generator reads unknown audio input '{kind}'", path=ckpt,
                         fix="use a checkpoint made by this echo-cli version")
    return kind


def load_model(spec):
    """The checkpoint's generator + LCU + motion space (api.animate.Bundle), cached per process."""
    ckpt = Path(spec.checkpoint) if spec.checkpoint else default_checkpoint()
    if not ckpt.is_file():
        raise ModelError("checkpoint not found", path=ckpt,
                         fix="train one with `echo-cli train --recipe default`, set checkpoint: in the "
                             "dialogue.yaml, or reinstall echo-cli (it bundles echo_cli/checkpoints/default.safetensors)")
    stage_module("model")
    from echo_cli.api.animate import load_bundle

    return load_bundle(ckpt), ckpt


def generate_frames(model, spec, settings: RenderSettings, pre: dict, n_frames: int, ablate=()):
    """Motion chunks from the generator, rendered to RGB frames (streaming): api.animate."""
    stage_module("generate")
    stage_module("render")
    from echo_cli.api.animate import animate

    return animate(model, spec, settings, pre, n_frames, seed=spec.seed, ablate=tuple(ablate))


# ---------------------------------------------------------------------------------------
# 7-8. layout, encode, mux (complete here; tested on real media)
# ---------------------------------------------------------------------------------------
def encode(frames: Iterable, audio, out_path: Path, settings: RenderSettings, *, metadata: dict | None = None,
           layout: str = "avatar", user_video: Path | None = None, user_is_image: bool = False,
           n_frames: int | None = None, progress=None) -> dict:
    """Frames (RGB uint8) + audio (16 kHz mono) -> MP4 at out_path, atomically.

    layout "side-by-side": the user's video (scaled to the avatar's height) is put left of
    the avatar. The video is fitted to the audio length (media.mux's rule: ceil(seconds x
    fps) frames, a short stream padded with its last frame, a long one trimmed).

    audio as a file (what render passes: its mix WAV): one ffmpeg encodes the picture and
    the sound into the final file (VideoWriter(audio=...), the options mux uses), the frame
    count fitted while writing. An array: encoded, then muxed (mux) as before.
    """
    from echo_cli.media.mux import side_by_side
    from echo_cli.media.video_io import VideoWriter

    progress = progress or _null_progress
    if layout == "side-by-side":
        if user_video is None:
            raise InputError("layout side-by-side needs user.video", fix="add user.video or use layout: avatar")
        frames = side_by_side(frames, user_video, settings.fps, user_is_image=user_is_image)
    out_path = Path(out_path)
    if not isinstance(audio, (str, Path)):
        return _encode_then_mux(frames, audio, out_path, settings, metadata, n_frames, progress)
    from echo_cli.media.audio_io import count_samples
    from echo_cli.media.mux import fit_length, frames_for
    from echo_cli.media.probe import probe
    from echo_cli.schema import SAMPLE_RATE

    want = frames_for(count_samples(audio) / SAMPLE_RATE, settings.fps)
    with progress(n_frames, "render") as bar:
        with VideoWriter(out_path, settings.fps, crf=settings.crf, preset=settings.encoder_preset, audio=audio,
                         metadata=metadata) as w:
            for f in fit_length(frames, want):          # the audio decides the length
                check_cancel()
                w.write(f)
                bar.advance(1)
    info = probe(out_path)
    logger.info("wrote %s (%.2f s, %d frames at %g fps)", out_path, info.duration, info.n_frames, info.fps)
    return {"output": str(out_path), "duration": info.duration, "frames": info.n_frames, "fps": info.fps,
            "width": info.width, "height": info.height}


def _encode_then_mux(frames, audio, out_path: Path, settings, metadata, n_frames, progress) -> dict:
    import tempfile

    from echo_cli.media.mux import mux
    from echo_cli.media.video_io import VideoWriter

    with tempfile.TemporaryDirectory(prefix=f".{out_path.stem}.echo-render-", dir=_tmp_root(out_path)) as td:
        tmp_video = Path(td) / "video.mp4"
        # encoded once at the final quality: mux copies the stream when its length already
        # matches the audio, else re-encodes
        with progress(n_frames, "render") as bar:
            with VideoWriter(tmp_video, settings.fps, crf=settings.crf, preset=settings.encoder_preset) as w:
                for f in frames:
                    check_cancel()
                    w.write(f)
                    bar.advance(1)
        info = mux(tmp_video, audio, out_path, metadata, crf=settings.crf, preset=settings.encoder_preset,
                   fps=settings.fps)
    return {"output": str(out_path), "duration": info.duration, "frames": info.n_frames, "fps": info.fps,
            "width": info.width, "height": info.height}


def _tmp_root(out_path: Path) -> str | None:
    # intermediate files next to the output when possible (same disk), else the system temp
    parent = out_path.parent
    return str(parent) if parent.is_dir() and os.access(parent, os.W_OK) else None


# ---------------------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------------------
@contextmanager
def _from_the_dialogue(spec, overrides: dict | None, key: str, safe: str):
    """A DependencyError about `key` when the dialogue's settings: set it (not a flag): point
    at that line, and say which value to put there."""
    try:
        yield
    except DependencyError as e:
        if (overrides or {}).get(key) is not None or not spec.source_path \
                or spec.setting_overrides().get(key) is None:
            raise
        from echo_cli.dialogue import yaml_line

        raise DependencyError(e.message, path=f"{yaml_line(spec.source_path, f'settings.{key}')} (settings.{key})",
                              fix=f"set settings.{key}: auto (or {safe}) in the dialogue") from None


def _ends_cancellation(fn):
    """A cancellation (request_cancel(), or the CLI's signal) ends with the render it stopped:
    a later render in the same process is not cancelled before it starts."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kw):
        cancel.starting()
        try:
            return fn(*args, **kw)
        finally:
            if cancel.requested():
                cancel.clear()
    return wrapper


@_ends_cancellation
def render(spec_path: str | Path | None = None, *, output: str | Path | None = None, preset: str | None = None,
           seed: int | None = None, checkpoint: str | Path | None = None, overrides: dict | None = None,
           reference=None, audio=None, user_video=None, user_audio=None, transcript=None,
           progress: Callable | None = None, dry_run: bool = False, explain: bool = False,
           ablate: tuple[str, ...] = ()) -> dict:
    """Render one dialogue. Returns {output, duration, frames, fps, settings, timings, ...}.

    overrides: RenderSettings keys from CLI flags (None values ignored). dry_run stops after
    preflight (validates everything, writes nothing). explain: add the LAU turn emotions and
    HBCU behaviour summaries used to the result ("explanation"). ablate: paper components to
    switch off at inference ("lpe", "hbcu", "lau") for ablation studies. Without spec_path,
    the inputs are given inline (reference, audio, user_video, user_audio, transcript: see
    load_spec), as batch manifests do.
    """
    timings: dict[str, float] = {}
    if overrides is not None and not isinstance(overrides, dict):
        raise UsageError(f"overrides must be a dict of setting: value, got {type(overrides).__name__}",
                         fix=f"e.g. overrides={{'fps': 30}}; settings: {', '.join(SETTING_KEYS)}")
    bad = sorted(str(k) for k in (overrides or {}) if k not in SETTING_KEYS)
    if bad:             # a typo would otherwise render with the preset's value, silently
        raise UsageError(f"unknown setting(s) {bad}", fix=f"use: {', '.join(SETTING_KEYS)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UsageError(f"seed must be an integer, got {seed!r}", fix="e.g. seed=0")
    if isinstance(ablate, str):
        ablate = (ablate,)
    unknown = set(ablate) - ABLATIONS
    if unknown:
        raise UsageError(f"unknown ablation {sorted(unknown)}", fix=f"use one of {sorted(ABLATIONS)}")

    @contextmanager
    def timed(name: str):
        check_cancel()
        t0 = time.perf_counter()
        logger.debug("stage %s", name)
        yield
        timings[name] = round(time.perf_counter() - t0, 3)
        check_cancel()

    with timed("spec"):
        spec = load_spec(spec_path, reference=reference, audio=audio, user_video=user_video,
                         user_audio=user_audio, output=output, transcript=transcript)
        upd: dict[str, Any] = {}
        if output is not None:
            from echo_cli.dialogue import OUTPUT_SUFFIXES

            if spec_path is not None and (Path(output).is_dir() or str(output).endswith(("/", os.sep))):
                output = Path(output) / spec.output.path.name     # a folder: the dialogue's file name in it
            if Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
                raise UsageError(f"--output must end in .mp4 (or .m4v/.mov), got '{Path(output).name}'",
                                 fix="name an .mp4 file, or an existing folder to write into")
            upd["output"] = spec.output.model_copy(update={"path": Path(output).resolve()})
        if seed is not None:
            if not 0 <= int(seed) <= SEED_MAX:
                raise UsageError(f"--seed must be between 0 and {SEED_MAX}, got {seed}", fix="pass a seed in that range")
            upd["seed"] = int(seed)
        if checkpoint is not None:
            upd["checkpoint"] = Path(checkpoint).resolve()
        if preset is not None:
            upd["preset"] = preset
        spec = spec.model_copy(update=upd) if upd else spec
    with timed("settings"):
        settings = plan_settings(spec, preset, overrides)
        if settings.device != "auto" or settings.attention != "auto":
            # an explicit --device/--attention that cannot run here fails now, not after
            # minutes of preprocessing (auto always resolves)
            # model.attention.place, one check at a time, so a refusal names the setting it is about
            from echo_cli.model.attention import resolve_backend, resolve_device
            with _from_the_dialogue(spec, overrides, "device", "cpu"):
                dev = resolve_device(settings.device)
            with _from_the_dialogue(spec, overrides, "attention", "sdpa"):
                resolve_backend(dev, settings.attention)
    with timed("preflight"):
        infos = preflight(spec)
    result: dict[str, Any] = {"output": str(spec.output.path), "preset": spec.preset, "seed": spec.seed,
                              "settings": settings.model_dump(), "timings": timings}
    if dry_run:
        result["dry_run"] = True
        return result
    _try_writing(spec.output.path)
    check_cache_writable(probe=True)

    # (the CLI keeps third-party prints off its stdout; a library caller's stdout is its own,
    # and redirecting sys.stdout here would swap it for every thread of the caller's process)
    return _render_stages(spec, settings, infos, result, timed, progress, explain, ablate)


def _render_stages(spec, settings, infos, result, timed, progress, explain=False, ablate=()) -> dict:
    with timed("preprocess"):
        pre = run_preprocess(spec, settings, infos)
        # to a temporary row file until the frame loop reads it chunk by chunk
        from echo_cli.api.animate import spill_avatar_whisper

        spill_avatar_whisper(pre)
    with timed("model"):
        model, ckpt = load_model(spec)
    with timed("audio"):
        tracks = load_tracks(spec, infos, pre)
        # at least one frame's worth: a 1 ms track gave an MP4 with no audio stream (the AAC
        # encoder emits nothing for a few samples); the mix pads it with silence
        tracks["n_samples"] = max(tracks["n_samples"], int(-(-16000 // settings.fps)))
    n_frames = int(-(-tracks["n_samples"] * settings.fps // 16000))
    metadata = {"model": Path(ckpt).stem, "checkpoint_sha256": _sha256_short(ckpt), "preset": spec.preset,
                "seed": spec.seed, "tool_version": __version__, "fps": settings.fps, "size": settings.size,
                "steps": settings.steps, "layout": spec.output.layout}     # eval finds the avatar's panel by it
    with timed("lcu"):
        anim = generate_frames(model, spec, settings, pre, n_frames, ablate)
    with timed("generate+render+encode"):
        user_info = infos.get("user_video")
        import tempfile

        with tempfile.TemporaryDirectory(prefix=f".{spec.output.path.stem}.echo-audio-",
                                         dir=_tmp_root(spec.output.path)) as td:
            res = encode(anim.frames, output_audio(spec, tracks, Path(td) / "mix.wav"), spec.output.path, settings,
                         metadata=metadata, layout=spec.output.layout,
                         user_video=spec.user.video if spec.user else None,
                         user_is_image=bool(user_info and user_info.is_image), n_frames=n_frames, progress=progress)
    cancel.finishing()      # the video is whole and in place
    result.update(res)
    result["checkpoint"] = str(ckpt)
    result["turns"] = [{"speaker": t.speaker, "start": round(t.start, 3), "end": round(t.end, 3),
                        "text": t.text, "emotion": t.emotion} for t in anim.turns]
    if explain:
        result["explanation"] = anim.explanation
    result["stage_notes"] = {k: v.get("notes", []) for k, v in pre.items() if isinstance(v, dict)}
    return result


def _sha256_short(path: Path) -> str:
    from echo_cli.hashing import file_sha256

    return file_sha256(path)[:16]


def warmup() -> None:
    """Batch workers call this once: import the heavy stage modules ahead of the first job."""
    for stage in ("preprocess", "generate"):
        try:
            stage_module(stage)
        except (DependencyError, ModelError):
            pass
