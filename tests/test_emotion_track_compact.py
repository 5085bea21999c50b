"""The c_emo track is stored compactly (lcu.model.PiecewiseRows: table + row ids, 4 bytes
per frame instead of 1536) and gives exactly what the previous expanded (n, 384) array gave:
row for row, and through the generate engine (chunk means)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echo_cli.config import RenderSettings
from echo_cli.generate.engine import generate_all
from echo_cli.lcu.model import PiecewiseRows, emotion_track
from echo_cli.model.generator import EchoGenerator, make_config, synthetic_layout
from echo_cli.schema import Turn

TURNS = [Turn("user", 0.0, 2.0, "My cat died this morning."),
         Turn("avatar", 2.0, 4.0, "I'm so sorry, that is heartbreaking."),
         Turn("user", 4.0, 6.0, "Thanks. But guess what, I got the job!"),
         Turn("avatar", 6.0, 8.0, "That's wonderful news!", emotion="happy")]


def _expanded_reference(turns, n_frames, fps):
    """The whole-array emotion_track this module used before (kept as the oracle)."""
    from echo_cli.features.text import embed_texts
    from echo_cli.lcu.lau import infer_turn_emotions

    emos = infer_turn_emotions(turns, None)
    vecs = embed_texts([e.text for e in emos])
    starts = [int(round(turns[e.turn_index].start * fps)) for e in emos]
    order = np.argsort(starts, kind="stable")
    out = np.repeat(vecs[order[0]][None], n_frames, 0)
    for k in order:
        out[max(0, starts[k]):] = vecs[k]
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def tracks():
    emo, _ = emotion_track(TURNS, 250, 25.0)
    return emo, _expanded_reference(TURNS, 250, 25.0)


def test_compact_track_equals_expanded_array(tracks):
    emo, ref = tracks
    assert isinstance(emo, PiecewiseRows) and emo.shape == ref.shape == (250, 384) and len(emo) == 250
    np.testing.assert_array_equal(np.asarray(emo), ref)
    for key in (0, 149, 150, -1, slice(0, 64), slice(140, 170), slice(240, 300)):
        np.testing.assert_array_equal(emo[key], ref[key])
    assert emo.ids.nbytes + emo.table.nbytes < ref.nbytes / 50


def test_engine_output_identical_with_compact_track(tracks):
    emo, ref = tracks
    torch.manual_seed(0)
    m = EchoGenerator(make_config("micro", synthetic_layout(24), audio_input="mel"))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    m.eval()
    audio = np.random.default_rng(0).standard_normal((250, 80)).astype(np.float32)
    s = RenderSettings(chunk_frames=64, t_prev=8, overlap=4, steps=2)
    a = generate_all(m, dict(audio=audio, identity=np.zeros(24), emotion=ref), s, seed=3)
    b = generate_all(m, dict(audio=audio, identity=np.zeros(24), emotion=emo), s, seed=3)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_frames", [100, 60, 140])        # windows end before, after, at the track's end
def test_behaviour_track_equals_hbcu_embeddings(n_frames):
    from echo_cli.lcu import hbcu
    from echo_cli.lcu.model import behaviour_track

    texts = ["The user is silent and still.", "The user nods while smiling.", "The user speaks and looks away."]
    wins = [hbcu.BehaviourWindow(t0=k, t1=k + 1, start=25 * k, stop=25 * (k + 1), text=texts[k % 3], source="builtin")
            for k in range(4)]
    ref = hbcu.behaviour_embeddings(wins, n_frames)
    got = behaviour_track(wins, n_frames)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.asarray(got), ref)
    np.testing.assert_array_equal(got[10:90], ref[10:90])
    np.testing.assert_array_equal(np.asarray(behaviour_track([], 30)), hbcu.behaviour_embeddings([], 30))
