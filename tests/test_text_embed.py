"""features/text.py: the pure-torch MiniLM matches sentence-transformers; the on-disk
embedding cache serves repeated texts across processes without loading the model; no
sentence-transformers/transformers import on the way."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from echo_cli.features import text as T

SENTENCES = [
    "primarily happy and joyful", "I'm so sorry.", "calm", "friendly", "",
    "We won the championship, the whole town is celebrating!",
    "My father passed away this morning after a long illness.",
    "Hello, WORLD!!! 123 ünïcödé café naïve", "東京は日本の首都です", "Ça va? ¿Qué tal? Добрый день",
    "  leading and trailing spaces   ", "tab\tseparated\nnew line", "emoji 😀 test",
    "[CLS] [SEP] [PAD] literal special tokens", "antidisestablishmentarianism supercalifragilistic",
    "URL https://example.com/a?b=c&d=e", "The listener nods slowly and smiles while looking at the speaker.",
    "no user present", "a",
    "The quick brown fox jumps over the lazy dog. " * 40,      # > 256 tokens: truncated like ST
]


def test_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers", reason="reference implementation not installed")
    ours = T.embed_texts_uncached(SENTENCES, batch_size=7)          # mixed-length batches: padding matters
    ref = st.SentenceTransformer(T.model_path(), device="cpu").encode(
        SENTENCES, batch_size=7, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    assert ours.shape == (len(SENTENCES), T.TEXT_DIM) and ours.dtype == np.float32
    cos = (ours * ref).sum(1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999, dict(zip(SENTENCES, cos.round(6)))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_embeddings():
    one = np.stack([T.embed_texts_uncached([s])[0] for s in SENTENCES[:8]])
    together = T.embed_texts_uncached(SENTENCES[:8], batch_size=3)
    assert float((one * together).sum(1).min()) >= 0.99999


def _subprocess(code: str, env_cache) -> dict:
    import os

    env = dict(os.environ, ECHO_CACHE_DIR=str(env_cache))
    env.pop("ECHO_NO_EMBED_CACHE", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = """
    import json, sys
    from echo_cli.features import text as T
    v = T.embed_texts(%r)
    print(json.dumps({"vec": v.tolist(), "model_loaded": T._model.cache_info().currsize,
                      "heavy": [m for m in ("sentence_transformers", "transformers") if m in sys.modules]}))
"""


def test_disk_cache_across_processes(tmp_path):
    texts = ["primarily calm and warm", "primarily surprised and excited", "primarily calm and warm"]
    first = _subprocess(PROBE % (texts,), tmp_path)
    assert first["model_loaded"] == 1 and first["heavy"] == []
    files = sorted((tmp_path / "text-embed").rglob("*.f32"))
    assert len(files) == 2 and all(f.stat().st_size == 4 * T.TEXT_DIM for f in files)
    assert not list((tmp_path / "text-embed").rglob(".*.part*"))            # atomic writes left no temp
    second = _subprocess(PROBE % (texts,), tmp_path)
    assert second["model_loaded"] == 0, "a repeated text must not load the model"
    np.testing.assert_array_equal(np.asarray(first["vec"], np.float32), np.asarray(second["vec"], np.float32))
    # a damaged entry (wrong size) is ignored, recomputed and rewritten
    files[0].write_bytes(b"\0" * 10)
    third = _subprocess(PROBE % (texts,), tmp_path)
    assert third["model_loaded"] == 1
    np.testing.assert_allclose(np.asarray(third["vec"]), np.asarray(first["vec"]), atol=1e-6)
    assert files[0].stat().st_size == 4 * T.TEXT_DIM


def test_disk_cache_keyed_by_model_hash(cache_dir):
    v = T.embed_texts(["a sentence for the key test"])[0]
    sha = T.model_sha256()
    assert len(sha) == 64
    (entry,) = (cache_dir / "text-embed").rglob("*.f32")
    assert entry.parent.parent.name == sha[:16]
    np.testing.assert_array_equal(np.frombuffer(entry.read_bytes(), "<f4"), v)
