"""`echo-cli bench render`: the renderer alone, renderer + H.264 encode, and the floor.

Workload: real motion. The first N frames of ../shared/data/clips/d12.mp4 are tracked
once (MediaPipe, not timed); the reference is its first frame, scaled to each size (S x S),
and the targets are the tracked landmarks scaled alike: a self-reenactment, the same work
as `echo-cli reenact`. Per size, in one run:
  render ms/frame     MeshWarpRenderer.render for N frames, frames discarded
  render+encode       the same, each frame written to a VideoWriter (libx264, veryfast,
                      crf 20) as it is produced: ffmpeg encodes in its own process, in
                      parallel with the next frame's render
  floor               a plain encode (same writer, same settings) of the N frames rendered
                      before (held in memory), i.e. what writing this video costs at all
  ratio               render+encode / floor, wall clock (acceptance: <= 3 at 512 px on 2 cores)
  CPU columns         the same in CPU seconds of this process + its ffmpeg children: on a
                      shared, loaded machine wall time depends on the neighbours, CPU time not
  peak MB             peak RSS of this process + children during render+encode
With --long-seconds S, a streamed render+encode of S seconds (targets cycled, 256 px) is
measured too: peak memory for S seconds against the same for 20 s (constant memory).
"""
from __future__ import annotations

import itertools
import os

import numpy as np

from echo_cli import log
from echo_cli.bench.common import (BenchArgs, PeakMemory, Timer, encode_frames, markdown_table, report,
                                   shared_data)
from echo_cli.errors import InputError

logger = log.get("echo_cli.bench.render")

SET_OPTIONS: dict = {}      # no --set options (the CLI refuses any)
DRIVING = "clips/d12.mp4"
FPS = 25.0


def _workload(n: int):
    from echo_cli.media.video_io import iter_frames
    from echo_cli.preprocess.face import track_face

    root = shared_data()
    if root is None or not (root / DRIVING).is_file():
        raise InputError("benchmark media not found", path=str(root / DRIVING) if root else "../shared/data",
                         fix="set ECHO_SHARED_DATA to the folder holding clips/d12.mp4")
    frames = np.stack(list(iter_frames(root / DRIVING, fps=FPS, max_frames=n)))
    track = track_face(frames, fps=FPS)
    return frames[0], track.landmarks.astype(np.float32)


def _scaled(ref: np.ndarray, lms: np.ndarray, size: int):
    import cv2
    h, w = ref.shape[:2]
    img = cv2.resize(ref, (size, size), interpolation=cv2.INTER_AREA if size < h else cv2.INTER_CUBIC)
    s = np.array([size / w, size / h, size / w], np.float32)
    return img, lms * s


def run(args: BenchArgs) -> dict:
    import cv2

    from echo_cli.media.video_io import VideoWriter
    from echo_cli.render.warp import MeshWarpRenderer

    n = int(args.frames or (30 if args.quick else 120))
    sizes = tuple(args.sizes or ((256, 512) if args.quick else (256, 512, 1024)))
    ref0, lms0 = _workload(n)
    n = len(lms0)
    rows = []
    import tempfile
    from pathlib import Path
    for size in sizes:
        ref, lms = _scaled(ref0, lms0, size)
        r = MeshWarpRenderer()
        with Timer() as tp:
            r.prepare(ref, lms[0])
        r.render(lms[0])                                            # warm-up (allocations)
        with Timer() as t_render:
            frames = [r.render(l) for l in lms]
        with tempfile.TemporaryDirectory(prefix="echo-bench-") as td:
            with PeakMemory() as mem, Timer() as t_both:
                with VideoWriter(Path(td) / "render.mp4", FPS, (size, size), crf=20, preset="veryfast") as w:
                    for l in lms:
                        w.write(r.render(l))
        floor, _ = encode_frames(frames, (size, size), FPS, crf=20, preset="veryfast")
        floor_s = floor.seconds
        del frames
        row = {"size": size, "frames": n, "prepare_ms": 1000 * tp.seconds,
               "render_ms": 1000 * t_render.seconds / n, "render_encode_ms": 1000 * t_both.seconds / n,
               "floor_ms": 1000 * floor_s / n, "ratio": t_both.seconds / max(floor_s, 1e-9),
               "render_cpu_ms": 1000 * t_render.cpu / n, "render_encode_cpu_ms": 1000 * t_both.cpu / n,
               "floor_cpu_ms": 1000 * floor.cpu / n, "cpu_ratio": t_both.cpu / max(floor.cpu, 1e-9),
               "work_px": "x".join(map(str, r.geom.size)), "triangles": int(len(r.tri)),
               "peak_mb": round(mem.peak_mb, 1), "cv2_threads": cv2.getNumThreads()}
        logger.info("render bench %s", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})
        rows.append(row)
    long_rows = []
    if args.long_seconds:
        ref, lms = _scaled(ref0, lms0, 256)
        r = MeshWarpRenderer(); r.prepare(ref, lms[0])
        for secs in (20.0, float(args.long_seconds)):
            total = int(secs * FPS)
            with tempfile.TemporaryDirectory(prefix="echo-bench-") as td:
                with PeakMemory() as mem, Timer() as t:
                    with VideoWriter(Path(td) / "long.mp4", FPS, (256, 256)) as w:
                        for l in itertools.islice(itertools.cycle(lms), total):
                            w.write(r.render(l))
            long_rows.append({"seconds": secs, "frames": total, "size": 256, "peak_mb": round(mem.peak_mb, 1),
                              "ms_per_frame": 1000 * t.seconds / total})
            logger.info("long render %s", long_rows[-1])
    cols = [("size", "size (px)"), ("frames", "frames"), ("render_ms", "render ms/frame"),
            ("render_encode_ms", "render+encode ms/frame"), ("floor_ms", "floor: plain encode ms/frame"),
            ("ratio", "(render+encode) / floor"), ("render_encode_cpu_ms", "render+encode CPU ms/frame"),
            ("floor_cpu_ms", "floor CPU ms/frame"), ("cpu_ratio", "CPU ratio"),
            ("work_px", "working crop"), ("peak_mb", "peak MB")]
    md = ["## Renderer (`echo-cli bench render`)", "",
          f"Command: `{args.command or 'echo-cli bench render'}`", "",
          "Workload: self-reenactment of ../shared/data/clips/d12.mp4 (real tracked motion), "
          "MeshWarpRenderer, libx264 veryfast crf 20 through the project's VideoWriter; the floor "
          "is a plain encode of the same frames in the same run. Acceptance: ratio <= 3 at 512 px.", "",
          markdown_table(rows, cols)]
    if long_rows:
        md += ["", "Streaming memory (256 px, render + encode, peak RSS incl. ffmpeg):", "",
               markdown_table(long_rows, [("seconds", "video seconds"), ("frames", "frames"),
                                          ("peak_mb", "peak MB"), ("ms_per_frame", "ms/frame")])]
    from echo_cli.bench.common import machine
    m = machine()
    md += ["", f"Machine: {m['cpu']}, {m['affinity']} cores available, load {m['load_1min']} "
               f"(shared machine: absolute ms vary with load; the ratio is measured in the same run), "
               f"ffmpeg {m['ffmpeg']}, git {m['git']}."]
    return report("render", args, rows, "\n".join(md), {"long": long_rows})
