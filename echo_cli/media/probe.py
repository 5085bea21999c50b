"""`probe(path) -> MediaInfo`: the facts later stages need, display-oriented.

Why PyAV and not ffprobe: the ffmpeg that imageio-ffmpeg ships has no ffprobe next to it,
and parsing `ffmpeg -i` text is fragile across versions. PyAV (a dependency of
faster-whisper, so always installed with us) reads the container with libavformat and
gives typed values. Rotation lives in the display-matrix side data, which PyAV exposes on
decoded frames, so one frame is decoded for videos. If PyAV is unavailable the fallback
parses `ffmpeg -i` stderr (kept small and tested).
"""
from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

from echo_cli import log
from echo_cli.errors import InputError
from echo_cli.schema import MediaInfo

logger = log.get("echo_cli.media.probe")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_IMAGE_CODECS = {"mjpeg", "png", "bmp", "webp", "tiff", "jpegls", "jpeg2000"}


def _check_file(path: Path) -> None:
    if not path.exists():
        if path.is_symlink():
            raise InputError("broken or looping symbolic link", path=path,
                             fix="point the link at the media file, or give the file itself")
        raise InputError("file not found", path=path, fix="check the path")   # a YAML's own paths are checked (and explained) by its loader
    if not path.is_file():
        raise InputError("not a file", path=path, fix="give a media file, not a folder")
    if path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", path=path, fix="re-export or re-copy the media")
    if not os.access(path, os.R_OK):
        raise InputError("permission denied", path=path, fix="make the file readable (chmod a+r) for this user")


def _display_size(width: int, height: int, sar: tuple[int, int], rotation: int) -> tuple[int, int]:
    """Square-pixel, rotated size: what the user sees and what iter_frames yields."""
    num, den = sar
    if num > 0 and den > 0 and num != den:
        width = int(round(width * num / den))
    if rotation % 180 == 90:
        width, height = height, width
    return width, height


def _norm_rotation(deg: float | int | None) -> int:
    if deg is None:
        return 0
    return int(round(float(deg))) % 360


_PROBED: dict[tuple, MediaInfo] = {}
_PROBED_MAX = 512


def probe(path: str | Path) -> MediaInfo:
    """Facts about one media file; InputError when it is missing, empty or not media.

    Memoised per process by (path, size, mtime, inode), like hashing.file_sha256: a render
    probes each input in preflight, preprocessing, the reference load and the mix, and an
    edited file is probed again. MediaInfo is frozen, so sharing it is safe.
    """
    path = Path(path)
    _check_file(path)
    from echo_cli.hashing import stat_key

    key = stat_key(path)
    info = _PROBED.get(key)
    if info is not None:
        return info
    try:
        import av  # noqa: F401
    except ImportError:
        logger.debug("PyAV unavailable; parsing ffmpeg -i output")
        info = probe_ffmpeg_text(path)
    else:
        info = _probe_av(path)
    if len(_PROBED) >= _PROBED_MAX:           # a batch worker probes many files: stay bounded
        _PROBED.clear()
    _PROBED[key] = info
    return info


def _attached_pic(stream) -> bool:
    try:
        import av.stream

        return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))
    except (AttributeError, TypeError, ValueError):       # an older PyAV: no disposition flags
        return False


def _probe_av(path: Path) -> MediaInfo:
    import av

    try:
        container = av.open(str(path))
    except Exception as e:  # av.error.InvalidDataError and friends
        reason = getattr(e, "strerror", None) or e.__class__.__name__
        raise InputError(f"not a readable media file ({reason})", path=path, fix="re-export it as MP4/H.264, WAV or JPEG/PNG") from e
    with container:
        astreams = list(container.streams.audio)
        # cover art in an audio file (MP3/M4A "attached picture") is not a video
        vstreams = [v for v in container.streams.video if not _attached_pic(v)]
        duration = float(container.duration) / 1e6 if container.duration else 0.0
        fmt = container.format.name or ""
        kw: dict = {}
        is_image = False
        if vstreams:
            v = vstreams[0]
            cc = v.codec_context
            codec = cc.name or ""
            is_image = (codec in _IMAGE_CODECS and (v.frames or 0) <= 1) or "image2" in fmt or fmt.endswith("_pipe")
            sar_f = v.sample_aspect_ratio or cc.sample_aspect_ratio
            sar = (sar_f.numerator, sar_f.denominator) if sar_f else (1, 1)
            avg = v.average_rate
            base = v.base_rate
            fps = float(avg) if avg else float(base or 0)
            vfr = bool(avg and base and abs(float(avg) - float(base)) > 0.01 * float(base))
            rotation = 0
            try:
                frame = next(container.decode(v))
                rotation = _norm_rotation(getattr(frame, "rotation", 0))
                width, height = frame.width, frame.height
            except StopIteration:
                width, height = cc.width, cc.height
            except Exception as e:
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    raise InputError(f"image cannot be decoded ({e.__class__.__name__})", path=path,
                                     fix="export it again as PNG or JPEG") from e
                raise InputError(f"video stream cannot be decoded ({e.__class__.__name__})", path=path,
                                 fix="re-export the video as MP4/H.264") from e
            vdur = float(v.duration * v.time_base) if v.duration and v.time_base else duration
            if is_image:
                fps, vdur = 0.0, 0.0
            n_frames = int(v.frames or 0) or (1 if is_image else int(round(vdur * fps)))
            dw, dh = _display_size(width, height, sar, rotation)
            kw.update(width=dw, height=dh, fps=fps, n_frames=n_frames, sar=sar, rotation=rotation,
                      vfr=vfr, video_codec=codec, pix_fmt=cc.format.name if cc.format else "")
            if is_image:
                duration = 0.0
        if astreams:
            a = astreams[0]
            kw.update(audio_sr=int(a.codec_context.sample_rate or a.rate or 0),
                      audio_channels=int(a.codec_context.channels or 0),
                      audio_codec=a.codec_context.name or "")
            if not duration and a.duration and a.time_base:
                duration = float(a.duration * a.time_base)
    if not vstreams and not astreams:
        raise InputError("no video or audio stream", path=path, fix="give a video, audio or image file")
    return MediaInfo(path=str(path), duration=duration, has_video=bool(vstreams),
                     has_audio=bool(astreams), is_image=is_image, **kw)


# ---------------------------------------------------------------------------------------
# Fallback: parse `ffmpeg -i` (stderr). Only used when PyAV is missing.
# ---------------------------------------------------------------------------------------
_DUR = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VID = re.compile(r"Stream #\S+.*?: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+)(?: \[SAR (\d+):(\d+))?")
_FPS = re.compile(r"([\d.]+) fps")
_TBR = re.compile(r"([\d.]+)k? tbr")
_AUD = re.compile(r"Stream #\S+.*?: Audio: (\w+).*?, (\d+) Hz, ([\w.()]+)")
_ROT = re.compile(r"(?:rotation of|rotate\s*:)\s*(-?[\d.]+)")


def probe_ffmpeg_text(path: str | Path) -> MediaInfo:
    import subprocess

    from echo_cli.media.ffmpeg import ffmpeg_exe

    path = Path(path)
    _check_file(path)
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, check=False).stderr
    if "Invalid data" in text or "Stream #" not in text:
        raise InputError("not a readable media file", path=path, fix="re-export it as MP4/H.264, WAV or JPEG/PNG")
    duration = 0.0
    if m := _DUR.search(text):
        duration = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    kw: dict = {}
    has_video = has_audio = False
    text_video = "\n".join(l for l in text.splitlines() if "(attached pic)" not in l)
    if m := _VID.search(text_video):
        has_video = True
        codec, pix_fmt, w, h = m[1], m[2], int(m[3]), int(m[4])
        sar = (int(m[5]), int(m[6])) if m[5] else (1, 1)
        if sar[0] == 0 or sar[1] == 0:
            sar = (1, 1)
        line = text_video[m.start():].splitlines()[0]
        fps_m = _FPS.search(line) or _TBR.search(line)
        fps = float(fps_m[1]) if fps_m else 0.0
        tbr = _TBR.search(line)
        vfr = bool(tbr and fps and abs(float(tbr[1]) - fps) > 0.01 * fps)
        rot = _ROT.search(text)
        # same convention as PyAV's frame.rotation (checked in tests/test_media.py)
        rotation = _norm_rotation(rot[1] if rot else 0)
        is_image = codec in _IMAGE_CODECS and path.suffix.lower() in IMAGE_SUFFIXES
        dw, dh = _display_size(w, h, sar, rotation)
        kw.update(width=dw, height=dh, fps=0.0 if is_image else fps, sar=sar, rotation=rotation, vfr=vfr,
                  is_image=is_image, video_codec=codec, pix_fmt=pix_fmt,
                  n_frames=1 if is_image else int(round(duration * fps)))
        if is_image:
            duration = 0.0
    if m := _AUD.search(text):
        has_audio = True
        layout = m[3]
        ch = {"mono": 1, "stereo": 2}.get(layout, int(layout[0]) if layout[:1].isdigit() else 0)
        kw.update(audio_codec=m[1], audio_sr=int(m[2]), audio_channels=ch)
    return MediaInfo(path=str(path), duration=duration, has_video=has_video, has_audio=has_audio, **kw)
