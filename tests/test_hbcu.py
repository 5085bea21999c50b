"""HBCU: behaviour measured from real face tracks and audio, written as text, embedded with
MiniLM; the describer is pluggable and the endpoint one is used only when configured."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from echo_cli.lcu import hbcu

FPS = 25.0


@pytest.fixture(scope="module")
def space():
    from echo_cli.motion.space import default_space
    return default_space()


def _sig(space, motion, vad=None):
    return hbcu.signals_from_motion(motion, space, space.template, FPS, vad=vad)


def _flags(space, motion, vad=None, **kw):
    return [c.flags for c in hbcu.window_cues(_sig(space, motion, vad), hbcu.HBCUConfig(**kw))]


def test_measured_behaviours_in_motion_space(space):
    """Each behaviour, put into one second of an otherwise still face, is found in that second only."""
    from echo_cli.train.dyadic import smile_direction

    T = 5 * 25
    t = np.arange(25) / FPS
    base = np.zeros((T, space.dim), np.float32)
    cases = {
        "smiling": lambda m: m.__setitem__(slice(25, 50), m[25:50] + 0.10 * smile_direction(space)),
        "nodding": lambda m: m.__setitem__((slice(25, 50), 1), 0.06 * np.sin(2 * np.pi * 2 * t)),
        "shaking head": lambda m: m.__setitem__((slice(25, 50), 0), 0.10 * np.sin(2 * np.pi * 2 * t)),
        "looking away": lambda m: m.__setitem__((slice(25, 50), 0), 0.6),
    }
    for name, put in cases.items():
        m = base.copy()
        put(m)
        fl = _flags(space, m)
        assert [f[name] for f in fl] == [False, True, False, False, False], (name, fl)
    # a slow head turn is not a shake
    m = base.copy()
    m[:, 0] = np.linspace(0, 0.3, T)
    assert not any(f["shaking head"] for f in _flags(space, m))
    # speech from the VAD
    vad = np.zeros(T, bool); vad[50:100] = True
    fl = _flags(space, base, vad)
    assert [f["speaking"] for f in fl] == [False, False, True, True, False]
    assert all(f["silent"] != f["speaking"] for f in fl)


def test_sentences_and_embeddings(space):
    from echo_cli.train.dyadic import smile_direction

    m = np.zeros((50, space.dim), np.float32)
    m[25:] += 0.1 * smile_direction(space)
    wins = hbcu.describe_behaviour(_sig(space, m))
    assert wins[0].text == "The user is silent, with a neutral and still face."
    assert wins[1].text == "The user is silent, smiling."
    emb = hbcu.behaviour_embeddings(wins, 60)
    assert emb.shape == (60, 384)
    assert np.allclose(emb[0], emb[24]) and not np.allclose(emb[0], emb[25])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert not np.allclose(emb[55], emb[49])          # past the last window: "no user"
    s = hbcu.summarize(wins)
    assert s["smiling"] == 0.5 and s["silent"] == 1.0


@pytest.fixture(scope="module")
def real_tracks(shared_data, space):
    from echo_cli.features.audio import audio_features, read_audio
    from echo_cli.preprocess.face import track_face

    out = {}
    for name in ("d19", "d11"):
        p = shared_data / "clips" / f"{name}.mp4"
        tr = track_face(p, fps=FPS)
        wave = read_audio(p)
        af = audio_features(wave, FPS, whisper=False, n_frames=tr.n_frames) if wave is not None and wave.size else None
        out[name] = (tr, af)
    return out


def test_real_clips_silent_smiler_and_speaker(real_tracks, space):
    """d19 (silent, expressive) is silent throughout and smiles at times; d11 (own speech)
    is mostly speaking: measured by MediaPipe landmarks and the VAD, not asserted by hand."""
    from echo_cli.lcu.model import prepare_user

    tr, af = real_tracks["d19"]
    u = prepare_user(tr, af, space, FPS)
    s = hbcu.summarize(u["windows"])
    assert s["silent"] == 1.0
    assert s["smiling"] > 0
    assert u["behaviour"].shape == (tr.n_frames, 384) and u["audio"].shape == (tr.n_frames, 82)
    tr2, af2 = real_tracks["d11"]
    s2 = hbcu.summarize(prepare_user(tr2, af2, space, FPS)["windows"])
    assert s2["speaking"] >= 0.5


class _Handler(BaseHTTPRequestHandler):
    seen: list = []
    n: int = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append(body)
        texts = [f"The user is doing thing {i}." for i in range(_Handler.n)]
        data = json.dumps({"choices": [{"message": {"content": json.dumps(texts)}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_pluggable_and_endpoint_describer(space):
    m = np.zeros((75, space.dim), np.float32)
    sig = _sig(space, m)
    assert hbcu.HBCUConfig().endpoint is None
    assert isinstance(hbcu.make_describer(), hbcu.BuiltinDescriber)

    class Mine:
        name = "mine"

        def describe(self, cues, media=None):
            return [f"window {c.start}" for c in cues]

    assert [w.text for w in hbcu.describe_behaviour(sig, describer=Mine())] == ["window 0", "window 25", "window 50"]

    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    _Handler.n = 3
    try:
        cfg = hbcu.HBCUConfig(endpoint=f"http://127.0.0.1:{srv.server_port}/v1", timeout_s=5)
        wins = hbcu.describe_behaviour(sig, cfg, media="/nonexistent.mp4")
        _Handler.n = 2                                   # wrong length -> fallback
        wins2 = hbcu.describe_behaviour(sig, cfg)
    finally:
        srv.shutdown(); srv.server_close()
    assert [w.source for w in wins] == ["endpoint"] * 3 and wins[2].text == "The user is doing thing 2."
    # only measured cues were sent (no media unless send_media=True)
    content = _Handler.seen[0]["messages"][1]["content"]
    assert all(part["type"] == "text" for part in content)
    assert [w.source for w in wins2] == ["builtin"] * 3
