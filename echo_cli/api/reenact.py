"""Reenactment: drive a portrait with the facial motion of a real video (LivePortrait-style).

    from echo_cli.api.reenact import reenact, ReenactOptions
    summary = reenact("portrait.jpg", "driving.mp4", "out.mp4", ReenactOptions(size=512))

Pipeline: track the driving video (preprocess.face.track_face) -> encode its motion
(motion.space) -> retarget onto the reference face (motion.retarget: relative to the
driving clip's first frame, decoded on the reference's own neutral face) -> landmarks in
the reference image -> MeshWarpRenderer, frame by frame into an H.264 writer -> the
driving clip's audio muxed in (media.mux). Frames stream: memory does not grow with the
clip length (the landmark track itself is T x 478 x 3 floats, 5.7 kB a frame).

Self-reenactment: `reference_frame=0` takes the reference from the driving video itself.
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError, UsageError
from echo_cli.io_atomic import same_file

logger = log.get("echo_cli.api.reenact")

DEFAULT_MAX_SIZE = 1024        # output height when --size is not given (the reference's, capped)
TRACK_MAX_SIDE = 4096          # stills larger than this are tracked on a downscaled copy
MAX_AUTO_FPS = 60             # the driving clip's frame rate is followed up to this (else --fps)
MIN_FACE_PX = 16               # inter-ocular distance (px) below which a face is too small to animate


@dataclass(frozen=True)
class ReenactOptions:
    size: int | None = None              # output height (even); None: the reference's, capped at 1024
    fps: float | None = None             # output frame rate; None: the driving video's
    reference_frame: int | None = None   # take the reference from this frame of the driving video
    reference_search_s: float = 0.0      # ... or, when that frame has no face, the first frame with
                                         # one within this many seconds after it (a fade-in)
    face_index: int | None = None        # several faces in the reference: the n-th from the left
    expression_scale: float = 1.0        # scale of the driving expressions (relative motion)
    pose: bool = True                    # False: keep the reference head still (expressions only)
    max_frames: int | None = None        # render only the first N frames (tests, previews)
    crf: int = 20
    preset: str = "veryfast"
    audio: bool = True                   # mux the driving clip's audio when it has one


@dataclass
class ReenactResult:
    output: str
    frames: int
    fps: float
    width: int
    height: int
    seconds: float
    ms_per_frame: float
    audio: bool
    reference_landmarks: np.ndarray | None = None      # (478, 3) at output size
    target_landmarks: np.ndarray | None = None         # (T, 478, 3) driven landmarks, output pixels

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("reference_landmarks"); d.pop("target_landmarks")
        return d


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def _cached_reference_track(compute, source: str | Path, settings: dict):
    """The reference portrait's one-frame FaceTrack, from the preprocessing cache when its
    file (image, or the video the reference frame comes from) was tracked before with the
    same settings: keyed by the file's content hash, so a warm render runs no MediaPipe.
    Stored under the cache's "face" stage (same key scheme and tool versions as preprocess:
    a new MediaPipe invalidates it); a failed track (no face) is not stored."""
    from echo_cli.errors import EchoError
    from echo_cli.preprocess.cache import Cache, file_sha256
    from echo_cli.preprocess.face import TRACK_VERSION, TrackSettings, load_track, save_track

    c = Cache()
    try:
        key = c.key("face", file_sha256(source), {"reference": settings, "track": TrackSettings().key()},
                    TRACK_VERSION)
    except (OSError, EchoError):       # not a readable file: track without the cache
        return compute()
    track, _hit = c.get_or_compute("face", key, "npz", compute, save_track, load_track,
                                   {"source": str(source), "kind": "reference portrait"})
    return track


def load_reference(reference: str | Path | None, driving: str | Path, opts: ReenactOptions,
                   fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(rgb at output size, landmarks (478, 3) at output size)."""
    import cv2

    from echo_cli.preprocess.face import track_face
    from echo_cli.render.base import load_reference_image

    def tracked(img: np.ndarray, source, key: dict, where: str):
        H, W = img.shape[:2]
        # very large stills are tracked on a 4096 px copy (MediaPipe looks at 192-256 px crops
        # anyway; a full 8K copy per tracker pass costs memory, not accuracy)
        k = min(1.0, TRACK_MAX_SIDE / max(H, W))

        def track_now():
            small = img if k == 1.0 else cv2.resize(img, (int(W * k), int(H * k)), interpolation=cv2.INTER_AREA)
            try:
                return track_face(small, face_index=opts.face_index, source=str(source))
            except InputError as e:
                raise InputError(e.message.replace("the image", where), path=str(source), fix=e.fix) from None

        track = _cached_reference_track(track_now, source, {**key, "face_index": opts.face_index,
                                                            "max_side": TRACK_MAX_SIDE, "size": [W, H]})
        return track, k

    if opts.reference_frame is not None:
        from echo_cli.media.video_io import iter_frames
        k0 = int(opts.reference_frame)
        if k0 < 0:
            raise UsageError("--reference-frame must be >= 0", fix="give a frame index like 0")
        last = k0 + int(opts.reference_search_s * fps)
        stride = max(1, int(round(0.2 * fps)))          # candidates 0.2 s apart while searching
        settle = int(round(2.0 * fps)) if last > k0 else 0
        def frame_track(j: int, fr: np.ndarray):
            return tracked(fr, driving, {"reference_frame": j, "fps": float(fps)}, f"frame {j} of the video")

        img, track, first_err, seen, found = None, None, None, -1, None
        after: list = []            # (index, frame, brightness) while a fade-in may still be going on
        for seen, fr in enumerate(iter_frames(driving, fps=fps, max_frames=last + settle + 1)):
            if seen < k0 or (seen - k0) % stride:
                continue
            if found is not None:                       # a face was found after k0: wait out the fade
                if seen > found + settle:
                    break
                after.append((seen, fr, float(fr.mean())))
                continue
            if seen > last:
                break
            try:
                track, k = frame_track(seen, fr)
            except InputError as e:
                if "no face" not in e.message:
                    raise
                first_err = first_err or e
                continue
            img, found = fr, seen
            if seen == k0:
                break
            after.append((seen, fr, float(fr.mean())))
        if seen < k0:
            raise UsageError(f"the driving video has no frame {k0}", fix="give a smaller --reference-frame")
        if track is None:
            if last == k0:
                raise first_err
            raise InputError(f"no face in frames {k0}-{min(seen, last)} ({(min(seen, last) - k0) / fps:.1f} s) of the "
                             "video, where the reference portrait is taken from", path=str(driving),
                             fix="trim the video to start on the face, or give a reference image")
        if after and after[0][2] < 0.9 * max(b for _, _, b in after):
            # the first face MediaPipe finds in a fade-in is barely lit: take the first frame
            # within 2 s that is as bright as the picture gets
            peak = max(b for _, _, b in after)
            for j, fr, b in after[1:]:
                if b < 0.9 * peak:
                    continue
                try:
                    track, k = frame_track(j, fr)
                except InputError:
                    continue
                img, found = fr, j
                break
        del after
        if found != k0:
            logger.warning("%s: no face in frame %d; the reference portrait is frame %d (%.1f s in)",
                           driving, k0, found, found / fps)
        src = f"{driving}#frame{found}"
    else:
        if reference is None:
            raise UsageError("no reference image", fix="give REFERENCE or --reference-frame N")
        from echo_cli.media.probe import probe

        if Path(reference).is_file() and not probe(reference).is_image:
            # a video as the reference: its first frame with a face, as for a video avatar
            import dataclasses

            return load_reference(None, reference, dataclasses.replace(
                opts, reference_frame=0, reference_search_s=max(opts.reference_search_s, 10.0)), fps)
        img = load_reference_image(reference)
        src = str(reference)
        track, k = tracked(img, reference, {"reference_frame": None, "fps": None}, "the image")
    H, W = img.shape[:2]
    # float32 always (the cache stores float32): a cached and a fresh run give the same pixels
    lm = track.landmarks[0].astype(np.float32).astype(np.float64) / k
    from echo_cli.motion.measures import inter_ocular
    iod = float(inter_ocular(lm)[0])
    if iod < MIN_FACE_PX:
        raise InputError(f"the face is too small to animate ({iod:.0f} px between the eyes)", path=src,
                         fix="use a larger image of the face (at least ~64 px wide)")
    out_h = _even(opts.size) if opts.size else _even(min(H, DEFAULT_MAX_SIZE))
    out_w = _even(W * out_h / H)
    if (out_w, out_h) != (W, H):
        interp = cv2.INTER_AREA if out_h < H else cv2.INTER_CUBIC
        img = cv2.resize(img, (out_w, out_h), interpolation=interp)
        lm = lm * np.array([out_w / W, out_h / H, out_w / W])
    return np.ascontiguousarray(img), lm.astype(np.float32)


def drive_landmarks(ref_lm: np.ndarray, size: tuple[int, int], track, opts: ReenactOptions, space=None
                    ) -> np.ndarray:
    """Driving FaceTrack -> (T, 478, 3) landmarks for the reference image (relative motion)."""
    from echo_cli.motion.retarget import Reference, retarget, to_reference_landmarks
    from echo_cli.motion.space import default_space

    space = space or default_space()
    motion = space.encode(track)
    ref = Reference.from_landmarks(space, ref_lm, size[0], size[1])
    out = retarget(space, motion, (track.width, track.height), ref, anchor=0,
                   expression_scale=opts.expression_scale, pose=opts.pose)
    return to_reference_landmarks(space, out, ref)


def reenact(reference: str | Path | None, driving: str | Path, output: str | Path,
            opts: ReenactOptions = ReenactOptions(), progress=None, keep_landmarks: bool = False
            ) -> ReenactResult:
    """Render `output` (MP4) of the reference driven by `driving`; see the module docstring."""
    from echo_cli.media.mux import mux
    from echo_cli.media.probe import probe
    from echo_cli.media.video_io import VideoWriter, iter_frames
    from echo_cli.preprocess.face import track_face
    from echo_cli.render.warp import MeshWarpRenderer

    driving, output = Path(driving), Path(output)
    if not driving.is_file():
        raise InputError("driving video not found", path=driving, fix="check the path")
    for what, src in (("driving video", driving), ("reference", reference)):
        if src is not None and same_file(output, src):
            raise UsageError(f"the output is the {what}; rendering would overwrite it", path=output,
                             fix="write the video to another file")
    info = probe(driving)
    if not info.has_video or info.is_image:
        raise InputError("the driving input is not a video", path=driving, fix="give a video with a face")
    fps = float(opts.fps or info.fps or 25.0)
    if not opts.fps and fps > MAX_AUTO_FPS:
        # a 240 fps slow-motion clip (or a broken rate tag) would make 4-40x the frames
        logger.warning("%s is %g fps; the output is %d fps (choose with --fps, up to 120)", driving, fps, MAX_AUTO_FPS)
        fps = float(MAX_AUTO_FPS)
    t0 = time.perf_counter()
    ref_rgb, ref_lm = load_reference(reference, driving, opts, fps)
    out_h, out_w = ref_rgb.shape[:2]
    if opts.max_frames:
        frames = np.stack(list(iter_frames(driving, fps=fps, max_frames=int(opts.max_frames))))
        track = track_face(frames, fps=fps)
        del frames
    else:
        track = track_face(driving, fps=fps)
    targets = drive_landmarks(ref_lm, (out_w, out_h), track, opts)
    renderer = MeshWarpRenderer()
    renderer.prepare(ref_rgb, ref_lm)
    with_audio = bool(opts.audio and info.has_audio)
    t_render = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="echo-reenact-", dir=output.parent if output.parent.exists() else None) as td:
        video_path = Path(td) / "video.mp4" if with_audio else output
        with VideoWriter(video_path, fps, (out_w, out_h), crf=opts.crf, preset=opts.preset) as writer:
            for i, frame in enumerate(renderer.render_iter(targets)):
                writer.write(frame)
                if progress is not None:
                    progress.advance(1)
        render_s = time.perf_counter() - t_render
        if with_audio:
            # the driving clip's audio, from its start; mux fits the video to the audio length
            seconds = len(targets) / fps
            if opts.max_frames:
                from echo_cli.media import ffmpeg as ff
                wav = Path(td) / "audio.wav"
                ff.run(ff.base_args() + ["-i", str(driving), "-vn", "-ac", "1", "-ar", "16000",
                                         "-t", f"{seconds:.6f}", str(wav)], what="cut the driving audio",
                       path=driving)
                audio_src = wav
            else:
                audio_src = driving
            muxed = mux(video_path, audio_src, output, metadata={"echo_command": "reenact",
                                                                   "reference": str(reference or driving),
                                                                   "driving": str(driving)},
                        crf=opts.crf, preset=opts.preset, fps=fps)
    n = len(targets)
    if with_audio and muxed.n_frames:
        n = int(muxed.n_frames)     # muxing fits the video to the audio: the file's own count
    res = ReenactResult(output=str(output), frames=n, fps=fps, width=out_w, height=out_h,
                        seconds=time.perf_counter() - t0, ms_per_frame=1000.0 * render_s / max(n, 1),
                        audio=with_audio)
    if keep_landmarks:
        res.reference_landmarks, res.target_landmarks = ref_lm, targets
    logger.info("reenacted %d frames (%dx%d, %.1f ms/frame render+encode) -> %s", n, out_w, out_h,
                res.ms_per_frame, output)
    return res
