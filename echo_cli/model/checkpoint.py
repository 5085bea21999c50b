"""Checkpoints: plain tensors in safetensors + a JSON config with a schema version. Never pickle.

A checkpoint named `NAME` is two files side by side:
  NAME.safetensors   tensors, keys prefixed by component: "generator.*", "lcu.*", ... ;
                     its header metadata carries a copy of the JSON (key "echo_config")
  NAME.json          {"schema": 1, "generator": GeneratorConfig dict, ... any other sections:
                      "motion_space", "lcu", "training", "metrics"}
The JSON file wins when both exist (it is the human-edited/-read one); the header copy
lets a lone .safetensors file still load.

Errors are ModelError (exit code 5) with the file and what to do: missing, a pickle file
(.pt/.pth/.ckpt/.bin/.pkl: refused, since unpickling runs arbitrary code), truncated or not
safetensors, a schema from a newer echo-cli, tensors that do not match the config.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from echo_cli.errors import ModelError
from echo_cli.io_atomic import atomic_path, write_text

SCHEMA_VERSION = 1
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle"}


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """NAME, NAME.safetensors or NAME.json -> (NAME.safetensors, NAME.json)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    # 8-byte little-endian header length, then a JSON header starting with "{"
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= size - 8 and head[8:9] == b"{"


def _refuse_pickle(p: Path) -> None:
    head, size = b"", 0
    if p.is_file():
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(16)
    # torch.save writes a zip (PK..) or a raw pickle (0x80 protocol byte)
    pickled = (head[:2] == b"PK" or head[:1] == b"\x80") and not _looks_like_safetensors(head, size)
    if p.suffix.lower() in PICKLE_SUFFIXES or pickled:
        raise ModelError("this is a pickle (torch.save) file; echo-cli loads only safetensors, because "
                         "unpickling can run arbitrary code", path=p,
                         fix="convert it once in a trusted environment with safetensors.torch.save_file "
                             "and write a JSON config beside it, or use an echo-cli checkpoint")


#################################################################################
#                                  Save / load                                  #
#################################################################################

def save_checkpoint(path: str | Path, tensors: dict, config: dict) -> Path:
    """Write NAME.safetensors + NAME.json atomically. tensors: name -> torch.Tensor."""
    from safetensors.torch import save_file

    st, js = checkpoint_paths(path)
    meta = {"schema": SCHEMA_VERSION, **config}
    text = json.dumps(meta, indent=2, sort_keys=True)
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(st) as tmp:
        try:
            save_file(flat, str(tmp), metadata={"echo_config": json.dumps(meta, sort_keys=True)})
        except Exception as e:      # safetensors' own error type wraps the OS error
            if "os error" in str(e):
                import errno
                import re

                m = re.search(r"os error (\d+)", str(e))
                code = int(m.group(1)) if m else errno.EIO
                raise OSError(code, os.strerror(code), str(st)) from e
            raise
    write_text(js, text + "\n")
    return st


def load_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """-> (tensors name -> torch.Tensor on CPU, config dict). Validates format and schema."""
    st, js = _locate(path)
    header, tensors = _read_safetensors(st, with_tensors=True)
    return tensors, _config(js, header)


def _locate(path: str | Path) -> tuple[Path, Path]:
    """(NAME.safetensors, NAME.json) of an existing checkpoint; pickles are refused."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES or (p.is_file() and p.suffix not in (".safetensors", ".json")):
        _refuse_pickle(p)
        # an image or any other file: say so (looking for "NAME.jpg.safetensors" named a file
        # the user never wrote)
        raise ModelError("not a checkpoint: echo-cli checkpoints are NAME.safetensors files", path=p,
                         fix="pass the path of a NAME.safetensors written by `echo-cli train`")
    if p.is_dir():
        raise ModelError("this is a folder, not a checkpoint", path=p,
                         fix="pass the path of a NAME.safetensors written by `echo-cli train`")
    st, js = checkpoint_paths(p)
    if not st.is_file():
        raise ModelError("checkpoint not found", path=st,
                         fix="pass the path of a NAME.safetensors written by `echo-cli train`")
    _refuse_pickle(st)
    return st, js


def _read_safetensors(st: Path, with_tensors: bool) -> tuple[dict, dict]:
    """(metadata header, tensors or {}) of a safetensors file; ModelError when damaged."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(st), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"not a readable safetensors file (truncated or damaged): {e}", path=st,
                         fix="re-download or re-train the checkpoint") from e
    return header, tensors


def _config(js: Path, header: dict) -> dict:
    if js.is_file():
        try:
            config = json.loads(js.read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"checkpoint config is not valid JSON: {e}", path=js,
                             fix="restore the .json written with the checkpoint") from e
    elif "echo_config" in header:
        config = json.loads(header["echo_config"])
    else:
        raise ModelError("checkpoint has no JSON config", path=js,
                         fix="keep NAME.json next to NAME.safetensors")
    schema = config.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise ModelError(f"checkpoint schema {schema!r} is not supported (this echo-cli reads <= {SCHEMA_VERSION})",
                         path=js, fix="upgrade echo-cli or use a checkpoint made by this version")
    return config


def read_config(path: str | Path) -> dict:
    """A checkpoint's config without its tensors (what preprocessing needs to know first:
    which audio features the generator reads)."""
    st, js = _locate(path)
    header = {} if js.is_file() else _read_safetensors(st, with_tensors=False)[0]
    return _config(js, header)


def component(tensors: dict, prefix: str) -> dict:
    """The sub-dict of one component ("generator", "lcu", ...) without its prefix."""
    pre = prefix + "."
    return {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)}


def load_state(module, state: dict, path: str | Path, what: str) -> None:
    """load_state_dict(strict) with a ModelError that names the mismatch."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:      # shape mismatch
        first = str(e).splitlines()[1:2] or [str(e)]
        raise ModelError(f"{what} tensors do not match the config: {first[0].strip()}", path=path,
                         fix="use the checkpoint with the JSON config it was saved with") from e
    if missing or unexpected:
        raise ModelError(f"{what} tensors do not match the config (missing {list(missing)[:3]}, "
                         f"unexpected {list(unexpected)[:3]})", path=path,
                         fix="use the checkpoint with the JSON config it was saved with")


#################################################################################
#                                  Generator                                    #
#################################################################################

def generator_tensors(model) -> dict:
    return {f"generator.{k}": v for k, v in model.state_dict().items()}


def save_generator(path: str | Path, model, extra_config: dict | None = None,
                   extra_tensors: dict | None = None) -> Path:
    """Save an EchoGenerator (plus optional other components' tensors / config sections)."""
    tensors = generator_tensors(model)
    tensors.update(extra_tensors or {})
    return save_checkpoint(path, tensors, {"generator": model.cfg.to_dict(), **(extra_config or {})})


def build_generator(tensors: dict, config: dict, path: str | Path = "<memory>"):
    from echo_cli.model.generator import EchoGenerator, GeneratorConfig

    if "generator" not in config:
        raise ModelError("checkpoint config has no 'generator' section", path=path,
                         fix="use a checkpoint written by `echo-cli train`")
    try:
        cfg = GeneratorConfig.from_dict(config["generator"])
    except TypeError as e:
        raise ModelError(f"generator config does not match this echo-cli: {e}", path=path,
                         fix="use a checkpoint made by this version") from e
    model = EchoGenerator(cfg)
    load_state(model, component(tensors, "generator"), path, "generator")
    return model.eval()


def load_generator(path: str | Path, device: str = "cpu"):
    """NAME(.safetensors) -> (EchoGenerator in eval mode on `device`, full config dict)."""
    tensors, config = load_checkpoint(path)
    model = build_generator(tensors, config, checkpoint_paths(path)[0])
    return model.to(device), config
