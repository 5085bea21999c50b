"""`preprocess_folder()`: every video, image and audio file of a folder, in parallel processes.

What `echo-cli preprocess FOLDER` calls. Each file runs preprocess.pipeline.preprocess_media
(cached by content hash + settings + tool version), so a second run, or a run resumed
after a kill, only computes what is missing. A file that fails gives one line (its typed
error) and the others carry on. With `out`, each file's results are also written there
(atomically) next to a `summary.json`:

    OUT/<relative path>.face.npz        FaceTrack        (docs/formats.md)
    OUT/<relative path>.audio.npz       AudioFeatures
    OUT/<relative path>.transcript.json Transcript
    OUT/<relative path>.overlay.mp4     debug video (--overlay): landmarks + crop box (.png for images)
    OUT/summary.json                    the run summary (also printed under --json)
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Callable

from echo_cli import log
from echo_cli.errors import EchoError, InputError
from echo_cli.media.kinds import MEDIA_EXTS
from echo_cli.preprocess.pipeline import PreprocessOptions

logger = log.get("echo_cli.api.preprocess")


def find_media(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Media files (by extension) of `folder`, sorted; hidden files and our own outputs skipped."""
    folder = Path(folder)
    if not folder.exists():
        if folder.is_symlink():
            raise InputError("broken or looping symbolic link", path=folder, fix="point the link at media or a folder")
        raise InputError("file or folder not found", path=folder, fix="check the path")
    if folder.is_file():
        return [folder]
    if not folder.is_dir():         # a FIFO, a device: not something to preprocess
        raise InputError("not a regular file or a folder", path=folder, fix="give a media file or a folder of them")
    it = folder.rglob("*") if recursive else folder.glob("*")
    out = []
    for p in it:
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in MEDIA_EXTS:
            continue
        if p.name.endswith(".overlay.mp4") or p.name.endswith(".overlay.png"):
            continue
        out.append(p)
    return sorted(out)


# --------------------------------------------------------------------------------------
# One file (runs inside a worker process)
# --------------------------------------------------------------------------------------

RESULT_SUFFIXES = {"face": ".face.npz", "audio": ".audio.npz", "transcript": ".transcript.json"}


def _write_outputs(res: dict, dest: Path) -> dict:
    """The file's results beside `dest`. A result this run did not make is removed: an earlier
    run's (a transcript, after a rerun with --transcript none) would sit beside the new ones,
    unlisted in summary.json, as if it belonged to them. Overlays are debug pictures: kept."""
    from echo_cli.features.audio import save_audio_features
    from echo_cli.preprocess.face import save_track
    from echo_cli.preprocess.transcript import save_transcript

    save = {"face": save_track, "audio": save_audio_features, "transcript": save_transcript}
    files = {}
    for kind, suffix in RESULT_SUFFIXES.items():
        p = dest.with_name(dest.name + suffix)
        if res[kind] is not None:
            save[kind](res[kind], p)
            files[kind] = str(p)
        elif p.is_file():
            p.unlink()
    return files


def draw_overlay(frame, landmarks, box, text: str = ""):
    """Landmarks (dots), iris centres and the crop box drawn on a copy of an RGB frame."""
    import cv2
    import numpy as np

    im = np.ascontiguousarray(frame.copy())
    r = max(1, int(round(min(im.shape[:2]) / 400)))
    for x, y in landmarks[:, :2].astype(int):
        cv2.circle(im, (int(x), int(y)), r, (0, 255, 0), -1)
    for i in (468, 473):
        x, y = landmarks[i, :2].astype(int)
        cv2.circle(im, (int(x), int(y)), 2 * r + 1, (255, 0, 255), -1)
    b = np.round(box).astype(int)
    cv2.rectangle(im, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (255, 64, 0), max(1, r))
    if text:
        cv2.putText(im, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
    return im


def write_overlay(path: Path, track, dest: Path) -> str:
    """Debug video (or PNG for an image) with the track drawn on the source frames."""
    import numpy as np

    from echo_cli.preprocess.face import open_frames

    frames, fps, _w, _h, _src, is_image = open_frames(path, None if track.n_frames == 1 else track.fps)
    if is_image:
        import cv2

        from echo_cli.io_atomic import atomic_path

        out = dest.with_name(dest.name + ".overlay.png")
        img = draw_overlay(next(iter(frames)), track.landmarks[0], track.boxes[0])
        with atomic_path(out, suffix=".png") as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        return str(out)
    from echo_cli.media.video_io import VideoWriter

    out = dest.with_name(dest.name + ".overlay.mp4")
    with VideoWriter(out, fps=track.fps, crf=26, preset="veryfast") as w:
        for t, frame in enumerate(frames):
            if t >= track.n_frames:
                break
            yaw, pitch, roll = np.degrees(track.pose.euler[t])
            flag = "" if track.detected[t] else (" interp" if track.valid[t] else " LOST")
            w.write(draw_overlay(frame, track.landmarks[t], track.boxes[t],
                                 f"{t} yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}{flag}"))
    return str(out)


def process_one(path: str, rel: str, out: str | None, opts: PreprocessOptions, overlay: bool,
                cache_enabled: bool = True) -> dict:
    """Preprocess one file; never raises (the error becomes the record's one line)."""
    from echo_cli import cancel
    from echo_cli.preprocess.cache import Cache
    from echo_cli.preprocess.pipeline import preprocess_media

    t0 = time.perf_counter()
    rec: dict = {"path": path, "status": "failed"}
    try:
        res = preprocess_media(path, cache=Cache(enabled=cache_enabled), options=opts)
        rec["cached"] = res["cached"]
        stages = [k for k in ("face", "audio", "transcript") if res[k] is not None]
        all_hit = bool(stages) and all(res["cached"][k] for k in stages if k != "transcript" or opts.transcript)
        rec["status"] = "cached" if all_hit else "done"
        rec["notes"] = res["notes"]
        face, audio = res["face"], res["audio"]
        if face is not None:
            rec["frames"] = face.n_frames
            rec["face_found"] = round(float(face.detected.mean()), 4)
        if audio is not None:
            rec["speech"] = round(float(audio.vad.mean()), 4)
        if res["transcript"] is not None:
            rec["words"] = len(res["transcript"].words)
            rec["transcript_method"] = res["transcript"].method
        if out is not None:
            dest = Path(out) / rel
            rec["files"] = _write_outputs(res, dest)
            if overlay and face is not None:
                rec["files"]["overlay"] = write_overlay(Path(path), face, dest)
    except EchoError as e:
        cancel.check()      # an interrupt swallowed by a C extension is not this file's error
        rec.update(error=e.one_line(), exit_code=e.exit_code, kind=e.kind)
    except Exception as e:  # a bug: keep the folder going, report it as internal
        cancel.check()
        logger.debug("internal error on %s", path, exc_info=True)
        rec.update(error=f"error: {path}: internal error {e.__class__.__name__}: {e}", exit_code=1, kind="internal")
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


_BUSY = False      # a pool worker is inside a job (its SIGTERM then unwinds it, temp files removed)


def _worker_job(*job) -> dict:
    global _BUSY
    _BUSY = True
    try:
        return process_one(*job)
    except KeyboardInterrupt:       # stopped by the parent (`_worker_stop`): the job has unwound,
        os._exit(130)               # its temp files are gone; skip the slow interpreter teardown
    finally:
        _BUSY = False


def _worker_stop(signum, frame) -> None:
    """The parent stops its workers with SIGTERM when the run is interrupted: a busy worker
    unwinds its job (KeyboardInterrupt; atomic writes remove their temp files), an idle one
    leaves at once. (Python's default would print a traceback from the idle worker's queue.)"""
    from echo_cli import cancel

    if _BUSY:
        cancel.request()        # also stops a job whose KeyboardInterrupt a C extension swallowed
        raise KeyboardInterrupt
    os._exit(130)


def _worker_init(threads: int, parent: int | None = None, quiet: bool = False) -> None:
    import signal

    if parent is not None:
        from echo_cli import cancel

        cancel.leave_with_parent(parent)
    # Ctrl-C reaches the whole process group: the parent alone decides how the workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)
    # what a library prints goes to stderr, never into the parent's stdout (one JSON object
    # under --json); a spawned process starts with default warning filters
    import sys

    sys.stdout.flush()
    os.dup2(2, 1)
    if quiet:
        from echo_cli.log import quiet_third_party

        quiet_third_party()
    os.environ["ECHO_THREADS"] = str(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except Exception:
        pass


# --------------------------------------------------------------------------------------
# The folder
# --------------------------------------------------------------------------------------

def folder_job(folder: Path, out: str | Path | None, recursive: bool, overlay: bool, cache: bool = True) -> list[Path]:
    """The files a preprocess run will process, after every check of the request and with
    the output folder made: the CLI calls it before its progress bar, so a bad request
    is one error line, not a bar at 0 % and then the error."""
    from echo_cli.errors import OutputError, UsageError

    files = find_media(folder, recursive)
    if not files:
        raise InputError("no video, image or audio files here", path=folder,
                         fix="check the folder (use --recursive for sub-folders)")
    if overlay and out is None:
        raise UsageError("--overlay needs an output folder", fix="add -o OUT")
    if out is not None:
        if Path(out).exists() and not Path(out).is_dir():
            raise OutputError("--out names a file, not a folder", path=out, fix="give a folder for the results")
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as e:      # a file further up, a read-only or pseudo filesystem
            raise OutputError(f"cannot create the output folder: {e.strerror or e}", path=out,
                              fix="choose a writable folder (-o)") from None
        if not os.access(out, os.W_OK):
            raise OutputError("output folder is not writable", path=out, fix="choose a writable folder")
    if cache:
        from echo_cli.hashing import check_cache_writable

        check_cache_writable(probe=True)   # else every file failed alone, as an internal error
    return files


def preprocess_folder(folder: str | Path, out: str | Path | None = None, workers: int = 1,
                      recursive: bool = False, overlay: bool = False,
                      options: PreprocessOptions = PreprocessOptions(), cache: bool = True,
                      on_item: Callable[[dict], None] | None = None) -> dict:
    """Run every media file; returns the summary dict (also written to OUT/summary.json)."""
    from echo_cli import cancel

    folder = Path(folder)
    files = folder_job(folder, out, recursive, overlay, cache)
    base = folder if folder.is_dir() else folder.parent
    jobs = [(str(p), str(p.relative_to(base)), None if out is None else str(out), options, overlay, cache)
            for p in files]
    t0 = time.perf_counter()
    records: list[dict] = []
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        for j in jobs:
            rec = process_one(*j)
            records.append(rec)
            if on_item:
                on_item(rec)
            # A signal whose KeyboardInterrupt a native library swallowed still stops the
            # folder here (exit 130); the finished files are complete and cached.
            cancel.check()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // workers)
        # spawn: MediaPipe and ctranslate2 hold threads; forking them is unsafe
        ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init,
                                 initargs=(threads, os.getpid(), not logger.isEnabledFor(logging.DEBUG)))
        try:
            futs = {ex.submit(_worker_job, *j): j for j in jobs}
            for f in as_completed(futs):
                try:
                    rec = f.result()
                except Exception as e:   # a worker died (killed, out of memory)
                    rec = {"path": futs[f][0], "status": "failed", "exit_code": 1, "kind": "internal",
                           "error": f"error: {futs[f][0]}: worker process died ({e.__class__.__name__})"}
                records.append(rec)
                if on_item:
                    on_item(rec)
                cancel.check()
        except BaseException:
            _stop_pool(ex)
            raise
        ex.shutdown(wait=True)
    records.sort(key=lambda r: r["path"])
    summary = {
        "folder": str(folder), "out": None if out is None else str(out),
        "options": _options_json(options), "total": len(records),
        "done": [r["path"] for r in records if r["status"] == "done"],
        "cached": [r["path"] for r in records if r["status"] == "cached"],
        "failed": [{"path": r["path"], "reason": r.get("error", ""), "exit_code": r.get("exit_code", 1)}
                   for r in records if r["status"] == "failed"],
        "items": records, "seconds": round(time.perf_counter() - t0, 3),
    }
    if out is not None:
        import json

        from echo_cli.io_atomic import write_text

        write_text(Path(out) / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def _stop_pool(ex, grace_s: float = 5.0) -> None:
    """Interrupted: drop the queued files and stop the running ones now, rather than wait for
    the files in flight to finish (seconds each). Workers get SIGTERM (see `_worker_stop`);
    one still running after `grace_s` is killed."""
    import signal

    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for pr in procs:
        try:
            os.kill(pr.pid, signal.SIGTERM)
        except (ProcessLookupError, TypeError):
            pass
    deadline = time.monotonic() + grace_s
    for pr in procs:
        while pr.is_alive() and time.monotonic() < deadline:    # join() may return early (EINTR)
            pr.join(0.05)
        if pr.is_alive():
            pr.kill()


def _options_json(o: PreprocessOptions) -> dict:
    d = dataclasses.asdict(o)
    d.pop("track", None)
    d["mirror"] = bool(o.track.mirror)       # the one tracker setting the CLI exposes
    return d

