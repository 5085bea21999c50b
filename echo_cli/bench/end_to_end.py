"""`echo-cli bench end-to-end`: a real 2-speaker dialogue rendered as `echo-cli render` does,
cold cache and warm cache, per stage, against the plain-encode floor of the same run.

    echo-cli bench end-to-end --doc docs/performance_e2e.md
    echo-cli bench end-to-end --set preset=draft --set seconds=60 --set cache=cold --no-doc
    echo-cli bench end-to-end --quick              # draft preset, cold + warm, 256 px

What one run measures:
  startup   `echo-cli --help` wall time (best and median of 5 fresh processes)
  cold      a render in a fresh process with an empty ECHO_CACHE_DIR: every input is new,
            so face tracking, audio features and transcription run (the Whisper model is
            joined beforehand: that is an install step, not work on new inputs)
  warm      the same render again in a fresh process on that cache
  floor     a plain decode + H.264 encode (libx264, the preset's encoder settings) of the
            same number of frames at the output's size: the user clip decoded by ffmpeg,
            scaled, piped through the project's VideoWriter (bench.common.encode_frames)
Each render runs in its own process (`python -m echo_cli.bench.end_to_end worker ...`,
which calls api.render.render exactly like `echo-cli render`), so imports and model
loads are counted, and its peak memory is the RSS of that process tree (bench.memory).

Per-stage times: render() times coarse stages (preprocess, model, audio, generate+render+
encode); the worker splits them by wrapping the stage functions with timers (no change in
what runs): each call's *exclusive* time is charged to its stage (time in a nested stage
is charged to the nested one), and a generator's time is the time spent inside its
next() calls. Stages: decode (video + audio), face track, transcription, audio features,
LCU (user context + turn emotions), generation, rendering, layout (side-by-side), encoding
(time the pipeline waits on the libx264 pipe), muxing (the writer's close: encoder flush,
sound, final MP4; plus mux() where used); what no stage claims is "other"
(glue, cache I/O, model load, imports: each named in the table). Generation runs a chunk or
two ahead in its own thread (generate/ahead.py), so stage times are per thread: the calling
thread's stages plus "other" (its waits on the producer included) partition render(), and
the table's totals, both threads together, may add up to more.

Options (--set key=value): data=DIR, spec=dialogue.yaml (default: built from the data like
samples/real_dialogue.yaml), preset=NAME (default "default"), size=PX (or --sizes 512),
cache=both|cold|warm, seconds=S (loop the dialogue's real media to S seconds, built by
bench/longform.py with a looped user video), user=video|audio, repeats=N (--help timings),
layout=side-by-side|avatar (the sample's layout; "avatar" = the avatar alone, 512x512 at
512 px, its own doc section "end-to-end-avatar"), transcript=auto|faster-whisper|whisperx|none
(the dialogue's transcript source; "none" = no speech recognition, its own doc section
with the suffix "-no-asr").
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import defaultdict
from pathlib import Path

from echo_cli import log
from echo_cli.dialogue import RECOGNITION_SOURCES

logger = log.get("echo_cli.bench.end_to_end")

SET_OPTIONS = {"data": (str,), "spec": (str,), "preset": (str,), "size": (int, 64, 4096),      # --set, checked by the CLI
               "cache": (str, ("both", "cold", "warm")), "seconds": (float, 1.0, 86400.0), "user": (str, ("video", "audio")),
               "repeats": (int, 1, 100), "layout": (str, ("side-by-side", "avatar")), "checkpoint": (str,),
               "transcript": (str, RECOGNITION_SOURCES)}

# Stage -> functions whose (exclusive) time is charged to it: (module, attribute path).
STAGE_POINTS: dict[str, tuple[tuple[str, str], ...]] = {
    "decode": (("echo_cli.media.video_io", "iter_frames"), ("echo_cli.media.video_io", "read_image"),
               ("echo_cli.preprocess.face", "read_image"), ("echo_cli.preprocess.face", "_iter_video_frames_av"),
               ("echo_cli.media.audio_io", "load_audio"), ("echo_cli.features.audio", "read_audio")),
    "face track": (("echo_cli.preprocess.face", "track_face"),),
    "transcription": (("echo_cli.preprocess.transcript", "transcribe"),),
    "audio features": (("echo_cli.features.audio", "audio_features"), ("echo_cli.model.audio_encoder", "audio_matrix")),
    "LCU": (("echo_cli.lcu.model", "conditioning"), ("echo_cli.lcu.model", "user_context"),
            ("echo_cli.lcu.model", "prepare_user"), ("echo_cli.lcu.model", "emotion_track")),
    "model load": (("echo_cli.api.render", "load_model"),),
    "generation": (("echo_cli.generate.engine", "generate"),),
    "retarget": (("echo_cli.motion.retarget", "retarget"), ("echo_cli.motion.retarget", "to_reference_landmarks")),
    "rendering": (("echo_cli.render.warp", "MeshWarpRenderer.prepare"),
                  ("echo_cli.render.warp", "MeshWarpRenderer.render")),
    "layout": (("echo_cli.media.mux", "side_by_side"),),
    "encoding": (("echo_cli.media.video_io", "VideoWriter.write"),),
    # finishing the file: since speed round 3 render's single ffmpeg pass encodes the sound
    # and writes the final MP4 (AAC, metadata, +faststart) when the writer closes, so the
    # close is the muxing; mux() itself runs only for an in-memory audio track
    "muxing": (("echo_cli.media.video_io", "VideoWriter.close"), ("echo_cli.media.mux", "mux")),
}
STAGES = tuple(STAGE_POINTS) + ("other",)
# Libraries only new inputs need (face tracking, transcription, text-model loading): a
# render whose inputs are all cached imports none of them (lazy imports at the point of use).
HEAVY_ON_WARM = ("mediapipe", "ctranslate2", "faster_whisper", "whisperx", "pyannote.audio", "torchaudio",
                 "transformers", "sentence_transformers", "lightning")
RENDER_SIDE = ("retarget", "rendering", "layout", "encoding", "muxing")   # compared with the floor


# ---------------------------------------------------------------------------------------
# Stage profiler (runs inside the worker process)
# ---------------------------------------------------------------------------------------
class StageProfiler:
    """Charge each wrapped call's exclusive wall time to its stage (per thread)."""

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        # the calling thread's share: its stages partition render()'s wall time, while a
        # producer thread (generate/ahead.py) runs beside it and is charged in `exclusive` too
        self.exclusive_main: dict[str, float] = defaultdict(float)
        self._main = threading.get_ident()
        self.exclusive_cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._tls = threading.local()
        self._undo: list[tuple[object, str, object]] = []
        self.missing: list[str] = []

    def _stack(self) -> list:
        s = getattr(self._tls, "stack", None)
        if s is None:
            s = self._tls.stack = []
        return s

    def _enter(self, stage: str) -> None:
        self._stack().append([stage, time.perf_counter(), 0.0, time.process_time(), 0.0])

    def _exit(self) -> None:
        stack = self._stack()
        stage, t0, child, c0, child_cpu = stack.pop()
        el = time.perf_counter() - t0
        cpu = time.process_time() - c0      # all threads of this process (torch, cv2 pools)
        self.exclusive[stage] += el - child
        if threading.get_ident() == self._main:
            self.exclusive_main[stage] += el - child
        self.exclusive_cpu[stage] += cpu - child_cpu
        self.calls[stage] += 1
        if stack:
            stack[-1][2] += el
            stack[-1][4] += cpu

    def _timed_iter(self, stage: str, it):
        try:
            while True:
                self._enter(stage)
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self._exit()
                yield item
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def wrap(self, stage: str, fn):
        prof = self

        @functools.wraps(fn)
        def timed(*a, **k):
            prof._enter(stage)
            try:
                res = fn(*a, **k)
            finally:
                prof._exit()
            if isinstance(res, types.GeneratorType):
                return prof._timed_iter(stage, res)
            return res

        timed.__echo_stage__ = stage
        return timed

    def install(self, points: dict = STAGE_POINTS) -> "StageProfiler":
        """Wrap every stage function, in its module and wherever it was imported by name."""
        import importlib

        for stage, targets in points.items():
            for mod_name, attr in targets:
                try:
                    mod = importlib.import_module(mod_name)
                except Exception as e:     # a stage module not in this build: its stage reads 0
                    self.missing.append(f"{mod_name}: {e.__class__.__name__}")
                    continue
                owner, name = mod, attr
                if "." in attr:
                    cls_name, name = attr.split(".", 1)
                    owner = getattr(mod, cls_name, None)
                orig = getattr(owner, name, None) if owner is not None else None
                if orig is None:
                    self.missing.append(f"{mod_name}.{attr}")
                    continue
                if getattr(orig, "__echo_stage__", None):
                    continue
                wrapped = self.wrap(stage, orig)
                self._set(owner, name, wrapped)
                if owner is mod:           # `from module import fn` copies elsewhere
                    for other in list(sys.modules.values()):
                        if other is mod or not getattr(other, "__name__", "").startswith("echo_cli"):
                            continue
                        for k, v in list(vars(other).items()):
                            if v is orig:
                                self._set(other, k, wrapped)
        return self

    def _set(self, owner, name: str, value) -> None:
        self._undo.append((owner, name, owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)))
        setattr(owner, name, value)

    def uninstall(self) -> None:
        for owner, name, value in reversed(self._undo):
            setattr(owner, name, value)
        self._undo.clear()

    def result(self, total: float, total_cpu: float | None = None) -> dict:
        stages = {s: round(self.exclusive.get(s, 0.0), 3) for s in STAGE_POINTS}
        main = {s: round(self.exclusive_main.get(s, 0.0), 3) for s in STAGE_POINTS}
        # "other" completes the calling thread's partition (time it waits on the producer
        # thread included); stage totals count both threads, so they may exceed render()
        stages["other"] = main["other"] = round(max(0.0, total - sum(main.values())), 3)
        cpu = {s: round(self.exclusive_cpu.get(s, 0.0), 3) for s in STAGE_POINTS}
        if total_cpu is not None:
            cpu["other"] = round(max(0.0, total_cpu - sum(cpu.values())), 3)
        return {"stages": stages, "stages_main_thread": main, "stages_cpu": cpu, "calls": dict(self.calls), "missing": self.missing}


def timing_checkpoint(folder: str | Path) -> Path:
    """An untrained checkpoint with the default recipe's architecture (tiny generator on the
    shipped motion space + an LCU), for timing when no trained default is installed: speed
    does not depend on the weights. Every figure made with it says so."""
    from echo_cli.lcu.model import LCU, LCUConfig
    from echo_cli.model.checkpoint import save_checkpoint
    from echo_cli.model.generator import EchoGenerator, layout_from_motion_space, make_config
    from echo_cli.motion.space import default_space

    import torch

    torch.manual_seed(0)
    gen = EchoGenerator(make_config("tiny", layout_from_motion_space(default_space()))).eval()
    g = gen.cfg
    regions = tuple((n, int(a), int(b)) for n, (a, b) in g.regions.items())
    lcu = LCU(LCUConfig(motion_dim=g.motion_dim, regions=regions, ctx_dim=g.user_dim)).eval()
    path = Path(folder) / "timing_untrained.safetensors"
    save_checkpoint(path, {**{f"generator.{k}": v for k, v in gen.state_dict().items()},
                           **{f"lcu.{k}": v for k, v in lcu.state_dict().items()}},
                    {"generator": g.to_dict(), "lcu": lcu.cfg.to_dict(), "note": "untrained, timing only"})
    return path


def worker(spec: str, out: str, preset: str | None = None, size: int | None = None,
           checkpoint: str | None = None) -> dict:
    """One instrumented render (in this process); writes the result JSON to `out`."""
    t_start = time.perf_counter()
    try:
        import psutil

        since_exec = time.time() - psutil.Process().create_time()
    except Exception:
        since_exec = None
    from echo_cli.api.render import render
    from echo_cli.errors import EchoError

    prof = StageProfiler().install()
    for name in filter(None, os.environ.get("ECHO_BENCH_PREIMPORT", "").split(",")):   # experiment knob
        __import__(name)
    if os.environ.get("ECHO_BENCH_FLUSH_DENORMAL") == "1":     # experiment knob (see docs/performance_e2e.md)
        import torch

        torch.set_flush_denormal(True)
    t0, c0 = time.perf_counter(), time.process_time()
    rec: dict = {"spec": spec, "preset": preset, "size": size, "checkpoint": checkpoint, "profiler_install_s": round(t0 - t_start, 3),
                 "startup_s": round(since_exec, 3) if since_exec is not None else None}
    try:
        res = render(spec, preset=preset, overrides={"size": size} if size else None, checkpoint=checkpoint)
        ok = True
    except EchoError as e:
        res, ok = {"error": e.to_dict()}, False
        rec["error_line"] = e.one_line()
    except Exception as e:   # noqa: BLE001 - recorded, the bench reports it
        res, ok = {"error": f"{e.__class__.__name__}: {e}"}, False
        rec["error_line"] = f"{e.__class__.__name__}: {e}"
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    prof.uninstall()
    rec.update({"ok": ok, "render_s": round(total, 3), "render_cpu_s": round(total_cpu, 3),
                "profile": prof.result(total, total_cpu),
                "render_timings": res.get("timings", {}),
                **{k: res.get(k) for k in ("output", "duration", "frames", "fps", "width", "height", "settings")}})
    # a warm render must not import these (tests/test_bench_e2e.py checks `echo-cli render` itself)
    rec["heavy_modules"] = [m for m in HEAVY_ON_WARM if m in sys.modules]
    try:
        import cv2
        import torch

        rec["threads"] = {"torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
                          "cv2": cv2.getNumThreads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    except Exception:
        pass
    from echo_cli.io_atomic import write_text

    write_text(out, json.dumps(rec, indent=1, default=str) + "\n")
    return rec


# ---------------------------------------------------------------------------------------
# Measurements (the bench process)
# ---------------------------------------------------------------------------------------
def help_startup(repeats: int = 5) -> dict:
    """Wall time of `echo-cli --help` in fresh processes (the installed entry point when
    present, else `python -m echo_cli`)."""
    exe = Path(sys.executable).parent / "echo-cli"
    cmd = [str(exe), "--help"] if exe.is_file() else [sys.executable, "-m", "echo_cli", "--help"]
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=60)
        times.append(time.perf_counter() - t0)
    return {"command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)),
            "best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3), "runs": len(times)}


def default_spec(data: Path, work: Path, layout: str = "side-by-side", transcript: str = "auto") -> Path:
    """samples/real_dialogue.yaml, with its media taken from `data` and its output in `work`
    (layout "avatar": the avatar alone, e.g. 512x512, instead of user | avatar; transcript
    "none": no speech recognition, the fastest cold render)."""
    import yaml

    from echo_cli.io_atomic import write_text

    need = {"portrait": data / "portraits/d12.jpg", "audio": data / "audio/RD_Radio34_002.wav",
            "user": data / "clips/d3.mp4"}
    for p in need.values():
        if not p.is_file():
            from echo_cli.errors import InputError

            raise InputError("benchmark media not found", path=p, fix="set --set data=DIR or ECHO_SHARED_DATA")
    spec = {"version": 1,
            "avatar": {"image": str(need["portrait"]), "audio": str(need["audio"])},
            "user": {"video": str(need["user"])},
            "turns": [{"speaker": "avatar", "start": 0.0, "end": 0.9},
                      {"speaker": "avatar", "start": 1.5, "end": 4.4, "emotion": "calm"},
                      {"speaker": "avatar", "start": 4.8, "end": 8.0, "emotion": "friendly"}],
            "transcript": {"source": transcript},
            "output": {"path": str(work / "real_dialogue.mp4"), "audio_mix": "avatar", "layout": layout},
            "preset": "default", "seed": 7}
    path = work / "real_dialogue.yaml"
    write_text(path, "# samples/real_dialogue.yaml with absolute media paths (bench end-to-end)\n"
               + yaml.safe_dump(spec, sort_keys=False))
    return path


def measured_render(spec: Path, cache: Path, preset: str, size: int, work: Path, label: str,
                    checkpoint: Path | None = None, env_extra: dict | None = None, timeout: float = 1800) -> dict:
    from echo_cli.bench.memory import bench_env, run_measured

    out_json = work / f"worker_{label}.json"
    cmd = [sys.executable, "-m", "echo_cli.bench.end_to_end", "worker", str(spec), str(out_json),
           "--preset", preset, "--size", str(size)] + (["--checkpoint", str(checkpoint)] if checkpoint else [])
    stats = run_measured(cmd, env=bench_env(cache, env_extra), timeout=timeout)
    rec = json.loads(out_json.read_text()) if out_json.is_file() else {"ok": False}
    if not rec.get("ok"):
        rec.setdefault("error_line", (rec.get("error_line") or stats.stderr_tail.strip().splitlines()[-1:] or
                                      [f"worker exit {stats.rc}"]))
        if isinstance(rec["error_line"], list):
            rec["error_line"] = rec["error_line"][0] if rec["error_line"] else ""
    rec.update({"label": label, "process_s": round(stats.wall_s, 3), "cpu_s": round(stats.cpu_s, 2),
                "peak_mb": round(stats.peak_mb, 1), "max_child_rss_mb": round(stats.max_child_rss_mb, 1),
                "rc": stats.rc, "timed_out": stats.timed_out})
    return rec


def floor(n_frames: int, size: tuple[int, int], fps: float, crf: int, preset: str, clip: Path,
          keep: Path | None = None) -> dict:
    """Plain decode + H.264 encode of n frames at `size` (the user clip looped as needed);
    `keep`: write the MP4 there (to report its size) instead of a temp file."""
    import itertools

    from echo_cli.bench.common import encode_frames
    from echo_cli.media.video_io import iter_frames

    def frames():
        while True:
            yield from iter_frames(clip, fps=fps, size=size)

    t, n = encode_frames(itertools.islice(frames(), n_frames), size, fps, crf=crf, preset=preset, path=keep)
    out = {"frames": n, "size": f"{size[0]}x{size[1]}", "seconds": round(t.seconds, 3), "cpu_s": round(t.cpu, 3),
           "encoder": f"libx264 {preset} crf {crf}", "source": clip.name, "rtf": round(t.seconds * fps / max(n, 1), 3)}
    if keep is not None:
        out["kB"] = round(Path(keep).stat().st_size / 1024, 1)
    return out


def _opt(args, key: str, default=None):
    return args.extra.get(key, default)


def run(args) -> dict:
    from echo_cli.bench.common import machine, markdown_table, report, shared_data
    from echo_cli.config import resolve_settings

    data = Path(_opt(args, "data") or shared_data() or "../shared/data")
    preset = _opt(args, "preset", "draft" if args.quick else "default")
    settings = resolve_settings(preset)
    size = int(_opt(args, "size") or (args.sizes[0] if args.sizes else settings.size))
    which = _opt(args, "cache", "both")
    repeats = int(_opt(args, "repeats", 5))
    seconds = float(_opt(args, "seconds", 0) or 0)
    layout = _opt(args, "layout", "side-by-side")
    asr = _opt(args, "transcript", None)        # None: the workload's own transcript source
    if layout not in ("side-by-side", "avatar"):
        from echo_cli.errors import UsageError

        raise UsageError(f"unknown layout '{layout}'", fix="use --set layout=side-by-side or --set layout=avatar")
    startup = help_startup(repeats)
    with tempfile.TemporaryDirectory(prefix="echo-bench-e2e-") as td:
        work = Path(td)
        if _opt(args, "spec"):
            spec = Path(_opt(args, "spec")).resolve()
            workload = f"{spec}"
        elif seconds:
            from echo_cli.bench.longform import build_dialogue

            user = _opt(args, "user", "video")
            asked = _opt(args, "layout", None)          # None: build_dialogue's default for `user`
            spec = build_dialogue(seconds / 60.0, work / "longform", data, user=user, preset=preset, layout=asked,
                                  **({"transcript": asr} if asr else {}))
            workload = (f"{seconds:g} s looped real media (bench/longform.py, user {user}): portrait d12.jpg "
                        "speaking radio speech, user speech turns" + (" + looped clips/d3.mp4 face" if user == "video" else "")
                        + (f", layout {asked}" if asked else "") + (f", transcript source {asr}" if asr else ""))
        else:
            spec = default_spec(data, work, layout, asr or "auto")
            workload = ("samples/real_dialogue.yaml: portrait d12.jpg speaking RD_Radio34_002.wav (8 s), user "
                        f"clips/d3.mp4 (real listening face), {layout}, transcript source {asr or 'auto'}")
        cache = work / "cache"
        from echo_cli.api.render import default_checkpoint

        ckpt = Path(_opt(args, "checkpoint")) if _opt(args, "checkpoint") else None
        if ckpt is None and not default_checkpoint().is_file():
            ckpt = timing_checkpoint(work)
            model_note = "no trained default checkpoint installed: an untrained one with the same architecture (timing only)"
        else:
            model_note = f"checkpoint {ckpt or default_checkpoint()}"
        workload += f"; model: {model_note}"
        runs = []
        labels = {"both": ("cold", "warm"), "cold": ("cold",), "warm": ("cold", "warm")}[which]
        for label in labels:
            rec = measured_render(spec, cache, preset, size, work, label, ckpt)
            logger.info("%s: ok=%s %.1f s (render %.1f s), peak %.0f MB", label, rec.get("ok"), rec["process_s"],
                        rec.get("render_s") or 0, rec["peak_mb"])
            runs.append(rec)
        if which == "warm":
            runs = runs[1:]
        ok_runs = [r for r in runs if r.get("ok")]
        fl = None
        if ok_runs:
            r = ok_runs[-1]
            clip = data / "clips/d3.mp4"
            fl = floor(int(r["frames"]), (int(r["width"]), int(r["height"])), float(r["fps"] or settings.fps),
                       settings.crf, settings.encoder_preset, clip)
    rows = []
    for r in runs:
        dur = r.get("duration") or 0.0
        st = (r.get("profile") or {}).get("stages", {})
        row = {"run": r["label"], "ok": bool(r.get("ok")), "duration_s": dur, "frames": r.get("frames"),
               "size": f"{r.get('width')}x{r.get('height')}" if r.get("ok") else "",
               "process_s": r["process_s"], "render_s": r.get("render_s"),
               "rtf": round(r["process_s"] / dur, 3) if dur else None,
               "rtf_render": round(r["render_s"] / dur, 3) if dur and r.get("render_s") else None,
               "fps": round(r["frames"] / r["process_s"], 3) if r.get("frames") else None,
               "cpu_s": r["cpu_s"], "peak_mb": r["peak_mb"],
               **{f"stage_{k}": v for k, v in st.items()},
               **{f"main_{k}": v for k, v in (r.get("profile") or {}).get("stages_main_thread", {}).items()},
               **{f"cpu_{k}": v for k, v in (r.get("profile") or {}).get("stages_cpu", {}).items()},
               "render_cpu_s": r.get("render_cpu_s"),
               "render_timings": r.get("render_timings"), "threads": r.get("threads"),
               "heavy_modules": r.get("heavy_modules"),
               "error": r.get("error_line", "")}
        if fl and r.get("ok"):
            side = sum(st.get(k, 0.0) for k in RENDER_SIDE)
            row.update({"render_side_s": round(side, 3), "floor_s": fl["seconds"],
                        "render_side_vs_floor": round(side / max(fl["seconds"], 1e-9), 2)})
        rows.append(row)
    acceptance = _acceptance(rows, startup)
    md = _markdown(rows, startup, fl, acceptance, args.command or "echo-cli bench end-to-end", workload,
                   preset, size, machine())
    extra = {"startup": startup, "floor": fl, "acceptance": acceptance, "workload": workload, "preset": preset,
             "size": size, "runs": runs}
    # a looped long dialogue gets its own doc section and history target, beside the sample's
    target = f"end-to-end-{seconds:g}s" if seconds and not _opt(args, "spec") else "end-to-end"
    if layout == "avatar" and not _opt(args, "spec"):
        target += "-avatar"
    if asr == "none" and not _opt(args, "spec"):
        target += "-no-asr"
    return report(target, args, rows, md, extra)


def _acceptance(rows: list[dict], startup: dict) -> dict:
    by = {r["run"]: r for r in rows if r["ok"]}
    acc = {"help_under_0.5s": {"value": startup["median_s"], "pass": startup["median_s"] < 0.5}}
    if "cold" in by:
        acc["rtf_cold_le_0.5"] = {"value": by["cold"]["rtf"], "pass": by["cold"]["rtf"] <= 0.5}
    if "warm" in by:
        acc["rtf_warm_le_0.25"] = {"value": by["warm"]["rtf"], "pass": by["warm"]["rtf"] <= 0.25}
    last = by.get("warm") or by.get("cold")
    if last and "render_side_vs_floor" in last:
        acc["render_encode_le_3x_floor"] = {"value": last["render_side_vs_floor"],
                                            "pass": last["render_side_vs_floor"] <= 3.0}
    return acc


def _markdown(rows, startup, fl, acceptance, command, workload, preset, size, m) -> str:
    from echo_cli.bench.common import markdown_table

    lines = [f"### End to end: {workload.split(';')[0].split(':')[0]}", "", f"Command: `{command}`", "",
             f"Workload: {workload}; preset `{preset}`, {size} px. Each render is a fresh process "
             "(imports and model loads included); cold = empty cache, warm = the same inputs again.", ""]
    cols = [("run", "run"), ("ok", "ok"), ("duration_s", "video s"), ("frames", "frames"), ("size", "output"),
            ("process_s", "wall s (process)"), ("render_s", "render() s"), ("rtf", "RTF"), ("fps", "frames/s"),
            ("cpu_s", "CPU s"), ("peak_mb", "peak MB")]
    lines += [markdown_table(rows, cols), ""]
    stage_rows = []
    for s in STAGES:
        stage_rows.append({"stage": s, **{r["run"]: r.get(f"stage_{s}", "") for r in rows},
                           **{r["run"] + "_cpu": r.get(f"cpu_{s}", "") for r in rows}})
    stage_rows.append({"stage": "(imports, startup: process - render())",
                       **{r["run"]: round(r["process_s"] - (r["render_s"] or 0), 3) for r in rows}})
    cols = [("stage", "stage")] + [(r["run"], f"{r['run']} wall s") for r in rows] \
        + [(r["run"] + "_cpu", f"{r['run']} CPU s") for r in rows]
    lines += ["Seconds per stage (exclusive: a nested stage's time is charged to it only). CPU s = CPU "
              "time of the render process, all its threads (not its ffmpeg children): unlike wall "
              "time it does not grow with the neighbours' load.", "",
              markdown_table(stage_rows, cols), ""]
    if fl:
        lines.append(f"Floor: plain decode + H.264 encode of {fl['frames']} frames at {fl['size']} "
                     f"({fl['encoder']}, {fl['source']} looped): {fl['seconds']:.2f} s wall, {fl['cpu_s']:.2f} CPU s.")
    lines.append("Input-only libraries imported by the render process: " + "; ".join(
        f"{r['run']}: {', '.join(r['heavy_modules']) or 'none'}" for r in rows if r.get("heavy_modules") is not None)
        + ".")
    lines.append(f"`echo-cli --help`: best {startup['best_s']:.3f} s, median {startup['median_s']:.3f} s "
                 f"({startup['runs']} runs).")
    lines += ["", "| acceptance | value | pass |", "|---|---|---|"]
    for k, v in acceptance.items():
        lines.append(f"| {k} | {v['value']} | {'yes' if v['pass'] else 'NO'} |")
    errs = [f"{r['run']}: {r['error']}" for r in rows if not r["ok"]]
    if errs:
        lines += ["", "Failed runs: " + "; ".join(errs)]
    lines += ["", f"Machine: {m['cpu']}, {m['affinity']} cores, load {m['load_1min']} (1-min average at the end), "
                  f"ffmpeg {m['ffmpeg']}, git {m['git']}."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Thread settings on a small machine (python -m echo_cli.bench.end_to_end threads)
# ---------------------------------------------------------------------------------------
def threads_worker(n: int, frames: int = 40) -> dict:
    """Hot-path kernels with every thread pool at `n` threads (env set by the parent before
    any import: OMP/OpenBLAS/MKL/ECHO_THREADS; torch and cv2 set here). Wall and CPU s."""
    import numpy as np
    import cv2
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    out: dict = {"threads": n, "torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()}

    def clock(fn):
        w0, c0 = time.perf_counter(), time.process_time()
        r = fn()
        return r, time.perf_counter() - w0, time.process_time() - c0

    # BLAS (numpy float32 matmul; OpenBLAS pool)
    a = np.random.default_rng(0).standard_normal((768, 768)).astype(np.float32)
    _, w, c = clock(lambda: [a @ a for _ in range(20)])
    out["blas_matmul768x20"] = {"wall_s": round(w, 3), "cpu_s": round(c, 3)}
    # generation (torch): the shipped checkpoint when present, else the tiny model (same ops)
    from echo_cli.bench.generate import _model, time_generation
    from echo_cli.config import resolve_settings

    model, source = _model(None)
    secs, total, cpu = time_generation(model, resolve_settings("default"), 256, True)
    out["generation_256f"] = {"wall_s": round(secs, 3), "cpu_s": round(cpu, 3), "fps": round(total / secs, 1),
                              "model": source}
    # face tracking + rendering on real motion (d12.mp4), 512 px, and render + encode
    from echo_cli.bench.render import _scaled, _workload
    from echo_cli.media.video_io import iter_frames
    from echo_cli.preprocess.face import track_face
    from echo_cli.bench.common import shared_data

    clip = shared_data() / "clips/d12.mp4"
    vid = np.stack(list(iter_frames(clip, fps=25.0, max_frames=frames)))
    track_face(vid[:3], fps=25.0)
    _, w, c = clock(lambda: track_face(vid, fps=25.0))
    out["face_track_ms"] = {"wall_s": round(w, 3), "cpu_s": round(c, 3), "ms_per_frame": round(1000 * w / len(vid), 1)}
    ref0, lms0 = _workload(frames)
    ref, lms = _scaled(ref0, lms0, 512)
    from echo_cli.render.warp import MeshWarpRenderer

    r = MeshWarpRenderer()
    r.prepare(ref, lms[0])
    r.render(lms[0])
    _, w, c = clock(lambda: [r.render(l) for l in lms])
    out["render512"] = {"wall_s": round(w, 3), "cpu_s": round(c, 3), "ms_per_frame": round(1000 * w / len(lms), 1)}
    from echo_cli.media.video_io import VideoWriter

    with tempfile.TemporaryDirectory(prefix="echo-bench-") as td:
        def both():
            with VideoWriter(Path(td) / "t.mp4", 25.0, (512, 512)) as vw:
                for _ in range(3):
                    for l in lms:
                        vw.write(r.render(l))
        _, w, c = clock(both)
    from echo_cli.bench.common import cpu_seconds  # noqa: F401  (children CPU is not in process_time)
    out["render512_encode"] = {"wall_s": round(w, 3), "cpu_s_python": round(c, 3),
                               "ms_per_frame": round(1000 * w / (3 * len(lms)), 1)}
    return out


def threads_bench(configs=(1, 2), frames: int = 40) -> list[dict]:
    rows = []
    for n in configs:
        env = dict(os.environ)
        env.update({"OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n),
                    "ECHO_THREADS": str(n)})
        with tempfile.TemporaryDirectory(prefix="echo-threads-") as td:
            out = Path(td) / "t.json"
            p = subprocess.run([sys.executable, "-m", "echo_cli.bench.end_to_end", "threads-worker", str(n), str(out),
                                "--frames", str(frames)], env=env, capture_output=True, text=True, timeout=900)
            if p.returncode != 0 or not out.is_file():
                rows.append({"threads": n, "error": p.stderr[-500:]})
                continue
            rows.append(json.loads(out.read_text()))
    return rows


# ---------------------------------------------------------------------------------------
# Transcription backends as a cold render pays for them (python -m echo_cli.bench.end_to_end transcribers)
# ---------------------------------------------------------------------------------------
def transcriber_worker(backend: str, path: str) -> dict:
    """One transcription in this (fresh) process: imports and model loads included."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    w0, c0 = time.perf_counter(), cpu()
    from echo_cli.features.audio import read_audio
    from echo_cli.preprocess.transcript import transcribe

    tr = transcribe(read_audio(path), backend=backend)
    return {"backend": backend, "file": Path(path).name, "method": tr.method, "wall_s": round(time.perf_counter() - w0, 2),
            "cpu_s": round(cpu() - c0, 2), "words": [[w.text, w.start, w.end] for w in tr.words],
            "load_1min": round(os.getloadavg()[0], 2)}


def transcribers_bench(files: list[str], backends=("faster-whisper", "whisperx")) -> dict:
    """Each backend on each file in a fresh process, and how far their words and times agree."""
    import statistics

    rows = []
    for f in files:
        for b in backends:
            with tempfile.TemporaryDirectory(prefix="echo-asr-") as td:
                out = Path(td) / "r.json"
                p = subprocess.run([sys.executable, "-m", "echo_cli.bench.end_to_end", "transcriber-worker", b, f,
                                    str(out)], capture_output=True, text=True, timeout=900)
                rows.append(json.loads(out.read_text()) if out.is_file() else
                            {"backend": b, "file": Path(f).name, "error": p.stderr[-500:]})
    agree = []
    for f in files:
        by = {r["backend"]: r for r in rows if r["file"] == Path(f).name and "words" in r}
        if len(by) == 2:
            a, b = (by[k]["words"] for k in backends)
            pairs = list(zip(a, b))
            agree.append({"file": Path(f).name, "words": [len(a), len(b)],
                          "same_text": sum(x[0].lower() == y[0].lower() for x, y in pairs),
                          "median_start_diff_s": round(statistics.median(abs(x[1] - y[1]) for x, y in pairs), 3) if pairs else None,
                          "max_start_diff_s": round(max((abs(x[1] - y[1]) for x, y in pairs), default=0.0), 3)})
    return {"rows": rows, "agreement": agree}


def _report(rec: dict, out: str | None) -> None:
    """The record on stdout, and in `out` (written atomically) when given."""
    text = json.dumps(rec, indent=1)
    if out:
        from echo_cli.io_atomic import write_text

        write_text(out, text + "\n")
    print(text)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="end-to-end bench worker / runner")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="one instrumented render (used by the bench)")
    w.add_argument("spec")
    w.add_argument("out")
    w.add_argument("--preset", default=None)
    w.add_argument("--size", type=int, default=None)
    w.add_argument("--checkpoint", default=None)
    tw = sub.add_parser("threads-worker", help="hot-path kernels at N threads (used by `threads`)")
    tw.add_argument("n", type=int)
    tw.add_argument("out")
    tw.add_argument("--frames", type=int, default=40)
    fl = sub.add_parser("floors", help="the plain-encode floor per size and libx264 preset (speed and file size)")
    fl.add_argument("--sizes", default="512x512,1024x512")
    fl.add_argument("--presets", default="veryfast,superfast,ultrafast")
    fl.add_argument("--frames", type=int, default=295)
    fl.add_argument("--crf", type=int, default=20)
    tr = sub.add_parser("transcribers", help="faster-whisper vs WhisperX per file, fresh processes")
    tr.add_argument("files", nargs="*")
    tr.add_argument("--out", default=None)
    trw = sub.add_parser("transcriber-worker", help="one transcription (used by `transcribers`)")
    trw.add_argument("backend")
    trw.add_argument("file")
    trw.add_argument("out")
    th = sub.add_parser("threads", help="compare thread settings (1 vs 2) on the hot paths")
    th.add_argument("--configs", default="1,2")
    th.add_argument("--frames", type=int, default=40)
    th.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.cmd == "threads-worker":
        from echo_cli.io_atomic import write_text

        with contextlib.redirect_stdout(sys.stderr):
            rec = threads_worker(a.n, a.frames)
        write_text(a.out, json.dumps(rec, indent=1) + "\n")
        return
    if a.cmd == "floors":
        from echo_cli.bench.common import shared_data

        rows = []
        with tempfile.TemporaryDirectory(prefix="echo-floors-") as td:
            for sz in a.sizes.split(","):
                w, h = (int(v) for v in sz.lower().split("x"))
                for preset in a.presets.split(","):
                    rows.append(floor(a.frames, (w, h), 25.0, a.crf, preset, shared_data() / "clips/d3.mp4",
                                      keep=Path(td) / f"{sz}_{preset}.mp4"))
                    rows[-1]["load_1min"] = round(os.getloadavg()[0], 2)
                    print(json.dumps(rows[-1]), flush=True)
        return
    if a.cmd == "transcriber-worker":
        from echo_cli.io_atomic import write_text

        with contextlib.redirect_stdout(sys.stderr):
            rec = transcriber_worker(a.backend, a.file)
        write_text(a.out, json.dumps(rec) + "\n")
        return
    if a.cmd == "transcribers":
        from echo_cli.bench.common import shared_data

        files = a.files or [str(shared_data() / "audio/RD_Radio34_002.wav"), str(shared_data() / "clips/d3.mp4")]
        rec = transcribers_bench(files)
        rec["command"] = "python -m echo_cli.bench.end_to_end transcribers " + " ".join(sys.argv[2:])
        _report(rec, a.out)
        return
    if a.cmd == "threads":
        rows = threads_bench(tuple(int(x) for x in a.configs.split(",")), a.frames)
        rec = {"rows": rows, "load_1min": round(os.getloadavg()[0], 2),
               "command": "python -m echo_cli.bench.end_to_end threads " + " ".join(sys.argv[2:])}
        _report(rec, a.out)
        return
    if a.cmd == "worker":
        from echo_cli import log as _log

        _log.setup(0)
        with contextlib.redirect_stdout(sys.stderr):
            rec = worker(a.spec, a.out, a.preset, a.size, a.checkpoint)
        sys.exit(0 if rec["ok"] else 1)


if __name__ == "__main__":
    main()
