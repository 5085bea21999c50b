"""`echo-cli bench generate`: motion-generation speed (frames/s) with the default preset.

Measures the streaming engine (generate/engine.py) end to end: chunk plan, conditioning,
the few-step flow-matching sampler with classifier-free guidance, stitching. Rows: CPU at
the given thread count (default 2: the target machine), with and without a user context
(3 vs 2 guidance branches), and CUDA (SDPA and xformers) when a GPU exists.
Timing does not depend on the weights, so without a checkpoint a fresh "tiny" model on
the shipped MotionSpace layout is timed (said in the row).

Options (--set key=value): checkpoint=PATH, threads=N, preset=NAME (render preset),
devices=cpu,cuda (which rows; CUDA rows only where torch sees a GPU).
`--long-seconds S` also streams S seconds and 60 s and reports both peak memories.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.bench.common import BenchArgs, PeakMemory, machine_line, markdown_table, report

logger = log.get("echo_cli.bench.generate")

SET_OPTIONS = {"threads": (int, 1, 256), "devices": (str, ("cpu,cuda", "cpu", "cuda", "cuda,cpu")),   # --set, checked by the CLI
               "preset": (str,), "checkpoint": (str,)}
DEFAULT_CKPT = Path(__file__).resolve().parents[1] / "checkpoints" / "default.safetensors"


def _model(checkpoint: str | None):
    from echo_cli.model.checkpoint import load_generator

    path = Path(checkpoint) if checkpoint else DEFAULT_CKPT
    if path.is_file():
        model, _ = load_generator(path)
        return model, str(path)
    from echo_cli.model.generator import EchoGenerator, layout_from_motion_space, make_config
    try:
        from echo_cli.motion.space import default_space
        layout = layout_from_motion_space(default_space())
    except Exception:   # no shipped motion space: a same-sized synthetic layout
        from echo_cli.model.generator import synthetic_layout
        layout = synthetic_layout(31)
    return EchoGenerator(make_config("tiny", layout)).eval(), "untrained tiny (timing only)"


def _inputs(model, n: int, user: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    cfg = model.cfg
    inp = {"audio": rng.standard_normal((n, cfg.audio_dim)).astype(np.float32),
           "identity": np.zeros(cfg.motion_dim, np.float32)}
    if user:
        inp["user_ctx"] = rng.standard_normal((n, cfg.user_dim)).astype(np.float32)
    return inp


def time_generation(model, settings, n: int, user: bool) -> tuple[float, int]:
    from echo_cli.generate.engine import generate

    inp = _inputs(model, n, user)
    # warm-up chunk (allocator, kernels) outside the timing
    list(generate(model, {**inp, "n_frames": min(n, settings.chunk_frames)}, settings, seed=0))
    t0, c0 = time.perf_counter(), time.process_time()
    total = sum(p.shape[0] for p in generate(model, inp, settings, seed=0))
    return time.perf_counter() - t0, total, time.process_time() - c0


def run(args: BenchArgs) -> dict:
    import torch

    from echo_cli.config import resolve_settings
    from echo_cli.model.attention import resolve_backend, set_backend

    threads = int(args.extra.get("threads", 2))
    devices = str(args.extra.get("devices", "cpu,cuda")).split(",")
    settings = resolve_settings(args.extra.get("preset", "default"))
    n = args.frames or (250 if args.quick else 1500)
    model, source = _model(args.extra.get("checkpoint"))
    rows, skipped = [], []
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for user in ((False, True) if "cpu" in devices else ()):
            secs, total, cpu = time_generation(model, settings, n, user)
            # cpu_fps: frames per CPU-second of this process (what a loaded machine still tells)
            rows.append({"device": "cpu", "threads": threads, "backend": "sdpa", "user_ctx": user,
                         "frames": total, "seconds": round(secs, 3), "fps": round(total / secs, 1),
                         "cpu_fps": round(total / max(cpu, 1e-9), 1)})
            logger.info("%s", rows[-1])
        if "cuda" in devices and torch.cuda.is_available():
            gpu = model.to("cuda")
            for backend in ("sdpa", "xformers"):
                try:
                    set_backend(backend)
                    resolve_backend(torch.device("cuda"))
                except Exception as e:   # xformers missing or without kernels: say why, keep SDPA's row
                    logger.warning("skipping %s: %s", backend, e)
                    skipped.append(f"CUDA row with `{backend}` not measured: {getattr(e, 'message', e)}")
                    continue
                secs, total, _ = time_generation(gpu, settings, n, True)
                rows.append({"device": torch.cuda.get_device_name(0), "threads": threads, "backend": backend,
                             "user_ctx": True, "frames": total, "seconds": round(secs, 3),
                             "fps": round(total / secs, 1)})
            set_backend("auto")
            model = gpu.to("cpu")
    finally:
        torch.set_num_threads(prev_threads)
    long_rows = []
    if args.long_seconds:
        from echo_cli.generate.engine import generate
        for secs_len in (60.0, float(args.long_seconds)):
            frames = int(secs_len * settings.fps)
            block = _inputs(model, 256, True)
            inp = {"audio": lambda a, b: block["audio"][np.arange(a, b) % 256], "n_frames": frames,
                   "identity": block["identity"], "user_ctx": lambda a, b: block["user_ctx"][np.arange(a, b) % 256]}
            with PeakMemory() as mem:
                total = sum(p.shape[0] for p in generate(model, inp, settings, seed=0))
            long_rows.append({"seconds": secs_len, "frames": total, "peak_mb": round(mem.peak_mb, 1)})
    cols = [("device", "device"), ("threads", "threads"), ("backend", "attention"), ("user_ctx", "user context"),
            ("frames", "frames"), ("seconds", "s"), ("fps", "frames/s"), ("cpu_fps", "frames per CPU-s")]
    md = [f"Command: `{args.command or 'echo-cli bench generate'}`", "", f"Motion generation, preset `{args.extra.get('preset', 'default')}` (chunk {settings.chunk_frames}, "
          f"T_prev {settings.t_prev}, overlap {settings.overlap}, {settings.steps} steps, CFG audio "
          f"{settings.cfg_audio} / user {settings.cfg_user}); model: {source}.", "",
          markdown_table(rows, cols)]
    md += [f"\n{s}" for s in skipped]
    if long_rows:
        md += ["", "Streamed generation, peak resident memory:", "",
               markdown_table(long_rows, [("seconds", "video seconds"), ("frames", "frames"), ("peak_mb", "peak MB")])]
    md += ["", machine_line()]
    return report("generate", args, rows, "\n".join(md), {"long": long_rows, "model": source, "skipped": skipped})
