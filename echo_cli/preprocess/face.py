"""Face tracking with MediaPipe 0.10.14 face mesh (478 landmarks with iris), one face per clip.

Stages, per frame:
1. Full-frame FaceMesh in video mode (detector runs only when tracking is lost).
2. When the full frame finds nothing (small faces: full-body shots, ../shared/data/clips/s13.mp4,
   portraits/full3.png) a second FaceMesh runs on a square crop around the face, located
   by the previous landmarks or by the full-range face detector (model_selection=1); the
   landmarks are mapped back to frame pixels.
Single-face clips run in fixed chunks of consecutive frames (TrackSettings.chunk_*), each
from a fresh graph after a few warm-up frames, on up to track_threads() threads: MediaPipe
runs on one core per graph, so two graphs use both cores of the target machine. The
chunking never depends on the thread count, so the track does not either.
3. With TrackSettings.mirror, the full-frame mesh also runs on the mirrored frame and
   the un-mirrored landmarks are averaged with the direct ones: MediaPipe's per-frame errors
   on a face and on its mirror image are largely independent, so the average is steadier
   (held-out talking clips: mouth opening of the direct and mirrored tracks correlates only
   0.69-0.98), at twice the tracking time. Training data uses it; renders do not by default.
Then, over the whole clip: short gaps (<= 0.5 s) are interpolated, landmarks are smoothed
with a One-Euro filter, head pose is fitted to the canonical face and a steady square crop
box is derived. Landmarks are in display pixels of the frame: x, y, and z in x units.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from echo_cli import log
from echo_cli.errors import DependencyError, InputError
from echo_cli.media.kinds import IMAGE_EXTS
from echo_cli.preprocess.crop import (DEFAULT_MARGIN, crop_image, from_crop, landmark_bounds, smooth_boxes,
                                      square_boxes)
from echo_cli.preprocess.smoothing import OneEuroParams, one_euro
from echo_cli.schema import N_LANDMARKS, FaceTrack

logger = log.get("echo_cli.preprocess.face")



@dataclass(frozen=True)
class TrackSettings:
    """Everything that changes a face track (part of the cache key)."""
    max_faces: int = 2                  # faces MediaPipe tracks at once (to choose one)
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    crop_size: int = 256                # side of the second-pass crop fed to MediaPipe
    crop_margin: float = 2.2            # second-pass crop side / face extent
    max_gap_s: float = 0.5              # gaps up to this long are interpolated (valid=True)
    min_found: float = 0.5              # below this fraction of frames with a face: InputError
    box_margin: float = DEFAULT_MARGIN  # output crop box side / landmark extent
    smoothing: OneEuroParams = field(default_factory=OneEuroParams)
    smooth: bool = True
    # Single-face clips are tracked in chunks of consecutive frames, each from a fresh
    # MediaPipe graph, so the chunks can run on several cores at once. The chunking is
    # fixed by these settings and the frame size alone (never by the thread count), so
    # one or two threads give identical tracks. Each chunk first re-tracks the last
    # `chunk_warmup` frames of the one before (results dropped): MediaPipe's tracking
    # ROI has then settled, and the seam stays within 0.4 % of the eye distance of an
    # unbroken run (d10.mp4; 5 % without warm-up).
    chunk_frames: int = 96              # frames per chunk (at most)
    chunk_mb: int = 64                  # ... and at most this many MB of RGB frames per chunk
    chunk_warmup: int = 4
    mirror: bool = False                # also track the mirrored frame and average (2x time)

    def __post_init__(self):
        if self.chunk_frames < 1 or self.chunk_mb < 1 or self.chunk_warmup < 0:
            raise ValueError("chunk_frames and chunk_mb must be >= 1, chunk_warmup >= 0")

    def key(self) -> dict:
        d = dataclasses.asdict(self)
        if not self.mirror:         # tracks cached before the option existed keep their keys
            d.pop("mirror")
        return d

    def chunk_len(self, frame_bytes: int) -> int:
        """Frames per chunk for frames of this size (bounds the memory of frames in flight)."""
        by_memory = (self.chunk_mb << 20) // max(frame_bytes, 1)
        return int(max(min(16, self.chunk_frames), min(self.chunk_frames, by_memory)))


# --------------------------------------------------------------------------------------
# Frame sources
# --------------------------------------------------------------------------------------

def _probe_video(path: Path) -> tuple[float, int, int]:
    """(fps, display width, display height) via PyAV (rotation and SAR applied)."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise InputError("no video stream", path=path, fix="pass a video or an image file")
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 25.0)
            w, h = s.codec_context.width, s.codec_context.height
            sar = s.sample_aspect_ratio
            if sar and float(sar) > 0 and float(sar) != 1.0:
                w = int(round(w * float(sar) / 2.0)) * 2
            rot = 0
            for f in c.decode(s):
                rot = int(getattr(f, "rotation", 0) or 0) % 360
                break
            if rot in (90, 270):
                w, h = h, w
            return fps, w, h
    except InputError:
        raise
    except Exception as e:  # av raises many error types for damaged files
        raise InputError(f"cannot read video: {e}", path=path,
                         fix="check the file is a complete, playable video") from e


def _iter_video_frames_av(path: Path, fps: float | None) -> Iterator[np.ndarray]:
    """Private PyAV reader (used when echo_cli.media.video_io is not available):
    RGB uint8, display-oriented, square pixels, resampled to `fps` by nearest frame."""
    import av

    try:
        c = av.open(str(path))
    except Exception as e:
        raise InputError(f"cannot open video: {e}", path=path, fix="check the file is a playable video") from e
    with c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        src_fps = float(s.average_rate or s.guessed_rate or 25.0)
        w, h = s.codec_context.width, s.codec_context.height
        sar = s.sample_aspect_ratio
        dw = int(round(w * float(sar) / 2.0)) * 2 if sar and float(sar) > 0 and float(sar) != 1.0 else w
        k = 0
        start = None
        try:
            for i, f in enumerate(c.decode(s)):
                img = f.to_ndarray(format="rgb24", width=dw, height=h)
                rot = int(getattr(f, "rotation", 0) or 0) % 360
                if rot:
                    # rotation is counter-clockwise degrees to apply for display
                    img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
                if fps is None or abs(fps - src_fps) < 1e-3:
                    yield img
                    continue
                t = float(f.time) if f.time is not None else i / src_fps
                start = t if start is None else start
                t -= start
                # emit every output frame whose time falls before the next source frame
                while k / fps < t + 0.5 / src_fps:
                    yield img
                    k += 1
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"video decoding failed: {e}", path=path,
                             fix="re-encode the file (e.g. ffmpeg -i in.mp4 out.mp4)") from e


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 image, EXIF orientation applied: the same pixels the renderer draws from
    (media.image_io; alpha over white), so a portrait's landmarks fit the rendered image."""
    from echo_cli.media.image_io import read_still

    return read_still(path)


def open_frames(src, fps: float | None = None) -> tuple[Iterable[np.ndarray], float, int, int, str, bool]:
    """(frames, fps, width, height, source, is_image) for a path, an array (T,H,W,3) or a list."""
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.exists():
            raise InputError("file not found", path=path, fix="check the path")
        if path.suffix.lower() in IMAGE_EXTS:
            img = read_image(path)
            return [img], float(fps or 25.0), img.shape[1], img.shape[0], str(path), True
        try:
            from echo_cli.media.probe import probe  # type: ignore
            from echo_cli.media.video_io import iter_frames  # type: ignore
        except Exception:  # media/ not available yet: private PyAV reader
            src_fps, w, h = _probe_video(path)
            out_fps = float(fps or src_fps)
            return _iter_video_frames_av(path, fps), out_fps, w, h, str(path), False
        info = probe(path)
        if getattr(info, "is_image", False):
            img = read_image(path)
            return [img], float(fps or 25.0), img.shape[1], img.shape[0], str(path), True
        if not info.has_video:
            raise InputError("no video stream", path=path, fix="pass a video or an image file")
        out_fps = float(fps or info.fps or 25.0)
        return iter_frames(path, fps=fps), out_fps, int(info.width), int(info.height), str(path), False
    if isinstance(src, np.ndarray):
        frames = src[None] if src.ndim == 3 else src
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"frames must be (T, H, W, 3) RGB uint8, got {src.shape}", fix="pass RGB frames")
        return frames, float(fps or 25.0), frames.shape[2], frames.shape[1], "", frames.shape[0] == 1
    frames = list(src)
    if not frames:
        raise InputError("no frames given", fix="pass at least one frame")
    return frames, float(fps or 25.0), frames[0].shape[1], frames[0].shape[0], "", len(frames) == 1


# --------------------------------------------------------------------------------------
# MediaPipe wrappers
# --------------------------------------------------------------------------------------

def _mediapipe():
    try:
        import mediapipe as mp
    except Exception as e:
        from echo_cli import cancel
        cancel.check()          # a signal during a C-extension import surfaces as ImportError
        raise DependencyError(f"mediapipe is not importable: {e}", fix="pip install mediapipe==0.10.14") from e
    return mp


def make_face_mesh(static: bool, max_faces: int, det_conf: float = 0.5, track_conf: float = 0.5):
    mp = _mediapipe()
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=max_faces,
                                           refine_landmarks=True,
                                           min_detection_confidence=det_conf,
                                           min_tracking_confidence=track_conf)


def make_face_detector(model_selection: int, min_conf: float):
    return _mediapipe().solutions.face_detection.FaceDetection(model_selection=model_selection,
                                                               min_detection_confidence=min_conf)


# A NormalizedLandmarkList serialises as 478 fixed 17-byte records (proto2: every set
# field is written): tag, length, then x, y, z as tagged little-endian floats. Reading the
# bytes is ~10x faster than walking 478 protobuf objects in Python (1 ms/frame saved).
_LM_RECORD = np.dtype([("tag", "u1"), ("len", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"),
                       ("y", "<f4"), ("tz", "u1"), ("z", "<f4")])


def _landmarks_array(lm) -> np.ndarray:
    """(N, 3) float32 from a NormalizedLandmarkList or its serialized bytes."""
    b = lm if isinstance(lm, bytes) else lm.SerializeToString()
    if len(b) == N_LANDMARKS * _LM_RECORD.itemsize:
        r = np.frombuffer(b, dtype=_LM_RECORD)
        if (r["tag"] == 0x0A).all() and (r["len"] == 15).all():
            out = np.empty((N_LANDMARKS, 3), np.float32)
            out[:, 0], out[:, 1], out[:, 2] = r["x"], r["y"], r["z"]
            return out
    if isinstance(lm, bytes):
        from mediapipe.framework.formats import landmark_pb2

        lm = landmark_pb2.NormalizedLandmarkList.FromString(lm)
    return np.array([(p.x, p.y, p.z) for p in lm.landmark], dtype=np.float32)


def _process_serialized(mesh, rgb: np.ndarray) -> list:
    """mesh.process(rgb).multi_face_landmarks as serialized protos, without SolutionBase's
    per-call namedtuple class, eval and proto parse: pure-Python work on every frame).
    Relies on SolutionBase internals of the pinned mediapipe 0.10.14; any other layout
    falls back to the public process()."""
    g = getattr(mesh, "_graph", None)
    outs = getattr(mesh, "_graph_outputs", None)
    if g is None or outs is None or not hasattr(mesh, "_simulated_timestamp"):
        return list(mesh.process(rgb).multi_face_landmarks or [])
    from mediapipe.python import packet_creator
    from mediapipe.python._framework_bindings import _packet_getter, image_frame

    outs.clear()
    mesh._simulated_timestamp += 33333         # the same fake 30 fps clock as process()
    pkt = packet_creator.create_image_frame(rgb, image_format=image_frame.ImageFormat.SRGB)
    g.add_packet_to_input_stream(stream="image", packet=pkt.at(mesh._simulated_timestamp))
    g.wait_until_idle()
    out = outs.get("multi_face_landmarks")
    if out is None or out.is_empty():
        return []
    return list(_packet_getter._get_serialized_proto_list(out))


def mesh_faces(mesh, rgb: np.ndarray) -> list[np.ndarray]:
    """All faces MediaPipe returns for one RGB frame, each (478, 3) in pixels (z in x units)."""
    h, w = rgb.shape[:2]
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got {rgb.shape}")
    out = []
    for lm in _process_serialized(mesh, np.ascontiguousarray(rgb)):
        a = _landmarks_array(lm)
        if a.shape[0] != N_LANDMARKS:
            continue
        a *= np.array([w, h, w], np.float32)
        out.append(a)
    return out


@functools.lru_cache(maxsize=1)
def mirror_index() -> np.ndarray:
    """(478,) landmark i of a face is landmark mirror_index()[i] of its mirror image (an
    involution: left eye <-> right eye, the midline onto itself). Derived from the canonical
    face (pose.CANONICAL_PATH): the one-to-one matching of the mirrored mean shape to itself
    with the least squared distance, refined by a rigid fit (the mean is not exactly
    symmetric about x = 0)."""
    from scipy.optimize import linear_sum_assignment

    from echo_cli.preprocess.pose import CANONICAL_PATH

    m = np.load(CANONICAL_PATH)["mean"].astype(np.float64)
    m -= m.mean(0)
    mm = m * np.array([-1.0, 1.0, 1.0])
    perm = np.arange(len(m))
    for _ in range(3):
        _, perm = linear_sum_assignment(((mm[:, None, :] - m[None, :, :]) ** 2).sum(-1))
        a, b = mm - mm.mean(0), m[perm] - m[perm].mean(0)
        u, _s, vt = np.linalg.svd(a.T @ b)
        mm = a @ (u @ vt) + m[perm].mean(0)
    perm.setflags(write=False)
    return perm


def unmirror(faces: list[np.ndarray], width: int) -> list[np.ndarray]:
    """Landmarks found on a horizontally mirrored image, as landmarks of the original."""
    idx = mirror_index()
    out = []
    for a in faces:
        b = a[idx].copy()
        b[:, 0] = width - b[:, 0]
        out.append(b)
    return out


def mirror_average(direct: np.ndarray, mirrored: list[np.ndarray]) -> np.ndarray:
    """`direct` averaged with the un-mirrored face that matches it (centre within a fifth of
    the face size, size within 10 %); `direct` alone when the mirror image found no such face
    (a mesh that collapsed onto part of a small face would otherwise pull the average off)."""
    if not mirrored:
        return direct
    c, size = _centre_size(direct)
    dist = [float(np.linalg.norm(_centre_size(m)[0] - c)) for m in mirrored]
    i = int(np.argmin(dist))
    if dist[i] > 0.2 * size or abs(_centre_size(mirrored[i])[1] / max(size, 1e-6) - 1.0) > 0.1:
        return direct
    return ((direct + mirrored[i]) * 0.5).astype(np.float32)


def detect_boxes(detector, rgb: np.ndarray) -> list[np.ndarray]:
    """Face-detector boxes (x0, y0, x1, y1) in pixels, best first."""
    h, w = rgb.shape[:2]
    res = detector.process(np.ascontiguousarray(rgb))
    out = []
    for d in res.detections or []:
        bb = d.location_data.relative_bounding_box
        out.append(np.array([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w,
                             (bb.ymin + bb.height) * h], dtype=np.float32))
    return out


# --------------------------------------------------------------------------------------
# Choosing one face
# --------------------------------------------------------------------------------------

def _centre_size(lm: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    return (lo + hi) / 2, float((hi - lo).max())


def choose_face(faces: Sequence[np.ndarray], width: int, height: int, prev_centre: np.ndarray | None,
                face_index: int | None = None, pick: tuple[float, float] | None = None) -> int:
    """Index of the face to keep.

    Continuity first (the face nearest the previous pick); otherwise `face_index` (faces
    ordered left to right), `pick` (x, y in 0..1 of the frame: the nearest face), or the
    largest and most central face (size discounted by distance from the frame centre).
    """
    if len(faces) == 1:
        return 0
    cs = [_centre_size(f) for f in faces]
    if prev_centre is not None:
        d = [np.linalg.norm(c - prev_centre) for c, _ in cs]
        return int(np.argmin(d))
    if face_index is not None:
        order = np.argsort([c[0] for c, _ in cs])
        return int(order[min(max(face_index, 0), len(order) - 1)])
    if pick is not None:
        target = np.array([pick[0] * width, pick[1] * height])
        return int(np.argmin([np.linalg.norm(c - target) for c, _ in cs]))
    diag = float(np.hypot(width, height))
    centre = np.array([width / 2, height / 2])
    score = [s / (1.0 + 2.0 * np.linalg.norm(c - centre) / diag) for c, s in cs]
    return int(np.argmax(score))


# --------------------------------------------------------------------------------------
# Raw tracking (per frame, no smoothing)
# --------------------------------------------------------------------------------------

@dataclass
class RawTrack:
    landmarks: np.ndarray        # (T, 478, 3) pixels, NaN where not detected
    detected: np.ndarray         # (T,) bool
    fps: float
    width: int
    height: int
    source: str
    n_multi: int = 0             # frames where several faces were seen (probed once a second)
    n_crop: int = 0              # frames found by the second (crop) pass
    picked: bool = False         # the caller chose the face (face_index / pick)


class _CropPass:
    """Second pass for small faces: FaceMesh on a square crop that follows the face. It has no
    mirror pass (TrackSettings.mirror): the crop follows the landmarks, and averaged ones moved
    it enough to make MediaPipe collapse onto part of the face (s13.mp4, one frame 0.4 eye
    distances off), where the direct track was steadier."""

    def __init__(self, settings: TrackSettings, static: bool):
        self.s = settings
        self.mesh = make_face_mesh(static, 1, settings.min_detection_confidence,
                                   settings.min_tracking_confidence)
        self.detector = make_face_detector(1, 0.4)
        self.box: np.ndarray | None = None

    def _box_from(self, centre: np.ndarray, size: float) -> np.ndarray:
        half = self.s.crop_margin * size / 2
        return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half], np.float32)

    def run(self, rgb: np.ndarray, hint: np.ndarray | None, prev_centre, face_index, pick) -> np.ndarray | None:
        h, w = rgb.shape[:2]
        if hint is not None:
            c, size = _centre_size(hint)
            # keep the crop still while the face stays well inside it: MediaPipe's own
            # tracking inside the crop then stays consistent from frame to frame
            if self.box is None or not self._holds(c, size):
                self.box = self._box_from(c, size)
        for attempt in range(2):
            if self.box is None:
                boxes = detect_boxes(self.detector, rgb)
                if not boxes:
                    return None
                faces = [np.array([[b[0], b[1], 0], [b[2], b[3], 0]], np.float32) for b in boxes]
                i = choose_face(faces, w, h, prev_centre, face_index, pick)
                b = boxes[i]
                # detector boxes are tight around eyes-mouth: the mesh extent is ~1.3x larger
                self.box = self._box_from((b[:2] + b[2:]) / 2, 1.3 * float(max(b[2] - b[0], b[3] - b[1])))
            crop = crop_image(rgb, self.box, self.s.crop_size)
            faces = mesh_faces(self.mesh, crop)
            if faces:
                return from_crop(faces[0], self.box, self.s.crop_size)
            self.box = None        # lost: once more with a fresh detector box
        return None

    def _holds(self, c: np.ndarray, size: float) -> bool:
        b = self.box
        side = float(b[2] - b[0])
        bc = (b[:2] + b[2:]) / 2
        return (np.abs(c - bc).max() < 0.12 * side and 0.75 < self.s.crop_margin * size / side < 1.33)

    def reset(self):
        self.mesh.reset()
        self.box = None

    def close(self):
        self.mesh.close()
        self.detector.close()


def track_threads() -> int:
    """Threads for the face tracker: $ECHO_THREADS (set per worker by `preprocess --workers`),
    else the usable cores, at most 2 (the target machine; on more cores, `preprocess
    --workers` runs files in parallel processes)."""
    import os

    from echo_cli.env import env_threads

    env = env_threads()
    if env > 0:
        return env
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


class _Tracker:
    """One face through consecutive frames: full-frame FaceMesh, the small-face crop pass,
    the face choice with continuity, and the once-a-second probe for other faces.
    Not thread-safe: one per thread. `restart()` forgets everything (a fresh graph)."""

    def __init__(self, settings: TrackSettings, static: bool, max_faces: int, probe_every: int,
                 face_index: int | None, pick: tuple[float, float] | None):
        self.s, self.static, self.probe_every = settings, static, probe_every
        self.face_index, self.pick = face_index, pick
        self.mesh = make_face_mesh(static, max_faces, settings.min_detection_confidence,
                                   settings.min_tracking_confidence)
        # the mirrored frames get a graph of their own, so its video-mode tracking follows them
        self.mirror_mesh = make_face_mesh(static, max_faces, settings.min_detection_confidence,
                                          settings.min_tracking_confidence) if settings.mirror else None
        self.probe = None                       # made on the first probe (never for an image)
        self.crop_pass: _CropPass | None = None
        self.used = False
        self._forget()

    def _forget(self):
        self.prev: np.ndarray | None = None     # last chosen landmarks
        self.prev_age = 10 ** 9                 # frames since `prev`
        self.full_misses = 0                    # consecutive full-frame misses

    def restart(self):
        if self.used:
            self.mesh.reset()
            if self.mirror_mesh is not None:
                self.mirror_mesh.reset()
            if self.crop_pass is not None:
                self.crop_pass.reset()
        self._forget()

    def step(self, t: int, rgb: np.ndarray, probe: bool) -> tuple[np.ndarray | None, int, bool]:
        """(landmarks of the chosen face or None, frames with several faces, found by the crop pass)."""
        self.used = True
        h, w = rgb.shape[:2]
        n_multi = 0
        if probe and t % self.probe_every == 0:
            if self.probe is None:
                self.probe = make_face_detector(0, 0.6)
            if len(detect_boxes(self.probe, rgb)) > 1:
                n_multi = self.probe_every
        # Once the full frame keeps failing while the crop pass works, try the full
        # frame only every 10th frame (it costs a detector run each time).
        use_full = self.full_misses < 3 or self.crop_pass is None or t % 10 == 0
        faces = mesh_faces(self.mesh, rgb) if use_full else []
        prev_centre = _centre_size(self.prev)[0] if self.prev is not None and self.prev_age <= 15 else None
        by_crop = False
        if faces:
            self.full_misses = 0
            chosen = faces[choose_face(faces, w, h, prev_centre, self.face_index, self.pick)]
            if self.mirror_mesh is not None:
                chosen = mirror_average(chosen, unmirror(mesh_faces(self.mirror_mesh, rgb[:, ::-1]), w))
        else:
            self.full_misses += 1 if use_full else 0
            if self.crop_pass is None:
                self.crop_pass = _CropPass(self.s, self.static)
            hint = self.prev if self.prev is not None and self.prev_age <= 2 else None
            chosen = self.crop_pass.run(rgb, hint, prev_centre, self.face_index, self.pick)
            by_crop = chosen is not None
        if chosen is not None:
            self.prev, self.prev_age = chosen, 0
        else:
            self.prev_age += 1
        return chosen, n_multi, by_crop

    def close(self):
        self.mesh.close()
        if self.mirror_mesh is not None:
            self.mirror_mesh.close()
        if self.probe is not None:
            self.probe.close()
        if self.crop_pass is not None:
            self.crop_pass.close()


def _chunks(first: np.ndarray, rest: Iterator[np.ndarray], size: int | None, warmup: int):
    """(index of the first frame, warm-up frames, frames) over the stream; size None: one chunk."""
    t0, buf, tail = 0, [first], []
    for f in rest:
        buf.append(f)
        if size is not None and len(buf) == size:
            yield t0, tail, buf
            tail = buf[len(buf) - warmup:] if warmup else []
            t0, buf = t0 + len(buf), []
    if buf:
        yield t0, tail, buf


def track_raw(path_or_frames, fps: float | None = None, face_index: int | None = None,
              pick: tuple[float, float] | None = None, settings: TrackSettings = TrackSettings(),
              threads: int | None = None) -> RawTrack:
    """Per-frame MediaPipe landmarks of the chosen face (NaN where none), no smoothing.

    threads: trackers running chunks at once (default track_threads()); the result does
    not depend on it.
    """
    import queue
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from echo_cli import cancel

    frames, out_fps, width, height, source, is_image = open_frames(path_or_frames, fps)
    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        raise InputError("the video has no decodable frames", path=source or None,
                         fix="check the file is a complete, playable video")
    # Tracking several faces makes MediaPipe run its detector on every frame (+40 % time).
    # So a cheap short-range detector probes once a second; MediaPipe tracks several faces
    # only when the first frame shows several (or the caller picks one), else just one and
    # keeps following it (continuity) while the probe counts frames with other faces.
    probe = make_face_detector(0, 0.6)
    try:
        n_first = len(detect_boxes(probe, first))
    finally:
        probe.close()
    multi = is_image or n_first > 1 or face_index is not None or pick is not None
    if face_index is not None and 0 < n_first <= face_index:
        logger.warning("%s: --face-index %d, but the first frame shows %d face%s (counted from 0, left to "
                       "right); the right-most is used", source or "frames", face_index, n_first,
                       "" if n_first == 1 else "s")
    probe_every = max(1, int(round(out_fps)))
    # Several faces: one unbroken run, so the pick carries from frame to frame (a fresh
    # chunk would choose again). One face: chunks that can run in parallel.
    size = None if multi else settings.chunk_len(first.nbytes)
    threads = max(1, int(threads or track_threads()))

    pool: queue.SimpleQueue = queue.SimpleQueue()      # idle trackers, made on demand
    made: list[_Tracker] = []

    def run_chunk(t0: int, warm: list, chunk: list) -> tuple[list, int, int]:
        try:
            tr = pool.get_nowait()
        except queue.Empty:
            tr = _Tracker(settings, is_image, settings.max_faces if multi else 1, probe_every, face_index, pick)
            made.append(tr)
        try:
            tr.restart()
            for i, rgb in enumerate(warm):           # settle MediaPipe's tracking; results dropped
                tr.step(t0 - len(warm) + i, rgb, probe=False)
            rows, n_multi, n_crop = [], 0, 0
            for i, rgb in enumerate(chunk):
                lm, m, c = tr.step(t0 + i, rgb, probe=t0 + i > 0)
                rows.append(lm)
                n_multi += m
                n_crop += c
            return rows, n_multi, n_crop
        finally:
            pool.put(tr)

    results: list = []
    try:
        if threads == 1:
            results = [run_chunk(*c) for c in _chunks(first, stream, size, settings.chunk_warmup)]
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="echo-face") as ex:
                pending: deque = deque()
                for c in _chunks(first, stream, size, settings.chunk_warmup):
                    cancel.check()      # stop between chunks even if a native call swallowed the signal
                    pending.append(ex.submit(run_chunk, *c))
                    while len(pending) > threads:       # bound the frames held in memory
                        results.append(pending.popleft().result())
                results += [f.result() for f in pending]
    finally:
        for tr in made:
            tr.close()
    rows = [lm for r in results for lm in r[0]]
    detected = np.array([lm is not None for lm in rows], bool)
    lms = np.full((len(rows), N_LANDMARKS, 3), np.nan, np.float32)
    for t, lm in enumerate(rows):
        if lm is not None:
            lms[t] = lm
    n_multi = (probe_every if n_first > 1 else 0) + sum(r[1] for r in results)
    n_crop = sum(r[2] for r in results)
    height, width = first.shape[:2]         # the frames as decoded (display size)
    return RawTrack(lms, detected, out_fps, width, height, source, n_multi, n_crop,
                    picked=face_index is not None or pick is not None)


# --------------------------------------------------------------------------------------
# Post-processing and the public entry point
# --------------------------------------------------------------------------------------

def fill_gaps(landmarks: np.ndarray, detected: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over gaps of at most `max_gap` frames between detections
    (valid=True); longer or open-ended gaps hold the nearest detection (valid=False)."""
    T = landmarks.shape[0]
    out = landmarks.copy()
    valid = detected.copy()
    idx = np.flatnonzero(detected)
    if idx.size == 0:
        return out, valid
    t = 0
    while t < T:
        if detected[t]:
            t += 1
            continue
        s = t
        while t < T and not detected[t]:
            t += 1
        e = t  # gap is [s, e)
        left, right = s - 1, e
        if left >= 0 and right < T and (e - s) <= max_gap:
            w = (np.arange(s, e) - left) / (right - left)
            out[s:e] = (1 - w)[:, None, None] * landmarks[left] + w[:, None, None] * landmarks[right]
            valid[s:e] = True
        else:
            for k in range(s, e):
                near = idx[np.argmin(np.abs(idx - k))]
                out[k] = landmarks[near]
    return out, valid


def finish_track(raw: RawTrack, settings: TrackSettings = TrackSettings()) -> FaceTrack:
    """Gaps, One-Euro smoothing, pose and crop boxes for a raw track."""
    from echo_cli.preprocess.pose import fit_pose

    T = raw.landmarks.shape[0]
    found = float(raw.detected.mean()) if T else 0.0
    if found < settings.min_found or not raw.detected.any():
        what = "the image" if T == 1 else f"{100 * (1 - found):.0f}% of {T} frames"
        raise InputError(f"no face found in {what}", path=raw.source or None,
                         fix="use media with one clearly visible face (frontal, lit, at least ~40 px wide)")
    if raw.n_multi and not raw.picked:
        where = "the image" if T == 1 else f"about {min(raw.n_multi, T)} of {T} frames"
        logger.warning("%s: several faces in %s; kept the largest/most central "
                       "(to use another, crop the media to that face; `preprocess` and `reenact` "
                       "also take --face-index)", raw.source or "frames", where)
    max_gap = int(round(settings.max_gap_s * raw.fps))
    lm, valid = fill_gaps(raw.landmarks, raw.detected, max_gap)
    if settings.smooth and T > 1:
        lo, hi = landmark_bounds(lm)
        scale = np.maximum((hi - lo).max(-1), 1.0)
        lm = one_euro(lm, raw.fps, settings.smoothing, scale=scale, valid=valid)
    lm = lm.astype(np.float32, copy=False)
    pose, canonical = fit_pose(lm)
    boxes = smooth_boxes(square_boxes(lm, settings.box_margin), raw.fps, lm)
    return FaceTrack(fps=float(raw.fps), width=int(raw.width), height=int(raw.height), landmarks=lm,
                     detected=raw.detected.copy(), valid=valid, pose=pose, canonical=canonical,
                     boxes=boxes, source=raw.source)


def cache_settings(path: str | Path, fps: float | None, face_index: int | None,
                   pick: tuple[float, float] | None, settings: TrackSettings,
                   native_fps: float | None = None) -> dict:
    """The settings that key a face track in the cache (shared with preprocess.pipeline)."""
    if Path(path).suffix.lower() in IMAGE_EXTS:
        out_fps = None
    elif fps:
        out_fps = float(fps)
    else:
        if native_fps is None:
            from echo_cli.media.probe import probe

            native_fps = probe(path).fps
        out_fps = float(native_fps or 25.0)
    return {"fps": out_fps, "face_index": face_index, "pick": pick, "track": settings.key()}


def track_face(path_or_frames, fps: float | None = None, face_index: int | None = None,
               pick: tuple[float, float] | None = None,
               settings: TrackSettings = TrackSettings(), cache=True, threads: int | None = None,
               source: str | None = None) -> FaceTrack:
    """Track one face through a video, an image (T == 1) or frames (T, H, W, 3) RGB uint8.

    fps: resample the video to this rate (frames given directly are taken as at `fps`).
    face_index: with several faces, take the n-th from the left; pick: (x, y) in 0..1, the
    face nearest that point. Raises InputError when most frames have no face.
    cache: for a file path, look the track up in (and store it into) the preprocessing
    cache (True: the default cache, a preprocess.cache.Cache, or False) — the same entries
    `echo-cli preprocess` and preprocess_media use.
    threads: MediaPipe trackers running at once (default track_threads()); speed only,
    the track is the same for any value.
    source: what frames given as arrays are, for warnings and errors (a path names itself).
    """
    if cache is not False and isinstance(path_or_frames, (str, Path)) and Path(path_or_frames).is_file():
        from echo_cli.errors import EchoError
        from echo_cli.preprocess.cache import Cache, file_sha256

        c = cache if isinstance(cache, Cache) else Cache()
        try:
            key = c.key("face", file_sha256(path_or_frames),
                        cache_settings(path_or_frames, fps, face_index, pick, settings), TRACK_VERSION)
        except EchoError:       # unreadable: let the tracker raise its own, clearer error
            key = None
        if key is not None:
            track, _hit = c.get_or_compute(
                "face", key, "npz",
                lambda: track_face(path_or_frames, fps, face_index, pick, settings, cache=False, threads=threads),
                save_track, load_track, {"source": str(path_or_frames)})
            track.source = str(path_or_frames)
            return track
    raw = track_raw(path_or_frames, fps, face_index, pick, settings, threads=threads)
    if source and not raw.source:
        raw.source = source
    if raw.n_crop:
        logger.info("%s: small face, %d frames found on the zoomed second pass", raw.source or "frames", raw.n_crop)
    return finish_track(raw, settings)


# --------------------------------------------------------------------------------------
# Storage (versioned .npz; see docs/formats.md)
# --------------------------------------------------------------------------------------

TRACK_FORMAT = "echo-cli.facetrack"
TRACK_VERSION = 1


def save_track(track: FaceTrack, path: str | Path) -> None:
    """Atomic .npz write of a FaceTrack."""
    from echo_cli.io_atomic import write_npz

    arrays = dict(
        format=np.array(TRACK_FORMAT), version=np.array(TRACK_VERSION),
        fps=np.array(track.fps, np.float64), width=np.array(track.width), height=np.array(track.height),
        landmarks=track.landmarks.astype(np.float32), detected=track.detected.astype(bool),
        valid=track.valid.astype(bool), rotation=track.pose.rotation.astype(np.float32),
        euler=track.pose.euler.astype(np.float32), translation=track.pose.translation.astype(np.float32),
        scale=track.pose.scale.astype(np.float32), canonical=track.canonical.astype(np.float32),
        boxes=track.boxes.astype(np.float32), source=np.array(track.source))
    write_npz(path, arrays)


def load_track(path: str | Path) -> FaceTrack:
    """Load a FaceTrack .npz; InputError when damaged or of another format/version."""
    from echo_cli.schema import Pose

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as e:
        raise InputError(f"cannot read face track: {e}", path=path, fix="delete it and run preprocess again") from e
    if str(d.get("format", "")) != TRACK_FORMAT or int(d.get("version", -1)) != TRACK_VERSION:
        raise InputError("not a face track of this version", path=path, fix="run preprocess again")
    T = d["landmarks"].shape[0]
    shapes = {"landmarks": (T, N_LANDMARKS, 3), "canonical": (T, N_LANDMARKS, 3), "detected": (T,),
              "valid": (T,), "rotation": (T, 3, 3), "euler": (T, 3), "translation": (T, 2),
              "scale": (T,), "boxes": (T, 4)}
    for k, shp in shapes.items():
        if d[k].shape != shp:
            raise InputError(f"face track field '{k}' has shape {d[k].shape}, expected {shp}", path=path,
                             fix="delete it and run preprocess again")
    pose = Pose(rotation=d["rotation"], euler=d["euler"], translation=d["translation"], scale=d["scale"])
    return FaceTrack(fps=float(d["fps"]), width=int(d["width"]), height=int(d["height"]),
                     landmarks=d["landmarks"], detected=d["detected"], valid=d["valid"], pose=pose,
                     canonical=d["canonical"], boxes=d["boxes"], source=str(d["source"]))
