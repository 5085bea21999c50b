"""Streaming video decode and encode through ffmpeg pipes (constant memory).

`iter_frames` yields display-oriented RGB uint8 frames with square pixels: ffmpeg's
autorotate applies the display matrix, `scale` to the probed display size absorbs a
non-square SAR, `fps` resamples variable or foreign frame rates to a constant rate.
`VideoWriter` pipes RGB frames into libx264 (yuv420p, even size) and writes a temp sibling
that is renamed on a clean close, so a killed writer leaves nothing at the output path.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from echo_cli import log
from echo_cli.errors import InputError, OutputError
from echo_cli.io_atomic import temp_sibling
from echo_cli.media import ffmpeg as ff
from echo_cli.media.probe import probe

logger = log.get("echo_cli.media.video_io")

Size = int | tuple[int, int] | None


def make_readable(path: Path) -> None:
    """mkstemp creates 0600 files; a finished video gets the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def target_size(width: int, height: int, size: Size) -> tuple[int, int]:
    """Output (w, h): None keeps the display size; an int sets the height and keeps the
    aspect ratio (width rounded to even); a (w, h) tuple is used as is."""
    if size is None:
        return width, height
    if isinstance(size, int):
        w = max(2, int(round(width * size / height / 2)) * 2)
        return w, int(size)
    w, h = size
    return int(w), int(h)


def iter_frames(path: str | Path, fps: float | None = None, size: Size = None, *,
                start: float = 0.0, max_frames: int | None = None) -> Iterator["np.ndarray"]:  # noqa: F821
    """Yield (H, W, 3) uint8 RGB frames; resampled to `fps` when given. Images yield one frame.

    `start` seeks (seconds), `max_frames` stops early (ffmpeg is stopped, not drained).
    """
    import numpy as np

    path = Path(path)
    info = probe(path)
    if not info.has_video:
        raise InputError("no video stream", path=path, fix="give a video or an image file")
    w, h = target_size(info.width, info.height, size)
    import ffmpeg as ffmpeg_python  # ffmpeg-python builds the graph; we run the arg list

    in_kw = {"ss": f"{start:.6f}"} if start and not info.is_image else {}
    v = ffmpeg_python.input(str(path), **in_kw).video
    if fps and not info.is_image:
        v = v.filter("fps", fps=f"{float(fps):.6f}")
    v = v.filter("scale", w, h, flags="bicubic").filter("setsar", 1)
    out_kw = {"format": "rawvideo", "pix_fmt": "rgb24"}
    if info.is_image or max_frames:
        out_kw["frames:v"] = 1 if info.is_image else int(max_frames)
    args = ff.compile_graph(v.output("pipe:1", **out_kw))
    frame_bytes = w * h * 3
    with tempfile.TemporaryFile() as errf:
        proc = ff.popen(args, stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL,
                        bufsize=frame_bytes)
        n = 0
        try:
            while True:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break
                n += 1
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            rc = proc.wait()
        if rc != 0 and n == 0:
            errf.seek(0)
            raise InputError(f"cannot decode video: {ff.tail(errf.read()) or f'ffmpeg exit {rc}'}",
                             path=path, fix="re-export the video as MP4/H.264")
    if n == 0:
        raise InputError("video has no decodable frames", path=path, fix="check the file plays")


def read_image(path: str | Path, size: Size = None) -> "np.ndarray":  # noqa: F821
    """One RGB frame from an image (or the first frame of a video)."""
    return next(iter(iter_frames(path, size=size, max_frames=1)))


class VideoWriter:
    """Context manager: `.write(frame)` RGB uint8 (H, W, 3) frames into an H.264 file.

    Odd sizes are cropped by one pixel to the even size yuv420p needs. The file appears at
    `path` only when the block exits cleanly; on an exception it is deleted.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] | None = None,
                 crf: int = 20, preset: str = "veryfast", audio: str | Path | None = None,
                 metadata: dict | None = None):
        self.path = Path(path)
        # audio: a sound file encoded into the same MP4 as mux() would (AAC 48 kHz, metadata,
        # +faststart): the final file in one ffmpeg pass, no separate mux process
        self.audio = Path(audio) if audio is not None else None
        self.metadata = metadata
        self.fps = float(fps)
        self.size = tuple(size) if size else None   # (w, h); None: taken from the first frame
        self.crf = int(crf)
        self.preset = preset
        self.n_frames = 0
        self._proc: subprocess.Popen | None = None
        self._tmp: Path | None = None
        self._errf = None

    def _start(self, w: int, h: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = temp_sibling(self.path)
        except OSError as e:
            raise OutputError(f"cannot write here: {e.strerror}", path=self.path.parent,
                              fix="choose a writable output folder") from e
        self._errf = tempfile.TemporaryFile()
        video_in = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{self.fps:.6f}",
                    "-i", "pipe:0"]
        video_out = ["-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0,setsar=1,format=yuv420p",
                     "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p"]
        if self.audio is None:
            args = ff.base_args() + video_in + video_out + ["-movflags", "+faststart", "-an"]
        else:
            from echo_cli.media.mux import audio_output_args

            args = (ff.base_args() + video_in + ["-i", str(self.audio), "-map", "0:v:0"] + video_out
                    + audio_output_args(1, self.metadata))
        args += ["-f", "mp4", str(self._tmp)]
        self._proc = ff.popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errf)

    def write(self, frame) -> None:
        import numpy as np

        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB frame, got {frame.shape}")
        h, w = frame.shape[:2]
        if self._proc is None:
            if self.size is None:
                self.size = (w, h)
            self._start(*self.size)
        if (w, h) != tuple(self.size):
            raise ValueError(f"frame size {w}x{h} differs from the writer's {self.size[0]}x{self.size[1]}")
        try:
            self._proc.stdin.write(frame.tobytes())
        except BrokenPipeError as e:
            raise self._failure("video encoder stopped", self._stderr()) from e
        self.n_frames += 1

    def _failure(self, what: str, detail: str) -> OutputError:
        if not self.path.parent.is_dir():       # deleted under a running render (a clean-up job)
            return OutputError("the output folder was removed while the video was written",
                               path=self.path.parent, fix="keep the folder until the render ends, and rerun")
        return OutputError(f"{what}: {detail}", path=self.path, fix="check free disk space and the output folder")

    def _stderr(self) -> str:
        if self._errf is None:
            return ""
        self._errf.seek(0)
        return ff.tail(self._errf.read())

    def close(self) -> None:
        """Finish the encode and move the file into place."""
        if self._proc is None:
            raise OutputError("no frames were written", path=self.path, fix="the video would be empty")
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self._proc.wait()
        if rc != 0:
            msg = self._stderr()
            self.abort()
            raise self._failure("video encoder failed", msg or f"exit {rc}")
        make_readable(self._tmp)
        os.replace(self._tmp, self.path)
        self._tmp = None
        self._cleanup()

    def abort(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._errf is not None:
            self._errf.close()
            self._errf = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
