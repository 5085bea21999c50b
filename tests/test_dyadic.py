"""Dyadic conversations from single-person clips: the listener rules (timing, mirroring,
nods, closed mouth), the event-follow measure, real-clip batching, and a stage-2 run
(LCU + generator jointly) that writes a loadable checkpoint with generator.* and lcu.*."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from echo_cli.train import dyadic as Y

FPS = Y.FPS


@pytest.fixture(scope="module")
def space():
    from echo_cli.motion.space import default_space
    return default_space()


def test_smile_direction_raises_the_smile_measure(space):
    d = Y.smile_direction(space)
    base = Y.smile_measure(space, np.zeros((1, space.dim)), space.template)[0]
    up = Y.smile_measure(space, (0.05 * d)[None], space.template)[0]
    assert up - base == pytest.approx(0.05, rel=0.25)
    assert np.all(d[space.regions["mouth"]] == 0) and np.all(d[space.regions["pose"]] == 0)


def test_pause_onsets():
    vad = np.zeros(200, bool)
    vad[10:40] = True          # 1.2 s of speech, then a pause: an onset at 40
    vad[47:52] = True          # a blip: too short to invite a nod at 52
    vad[100:130] = True        # speech, pause only 3 frames (< 0.25 s): no onset
    vad[133:190] = True        # speech then a pause at 190 that reaches the end
    assert Y.pause_onsets(vad, FPS, 0.8, 0.25) == [40, 190]


def test_listener_rules_time_align_to_the_user(space):
    sdir = Y.smile_direction(space)
    mouth = space.regions["mouth"]
    rng = np.random.default_rng(0)
    N, H = 150, 25
    av = np.zeros((N, space.dim), np.float32)
    av[:, mouth] = 1.0
    smile = np.zeros(N + H); smile[H + 50:] = 0.1          # the user starts smiling at frame 50
    vad = np.zeros(N + H, bool); vad[H + 60:H + 100] = True  # and talks, pausing at frame 100
    rules = Y.RuleConfig()
    for _ in range(20):
        out, info = Y.listener_targets(av, smile, vad, sdir, mouth, rng, rules)
        d = info["mirror_delay_frames"]
        assert 0.2 * FPS <= d <= 1.5 * FPS
        sm = Y.smile_measure(space, out, space.template)
        rise = int(np.argmax(sm > sm[0] + 0.04))
        assert rise == 50 + d                                 # mirrored after exactly the drawn delay
        assert np.allclose(out[:, mouth], rules.mouth_damp)   # the listener's mouth is damped
        (nod,) = info["nods"]
        assert 100 + 0.2 * FPS <= nod <= 100 + 0.6 * FPS
        assert out[nod + 6, 1] > 0.02 and abs(out[nod - 1, 1]) < 1e-9


def test_smile_keep_damps_the_listeners_own_smile_not_the_mirror(space):
    """rules.smile_keep shrinks the real listener's spontaneous smile (user-independent noise
    for the reaction) around its median; the mirrored smile is added in full afterwards."""
    sdir = Y.smile_direction(space)
    mouth, smile_r = space.regions["mouth"], space.regions["smile"]
    N, H = 100, 25
    av = np.zeros((N, space.dim), np.float32)
    av[:, smile_r] = 0.3 * np.sin(np.arange(N) / 5.0)[:, None]   # the listener's own smiles
    user = np.zeros(N + H); user[H + 40:] = 0.1
    vad = np.zeros(N + H, bool)
    full, i1 = Y.listener_targets(av, user, vad, sdir, mouth, np.random.default_rng(0), Y.RuleConfig(smile_keep=1.0),
                                  smile=smile_r)
    half, i2 = Y.listener_targets(av, user, vad, sdir, mouth, np.random.default_rng(0), Y.RuleConfig(smile_keep=0.5),
                                  smile=smile_r)
    assert i1["mirror_delay_frames"] == i2["mirror_delay_frames"]
    own = lambda x: x[:40, smile_r]                                 # before any mirrored smile  # noqa: E731
    assert np.std(own(half)) == pytest.approx(0.5 * np.std(own(full)), rel=1e-4)
    gain = Y.RuleConfig().mirror_gain * 0.1
    late = slice(40 + i1["mirror_delay_frames"], N)
    # the mirrored part is the same in both (the damped own part aside)
    d_full = full[late, smile_r] - av[late, smile_r]
    med = np.median(av[:, smile_r], axis=0)
    d_half = half[late, smile_r] - (med + 0.5 * (av[late, smile_r] - med))
    assert np.allclose(d_full, d_half, atol=1e-5) and np.allclose(d_full, gain * sdir[smile_r], atol=1e-5)


def _speech_clip(path, space):
    """A real speech clip as a DyadClip (log-mel audio input; no Whisper needed)."""
    from echo_cli.features.audio import audio_features, read_audio
    from echo_cli.lcu.model import prepare_user
    from echo_cli.preprocess.face import track_face
    from echo_cli.train.data import identity_vector

    tr = track_face(path, fps=FPS)
    af = audio_features(read_audio(path), FPS, whisper=False, n_frames=tr.n_frames)
    u = prepare_user(tr, af, space, FPS)
    return Y.DyadClip(path.stem, "speech", u["motion"], u["neutral"], identity_vector(space, u["neutral"]),
                      af.mel.astype(np.float32), u["audio"], af.vad.astype(bool), u["signals"].smile,
                      u["behaviour"], [w.text for w in u["windows"]])


@pytest.fixture(scope="module")
def real_clips(shared_data, space, tmp_path_factory):
    import os
    old = os.environ.get("ECHO_CACHE_DIR")
    os.environ["ECHO_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    try:
        speech = [_speech_clip(shared_data / "clips" / "d11.mp4", space)]
        silent = [Y.prepare_silent(shared_data / "clips" / f"{n}.mp4", space, "mel") for n in ("s29", "s32")]
    finally:
        if old is None:
            os.environ.pop("ECHO_CACHE_DIR", None)
        else:
            os.environ["ECHO_CACHE_DIR"] = old
    return speech, silent


def test_batcher_on_real_clips(real_clips, space):
    speech, silent = real_clips
    stats = {"motion_mean": np.zeros(space.dim, np.float32), "motion_std": np.ones(space.dim, np.float32)}
    b = Y.DyadicBatcher(speech, silent, t_prev=4, window=20, history=10, stats=stats,
                        sdir=Y.smile_direction(space), mouth=space.regions["mouth"], p_listen=0.5)
    out = b.sample(np.random.default_rng(0), 16)
    assert out["motion"].shape == (16, 24, space.dim) and out["u_motion"].shape == (16, 34, space.dim)
    assert out["u_audio"].shape == (16, 34, 82) and out["u_beh"].shape == (16, 34, 384)
    assert out["audio"].shape == (16, 24, 80) and len(out["emotion"]) == 16
    assert 0 < out["listening"].mean() < 1
    # listening windows: avatar audio is silence; speaking windows: real speech
    lis = out["listening"]
    assert out["audio"][lis].std(axis=1).max() < 1e-5 < out["audio"][~lis].std(axis=1).mean()


def test_conversation_gate_alternates_speech_and_silence():
    g = Y.conversation_gate(1000, np.random.default_rng(0))
    assert not g[:int(2 * FPS)].any()                    # speech first, at least 2 s
    runs = np.flatnonzero(np.diff(np.r_[0, g.astype(int), 0]))
    lens = (runs[1::2] - runs[::2])[:-1]                 # complete silent runs
    assert len(lens) >= 3 and lens.min() >= 3 * FPS - 1 and lens.max() <= 6 * FPS + 1


def test_silence_in_context_is_not_isolated_silence(shared_data, cache_dir):
    """Whisper features of digital silence inside a speech track (what a render feeds the
    generator while the user talks) differ from isolated silence — the reason stage 2's
    listening windows draw from dyadic.silence_bank."""
    wave = Y.clip_wave("d11", shared_data)
    assert wave is not None and Y.clip_wave("no_such_clip", shared_data) is None
    n = 250
    gate = np.zeros(n, bool)
    gate[100:200] = True
    f = Y.gated_features(wave, gate, "whisper")
    assert f.shape == (n, 512)
    iso, _, _ = Y.silence_features(10, "whisper")
    rel = np.linalg.norm(f[110:190] - iso[0], axis=-1).mean() / np.linalg.norm(iso[0])
    assert rel > 0.3
    # the log-mel of the gated frames is the digital-silence floor, the speech frames are not
    m = Y.gated_features(wave, gate, "mel")
    assert m[120:180].std(axis=0).max() < 1e-4 < m[:90].std(axis=0).mean()


def test_batcher_draws_listening_audio_from_the_silence_bank(real_clips, space):
    speech, silent = real_clips
    stats = {"motion_mean": np.zeros(space.dim, np.float32), "motion_std": np.ones(space.dim, np.float32)}
    bank = [np.full((40, 80), 7.0, np.float32), np.full((10, 80), 9.0, np.float32)]   # second too short
    b = Y.DyadicBatcher(speech, silent, t_prev=4, window=20, history=10, stats=stats,
                        sdir=Y.smile_direction(space), mouth=space.regions["mouth"], p_listen=0.5,
                        silence=bank, p_context_silence=1.0)
    out = b.sample(np.random.default_rng(0), 16)
    lis = out["listening"]
    assert lis.any() and np.all(out["audio"][lis] == 7.0)
    assert not np.any(out["audio"][~lis] == 7.0)


def test_stage2_trains_and_writes_a_joint_checkpoint(real_clips, space, tmp_path):
    from echo_cli.model.checkpoint import load_checkpoint, save_generator
    from echo_cli.model.generator import EchoGenerator, layout_from_motion_space, make_config
    from echo_cli.train import common, stage2

    speech, silent = real_clips
    torch.manual_seed(0)
    g = EchoGenerator(make_config("micro", layout_from_motion_space(space), audio_input="mel"))
    save_generator(tmp_path / "init", g)
    cfg = stage2.Stage2Config(window=16, t_prev=4, history=8, batch=4, lcu={"dim": 16, "depth": 1},
                              react_weight=2.0)
    loop = common.LoopConfig(steps=3, lr=1e-3, warmup=1, log_every=1, ckpt_every=3)
    s = stage2.run(out=tmp_path / "run", init_checkpoint=tmp_path / "init.safetensors", config=cfg,
                   loop=loop, clips=(speech, silent), space=space)
    tensors, conf = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert any(k.startswith("lcu.") for k in tensors) and any(k.startswith("generator.") for k in tensors)
    assert conf["lcu"]["ctx_dim"] == conf["generator"]["user_dim"]
    gen, lcu, _ = stage2.load_stage2(tmp_path / "run" / "model.safetensors")
    # the LCU was trained: its weights moved away from the fresh ones
    moved = any(not torch.equal(v, tensors[f"lcu.{k}"]) for k, v in type(lcu)(lcu.cfg).state_dict().items()
                if v.dtype.is_floating_point)
    assert moved and s["final"]["step"] == 3
    res = Y.evaluate(gen, lcu, space, clips=(speech, silent), n=60, seeds=(0,))
    for k in ("mouth_std_ratio", "reaction_smile_win_rate", "emotion_happy_gt_sad_rate", "follow_rate",
              "follow_chance", "follow_p", "sid"):
        assert k in res
    p = res["follow_p"]
    assert p != p or 0.0 < p <= 1.0          # NaN when 2.4 s hold no complete user event window
    # packaged as the recipe ships it (and as ablation variants must be, to compare alike)
    import shutil

    from echo_cli.model.checkpoint import load_generator
    from echo_cli.train import recipe

    pkg = tmp_path / "pkg"
    for stage, src in (("stage1", tmp_path / "init.safetensors"), ("stage2", tmp_path / "run" / "model.safetensors")):
        (pkg / stage).mkdir(parents=True)
        shutil.copy(src, pkg / stage / "model.safetensors")
        shutil.copy(src.with_suffix(".json"), pkg / stage / "model.json")
    with pytest.raises(Exception, match="calibrated"):      # no ridge fitted by this stage 1
        recipe.package(pkg, (("prior_gain", "calibrated"),), pkg / "model.safetensors", {})
    g2, _, _, conf2, _ = recipe.package(pkg, (("quiet_gate", True), ("prior_gain", 1.5)), pkg / "model.safetensors",
                                        {"variant": "test"})
    loaded, _ = load_generator(pkg / "model.safetensors")
    assert loaded.cfg.quiet_gate and loaded.cfg.prior_gain == 1.5 == g2.cfg.prior_gain
    assert conf2["training"]["inference_resolved"] == {"quiet_gate": True, "prior_gain": 1.5}
    assert any(k.startswith("motion_space.") for k in load_checkpoint(pkg / "model.safetensors")[0])


def test_model_card_of_the_shipped_checkpoint_names_its_prior_and_lip_sync(tmp_path):
    """The recipe's card is written from the checkpoint's own config: the ridge prior's
    penalty, its CV and the clips stage 1 re-aligned, and the held-out lip-sync table."""
    import json

    from echo_cli.train import recipe

    ck = Path(recipe.__file__).resolve().parents[1] / "checkpoints"
    cfg = json.loads((ck / "default.json").read_text())
    card = tmp_path / "MODEL_CARD.md"
    recipe.write_model_card(card, cfg, (ck / "default.safetensors").stat().st_size)
    text = card.read_text()
    rp = cfg["training"]["ridge_prior"]
    assert f"lambda {rp['lambda']:g}" in text
    assert all(f'"{name}": {lag}' in text for name, lag in rp["realigned"].items())
    total = cfg["metrics"]["lipsync_held_out"]["ALL (frame-weighted)"]
    assert f"| ALL (frame-weighted) | {total['frames']} |" in text and str(total["corr"]) in text
