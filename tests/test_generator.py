"""EchoGenerator: shapes, adaLN-Zero init, presets, checkpoints (safetensors only), guidance."""
import json

import numpy as np
import pytest
import torch

from echo_cli.errors import ModelError
from echo_cli.generate.sampler import guided_velocity, sample
from echo_cli.model.checkpoint import load_checkpoint, load_generator, save_generator
from echo_cli.model.generator import (GENERATOR_PRESETS, EchoGenerator, count_parameters, make_config,
                                      synthetic_layout)


@pytest.fixture(scope="module")
def cfg():
    return make_config("micro", synthetic_layout(24), audio_input="mel")


def _live(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        enc = model.audio_enc
        if enc.prior_kind == "ridge":      # a frozen prior is fitted, not trained: give it values
            enc.set_ridge(*(torch.randn(b.shape, generator=g) * 0.1
                            for b in (enc.prior_proj, enc.prior_weight, enc.prior_bias)))
    return model


def test_forward_shapes_and_adaln_zero_init(cfg):
    m = EchoGenerator(cfg)
    x = torch.randn(3, 10, 24)
    v = m(x, torch.rand(3), torch.randn(3, 4, 24), torch.randn(3, 10, 80), torch.randn(3, 24))
    assert v.shape == (3, 10, 24)
    assert torch.count_nonzero(v) == 0          # adaLN-Zero: a fresh model predicts zero velocity
    v2, aux = m(x, torch.rand(3), None, torch.randn(3, 10, 80), torch.randn(3, 24), return_aux=True)
    assert v2.shape == (3, 10, 24) and aux["viseme_logits"].shape == (3, 10, cfg.n_visemes)


def test_default_preset_is_small_enough():
    m = EchoGenerator(make_config("tiny", synthetic_layout(64), audio_input="whisper"))
    # <= 10 MB checkpoint including the LCU: keep the generator well under half of it (float32)
    assert count_parameters(m) * 4 < 4_000_000
    assert set(GENERATOR_PRESETS) >= {"tiny", "small"}


def test_checkpoint_roundtrip(tmp_path, cfg):
    m = _live(EchoGenerator(cfg))
    m.motion_mean.fill_(0.3)
    save_generator(tmp_path / "ck", m, extra_config={"training": {"seed": 3}})
    assert (tmp_path / "ck.safetensors").is_file() and (tmp_path / "ck.json").is_file()
    meta = json.loads((tmp_path / "ck.json").read_text())
    assert meta["schema"] == 1 and meta["training"]["seed"] == 3
    m2, conf = load_generator(tmp_path / "ck.safetensors")
    assert m2.cfg == m.cfg
    args = (torch.randn(1, 8, 24), torch.rand(1), None, torch.randn(1, 8, 80), torch.randn(1, 24))
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(*args), m2(*args))
    # the header copy of the config lets a lone .safetensors load
    (tmp_path / "ck.json").unlink()
    _, conf2 = load_checkpoint(tmp_path / "ck")
    assert conf2["generator"] == conf["generator"]


def test_checkpoint_refuses_pickle(tmp_path, cfg):
    p = tmp_path / "model.pt"
    torch.save(EchoGenerator(cfg).state_dict(), p)
    with pytest.raises(ModelError, match="pickle"):
        load_generator(p)
    # a pickle renamed to .safetensors is refused too
    q = tmp_path / "sneaky.safetensors"
    q.write_bytes(p.read_bytes())
    with pytest.raises(ModelError, match="pickle"):
        load_generator(q)


def test_checkpoint_truncated_and_mismatched(tmp_path, cfg):
    m = EchoGenerator(cfg)
    st = save_generator(tmp_path / "ck", m)
    data = st.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.json").write_text((tmp_path / "ck.json").read_text())
    with pytest.raises(ModelError, match="truncated"):
        load_generator(tmp_path / "cut.safetensors")
    # config says a bigger model than the tensors hold
    meta = json.loads((tmp_path / "ck.json").read_text())
    meta["generator"]["dim"] = 64
    (tmp_path / "ck.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not match"):
        load_generator(st)
    meta["schema"] = 99
    (tmp_path / "ck.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="schema"):
        load_generator(st)
    with pytest.raises(ModelError, match="not found"):
        load_generator(tmp_path / "nothing.safetensors")


def test_guidance_scale_one_equals_plain_conditional(cfg):
    m = _live(EchoGenerator(cfg)).eval()
    B = 1
    prev, audio, ident = torch.randn(B, 4, 24), torch.randn(B, 12, 80), torch.randn(B, 24)
    user = torch.randn(B, 8, cfg.user_dim)
    x, t = torch.randn(B, 8, 24), torch.full((B,), 0.3)
    with torch.no_grad():
        full = m(x, t, prev, audio, ident, user)
        fn = guided_velocity(m, prev, audio, ident, user, None, cfg_audio=1.0, cfg_user=1.0)
        torch.testing.assert_close(fn(x, t), full)
        # the guided combination with s_a=2, s_u=0.5 is the documented linear mix of branches
        null = m(x, t, prev, audio, ident, user, drop_audio=torch.tensor([True]), drop_user=torch.tensor([True]))
        aud = m(x, t, prev, audio, ident, user, drop_user=torch.tensor([True]))
        fn2 = guided_velocity(m, prev, audio, ident, user, None, cfg_audio=2.0, cfg_user=0.5)
        torch.testing.assert_close(fn2(x, t), null + 2.0 * (aud - null) + 0.5 * (full - aud), rtol=1e-4, atol=1e-5)


def test_sampler_is_deterministic_and_heun_runs(cfg):
    m = _live(EchoGenerator(cfg)).eval()
    fn = guided_velocity(m, None, torch.randn(1, 8, 80), torch.randn(1, 24))
    noise = torch.randn(1, 8, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = sample(fn, noise, 4), sample(fn, noise.clone(), 4)
        h = sample(fn, noise, 3, method="heun")
    assert torch.equal(a, b) and torch.isfinite(h).all()


def test_mouth_prior_follows_audio_and_vanishes_when_audio_is_dropped(cfg):
    m = _live(EchoGenerator(cfg)).eval()
    assert cfg.mouth_prior and cfg.n_mouth == cfg.regions["mouth"][1] - cfg.regions["mouth"][0]
    x, t, ident = torch.randn(2, 10, 24), torch.rand(2), torch.randn(2, 24)
    a = torch.randn(2, 14, 80)
    _, aux = m(x, t, torch.randn(2, 4, 24), a, ident, return_aux=True)
    assert aux["mouth_prior"].shape == (2, 10, cfg.n_mouth)
    cond = m.condition(14, a, ident, drop_audio=torch.tensor([True, False]))
    assert torch.count_nonzero(cond["mouth_prior"][0]) == 0 and torch.count_nonzero(cond["mouth_prior"][1]) > 0
    # only the mouth token receives it
    base = m.condition(14, torch.zeros_like(a), ident)["tok_bias"]
    diff = (cond["tok_bias"][1] - base[1]).abs().sum(dim=(0, 2))               # per region
    assert [i for i in range(len(diff)) if diff[i] > 0] == [m.mouth_index]


def test_cross_attention_cache_gives_the_uncached_result(cfg):
    m = _live(EchoGenerator(cfg)).eval()
    x, t, prev = torch.randn(1, 10, 24), torch.rand(1), torch.randn(1, 4, 24)
    a, ident, usr = torch.randn(1, 14, 80), torch.randn(1, 24), torch.randn(1, 14, cfg.user_dim)
    with torch.enable_grad():                    # autograd on: the cache is bypassed
        ref = m(x, t, prev, a, ident, usr).detach()
    with torch.inference_mode():
        cond = m.condition(14, a, ident, usr)
        first = m.velocity(x, t, prev, cond)     # fills the caches
        again = m.velocity(x, t, prev, cond)     # served from them
        other = m.velocity(x, t, prev, m.condition(14, a * 2, ident, usr))   # new tensors: recomputed
    torch.testing.assert_close(first, ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(first, again)
    assert not torch.allclose(other, first)


def test_old_checkpoint_configs_build_the_old_architecture(cfg):
    from echo_cli.model.generator import GeneratorConfig

    d = cfg.to_dict()
    for k in ("mouth_prior", "audio_kernel", "audio_noise", "audio_frame_drop", "mouth_prior_kind",
              "prior_rank", "prior_context"):
        d.pop(k)
    old = EchoGenerator(GeneratorConfig.from_dict(d))
    assert old.prior_in is None and old.audio_enc.mouth_head is None and old.audio_enc.conv2.kernel_size == (3,)
    # the first mouth-prior checkpoints (no mouth_prior_kind in their JSON) get the learned head
    d["mouth_prior"] = True
    head = EchoGenerator(GeneratorConfig.from_dict(d))
    assert head.cfg.mouth_prior_kind == "head" and head.audio_enc.mouth_head is not None
    assert not hasattr(head.audio_enc, "prior_proj")


def test_ridge_prior_matches_its_numpy_fit_and_survives_a_checkpoint(cfg, tmp_path):
    from echo_cli.train import mouth_ridge

    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((120, 80)).astype(np.float32) for _ in range(3)]
    # mouth codes = a 3-frame smoothed linear read-out of the features (+ noise): learnable
    w_true = rng.standard_normal((80, cfg.n_mouth)) * 0.3
    targets = [np.stack([np.convolve(c, np.ones(3) / 3, mode="same") for c in (f @ w_true).T], 1)
               + 0.1 * rng.standard_normal((120, cfg.n_mouth)) for f in feats]
    m = EchoGenerator(make_config("micro", synthetic_layout(24), audio_input="mel", prior_rank=16, prior_context=2))
    assert m.audio_enc.mouth_head is None and m.audio_enc.prior_weight.shape == (cfg.n_mouth, 16, 5)
    rp = mouth_ridge.fit(feats, targets, ["a", "b", "c"], ["x", "y", "z"], rank=16, context=2,
                         lambdas=(1.0, 1e6))
    assert rp.lam == 1.0 and rp.cv[1.0] > rp.cv[1e6]          # CV prefers the penalty that fits
    assert set(rp.loso) == {"x", "y", "z"}
    # out-of-speaker predictions differ from the final (in-sample) fit's
    assert not np.allclose(rp.loso["x"], mouth_ridge.apply(rp, feats[0], 2))
    m.audio_enc.set_ridge(rp.proj, rp.weight, rp.bias)
    with torch.no_grad():
        got = m.audio_enc.ridge_mouth(torch.from_numpy(feats[0])[None])[0].numpy()
    np.testing.assert_allclose(got, mouth_ridge.apply(rp, feats[0], 2), rtol=1e-4, atol=1e-4)
    save_generator(tmp_path / "g", m)
    m2, _ = load_generator(tmp_path / "g")
    assert torch.equal(m2.audio_enc.prior_weight, m.audio_enc.prior_weight)


def test_mouth_prior_override_replaces_the_models_own(cfg):
    m = _live(EchoGenerator(cfg)).eval()
    a, ident = torch.randn(1, 14, 80), torch.randn(1, 24)
    given = torch.randn(1, 14, cfg.n_mouth)
    cond = m.condition(14, a, ident, mouth_prior=given)
    assert torch.equal(cond["mouth_prior"], given)
    assert not torch.equal(m.condition(14, a, ident)["mouth_prior"], given)


def test_prior_blend_one_lands_the_sampled_lips_on_the_prior_and_training_ignores_it():
    cfg1 = make_config("micro", synthetic_layout(24), audio_input="mel", prior_blend=1.0)
    m = _live(EchoGenerator(cfg1)).eval()
    ms = slice(*cfg1.regions["mouth"])
    audio, ident = torch.randn(1, 8, 80), torch.randn(1, 24)
    fn = guided_velocity(m, None, audio, ident, cfg_audio=1.0)
    noise = torch.randn(1, 8, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = sample(fn, noise, 4)
        prior = m.audio_enc.ridge_mouth(audio)
    torch.testing.assert_close(x[..., ms], prior, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(x[..., :ms.start], torch.zeros_like(x[..., :ms.start]))   # the rest: the flow
    # training mode: the plain flow velocity (the blend is inference-only)
    x_t, t = torch.randn(1, 8, 24), torch.full((1,), 0.3)
    with torch.no_grad():
        v_eval = m(x_t, t, None, audio, ident)
        m0 = EchoGenerator(make_config("micro", synthetic_layout(24), audio_input="mel", prior_blend=0.0))
        m0.load_state_dict(m.state_dict())
        v_plain = m0.eval()(x_t, t, None, audio, ident)
        torch.manual_seed(1)                     # same training-time audio augmentation draws
        v_train = m.train()(x_t, t, None, audio, ident)
        torch.manual_seed(1)
        v_train0 = m0.train()(x_t, t, None, audio, ident)
    assert not torch.allclose(v_eval[..., ms], v_plain[..., ms])
    torch.testing.assert_close(v_eval[..., ms.stop:], v_plain[..., ms.stop:])
    assert torch.equal(v_train, v_train0)


def test_generator_gates_audio_only_when_its_config_asks():
    import dataclasses

    import numpy as np
    import torch

    from echo_cli.model.generator import EchoGenerator, make_config, synthetic_layout

    cfg = make_config("micro", synthetic_layout(12), audio_input="mel")
    rows = np.ones((15, cfg.audio_dim), np.float32)
    energy = np.full(15, -100.0, np.float32)            # digital silence ...
    energy[[0, 14]] = -30.0                             # ... between two frames of sound
    assert EchoGenerator(cfg).gate_audio(rows, energy) == (rows, None)
    gen = EchoGenerator(dataclasses.replace(cfg, quiet_gate=True)).eval()
    out, quiet = gen.gate_audio(rows, energy)
    want = np.zeros(15, bool)
    want[3:8] = True                      # > QUIET_AFTER (2) frames after sound, > QUIET_BEFORE (6) before it
    np.testing.assert_array_equal(quiet, want)
    np.testing.assert_array_equal(out[want], np.broadcast_to(gen.audio_enc.feat_mean.numpy(), (5, cfg.audio_dim)))
    assert (out[~want] == 1).all()
    # the gated frame's mouth prior is the resting mouth (raw code 0), the others the regression's
    with torch.no_grad():
        for p in gen.parameters():
            p.normal_(0, 0.1)
        gen.motion_mean.normal_(0, 1)
        N = 15
        a = torch.from_numpy(out)[None]
        ident = torch.zeros(1, cfg.motion_dim)
        c0 = gen.condition(N, a, ident)
        c1 = gen.condition(N, a, ident, quiet=torch.from_numpy(quiet)[None])
    ms = slice(*cfg.regions["mouth"])
    rest = -gen.motion_mean[ms] / gen.motion_std[ms]
    torch.testing.assert_close(c1["mouth_prior"][0, 3:8], rest.expand(5, -1))
    torch.testing.assert_close(c1["mouth_prior"][0, ~torch.from_numpy(want)], c0["mouth_prior"][0, ~torch.from_numpy(want)])
