"""Final muxing: H.264 yuv420p + AAC in MP4, +faststart, video fitted to the audio length.

Length rule: the audio decides. The video gets exactly n = ceil(audio_seconds * fps)
frames: a short video is padded by cloning its last frame, a long one is trimmed. So
|video - audio| < 1 frame, and both streams start at 0 (timestamps reset), which keeps
them in sync. Metadata (model, preset, seed, tool version, ...) goes into the container
as MP4 metadata tags. The output is written to a temp sibling and renamed (io_atomic): a
killed process leaves no file at the output path.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from echo_cli import __version__, log
from echo_cli.errors import InputError, OutputError
from echo_cli.io_atomic import atomic_path
from echo_cli.media import ffmpeg as ff
from echo_cli.media.probe import probe
from echo_cli.media.video_io import make_readable
from echo_cli.schema import SAMPLE_RATE, MediaInfo

logger = log.get("echo_cli.media.mux")

AUDIO_RATE_OUT = 48000     # AAC at 48 kHz plays everywhere; 16 kHz AAC trips some players
AUDIO_BITRATE = "128k"


def _metadata_args(metadata: Mapping[str, object] | None) -> list[str]:
    meta = {"tool": "echo-cli", "tool_version": __version__}
    meta.update({str(k): "" if v is None else str(v) for k, v in (metadata or {}).items()})
    # a human-readable summary in `comment`, which every player shows
    meta.setdefault("comment", " ".join(f"{k}={v}" for k, v in meta.items() if k != "comment"))
    args: list[str] = []
    for k, v in meta.items():
        key = "".join(c if c.isalnum() or c == "_" else "_" for c in k)
        args += ["-metadata", f"{key}={v}"]
    return args


def frames_for(seconds: float, fps: float) -> int:
    """The length rule: frames of a video that covers `seconds` of audio at `fps`."""
    return max(1, math.ceil(seconds * fps - 1e-6))


def fit_length(frames: Iterable, n: int) -> Iterator:
    """The length rule on a frame stream: exactly n frames, a long stream trimmed (the rest
    is never pulled: the source's generator is closed), a short one padded with its last
    frame; nothing for an empty stream. `mux` applies the same rule to a file with ffmpeg."""
    it = iter(frames)
    last, k = None, 0
    try:
        while k < n:
            try:
                last = next(it)
            except StopIteration:
                break
            yield last
            k += 1
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    while last is not None and k < n:
        yield last
        k += 1


def audio_output_args(audio_input: int, metadata: Mapping[str, object] | None = None) -> list[str]:
    """ffmpeg output options for the final file's sound and container, the same as `mux`
    uses: input `audio_input`'s first audio stream from 0, AAC at 48 kHz, metadata tags,
    +faststart. VideoWriter(audio=...) encodes the picture with these in one pass."""
    return (["-map", f"{audio_input}:a:0", "-af", f"asetpts=PTS-STARTPTS,aresample={AUDIO_RATE_OUT}",
             "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(AUDIO_RATE_OUT)]
            + _metadata_args(metadata) + ["-movflags", "+faststart+use_metadata_tags"])


def mux(video_path: str | Path, audio, out_path: str | Path, metadata: Mapping[str, object] | None = None,
        *, crf: int = 20, preset: str = "veryfast", fps: float | None = None) -> MediaInfo:
    """Write `out_path` (MP4: H.264 yuv420p + AAC) from a video file and an audio track.

    audio: float32 mono array at 16 kHz, or a path to any file with an audio stream (a
    path keeps memory flat: ffmpeg reads it directly).
    fps: output frame rate (default: the video's). Returns the probed output.
    """
    import ffmpeg as ffmpeg_python
    import numpy as np

    video_path, out_path = Path(video_path), Path(out_path)
    vinfo = probe(video_path)
    if not vinfo.has_video:
        raise InputError("no video stream to mux", path=video_path, fix="give the rendered video")
    fps = float(fps or vinfo.fps or 25.0)

    with tempfile.TemporaryDirectory(prefix="echo-mux-") as td:
        if isinstance(audio, (str, Path)):
            from echo_cli.media.audio_io import count_samples

            audio_path = Path(audio)
            # exact length of the decoded track, counted by streaming (an hour-long track is
            # never held whole; render passes its mix here as a float32 WAV)
            seconds = count_samples(audio_path) / SAMPLE_RATE
            a_in = ffmpeg_python.input(str(audio_path))["a:0"]
        else:
            wave = np.asarray(audio, dtype=np.float32).reshape(-1)
            if wave.size == 0:
                raise InputError("audio track is empty", fix="render with a non-empty avatar audio")
            seconds = wave.size / SAMPLE_RATE
            raw = Path(td) / "audio.f32"
            with open(raw, "wb") as f:                  # block by block: no whole-track copies
                for s in range(0, wave.size, 1 << 20):
                    f.write(np.clip(wave[s:s + (1 << 20)], -1, 1).astype("<f4").tobytes())
            a_in = ffmpeg_python.input(str(raw), format="f32le", ar=SAMPLE_RATE, ac=1)["a:0"]
        n_frames = frames_for(seconds, fps)

        v = ffmpeg_python.input(str(video_path))["v:0"]
        # Same-length h264 yuv420p at the target fps (what VideoWriter makes): copy, no re-encode.
        can_copy = (vinfo.video_codec == "h264" and vinfo.pix_fmt == "yuv420p" and not vinfo.vfr
                    and abs(vinfo.fps - fps) < 1e-3 and vinfo.n_frames == n_frames
                    and vinfo.rotation == 0 and vinfo.sar in ((1, 1), (0, 1)))
        # the track starts at the container's time 0: a late-starting stream is padded with
        # silence (as audio_io decodes it), so sound keeps its place against the picture
        a = a_in.filter("aresample", **{"async": 1, "first_pts": 0}).filter("aresample", AUDIO_RATE_OUT)
        out_kw = {"c:a": "aac", "b:a": AUDIO_BITRATE, "ar": AUDIO_RATE_OUT,
                  "movflags": "+faststart+use_metadata_tags", "f": "mp4"}
        if can_copy:
            out_kw["c:v"] = "copy"
        else:
            v = (v.filter("fps", fps=f"{fps:.6f}")
                  .filter("setpts", "PTS-STARTPTS")
                  .filter("tpad", stop=-1, stop_mode="clone")            # pad: clone the last frame
                  .filter("trim", end_frame=n_frames)                     # trim: exactly n frames
                  .filter("setpts", "PTS-STARTPTS")
                  .filter("crop", "trunc(iw/2)*2", "trunc(ih/2)*2", 0, 0)  # yuv420p needs even sizes
                  .filter("setsar", 1)
                  .filter("format", "yuv420p"))
            out_kw.update({"c:v": "libx264", "preset": preset, "crf": int(crf), "pix_fmt": "yuv420p",
                           "r": f"{fps:.6f}"})
        with atomic_path(out_path) as tmp:
            node = ffmpeg_python.output(v, a, str(tmp), **out_kw)
            args = ff.compile_graph(node)
            # metadata before the output file name (ffmpeg-python puts the name last)
            args = args[:-1] + _metadata_args(metadata) + args[-1:]
            ff.run(args, what="mux video and audio", path=out_path, error=OutputError,
                   fix="check free disk space; see the ffmpeg message")
            make_readable(tmp)
    logger.info("wrote %s (%.2f s, %d frames at %g fps)", out_path, seconds, n_frames, fps)
    return probe(out_path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """Container metadata tags (what `mux` wrote), via PyAV."""
    import av

    with av.open(str(path)) as c:
        return dict(c.metadata)


# ---------------------------------------------------------------------------------------
# Composition helpers used before encoding (layout: side-by-side).
# ---------------------------------------------------------------------------------------
def side_by_side(avatar_frames: Iterable, user_path: str | Path, fps: float,
                 user_is_image: bool = False) -> Iterator:
    """Yield frames with the user's video (scaled to the avatar's height) left of the avatar.

    The user video is decoded as a stream at `fps`; when it ends first its last frame is
    held. The combined width is kept even.
    """
    import numpy as np

    from echo_cli.media.video_io import iter_frames

    user_iter = None
    last_user = None
    for frame in avatar_frames:
        h = frame.shape[0]
        if user_iter is None:
            user_iter = iter(iter_frames(user_path, fps=None if user_is_image else fps, size=h))
        try:
            u = next(user_iter)
            last_user = u
        except StopIteration:
            u = last_user if last_user is not None else np.zeros((h, h, 3), np.uint8)
        out = np.concatenate([u, frame], axis=1)
        if out.shape[1] % 2:
            out = out[:, :-1]
        yield out
