"""api.reenact.load_reference: the portrait's face track is cached by content hash, so a
warm render tracks nothing; cached and fresh results are the same pixels."""
from __future__ import annotations

import shutil

import numpy as np

from echo_cli.api.reenact import ReenactOptions, load_reference


def test_reference_track_cached_by_content(shared_data, cache_dir, tmp_path):
    portrait = shared_data / "portraits/d12.jpg"
    rgb1, lm1 = load_reference(portrait, None, ReenactOptions(size=256), 25.0)
    entries = sorted((cache_dir / "preprocess").rglob("*.npz"))
    assert len(entries) == 1
    rgb2, lm2 = load_reference(portrait, None, ReenactOptions(size=256), 25.0)
    np.testing.assert_array_equal(lm1, lm2)
    np.testing.assert_array_equal(rgb1, rgb2)
    # keyed by content, not path: a renamed copy is a hit; another output size reuses the track
    copy = tmp_path / "renamed.jpg"
    shutil.copy(portrait, copy)
    _, lm3 = load_reference(copy, None, ReenactOptions(size=256), 25.0)
    _, lm4 = load_reference(portrait, None, ReenactOptions(size=512), 25.0)
    np.testing.assert_array_equal(lm1, lm3)
    np.testing.assert_allclose(lm4[:, :2], lm1[:, :2] * 2, rtol=1e-5, atol=1e-3)
    assert sorted((cache_dir / "preprocess").rglob("*.npz")) == entries
    # a damaged entry is detected (checksum), recomputed and gives the same landmarks
    entries[0].write_bytes(b"damaged")
    _, lm5 = load_reference(portrait, None, ReenactOptions(size=256), 25.0)
    np.testing.assert_array_equal(lm1, lm5)
