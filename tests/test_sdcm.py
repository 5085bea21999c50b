"""SDCM decoupling: the lips never depend on the user context (exactly), the rest of the face may."""
import pytest
import torch

from echo_cli.model.generator import EchoGenerator, make_config, synthetic_layout, token_masks
from echo_cli.model.sdcm import SDCM


def _randomize(model, std=0.2, seed=0):
    # adaLN-Zero starts every block as the identity (zero gradients everywhere); perturb all
    # weights so the test exercises a model whose every path is live.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def _inputs(cfg, B=2, T=12, Tp=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(x_t=r(B, T, cfg.motion_dim), t=torch.rand(B, generator=g), prev=r(B, Tp, cfg.motion_dim),
                audio=r(B, T, cfg.audio_dim), identity=r(B, cfg.motion_dim), emotion=r(B, cfg.emotion_dim)), \
        r(B, T, cfg.user_dim).requires_grad_(True)


@pytest.fixture(scope="module")
def model():
    cfg = make_config("micro", synthetic_layout(24), depth=3, audio_input="mel")
    return _randomize(EchoGenerator(cfg))


def test_lip_outputs_have_zero_gradient_wrt_user_context(model):
    cfg = model.cfg
    inp, user = _inputs(cfg)
    v = model(**inp, user_ctx=user)
    mouth = slice(*cfg.regions["mouth"])
    (g_mouth,) = torch.autograd.grad(v[..., mouth].pow(2).sum(), user, retain_graph=True)
    assert torch.count_nonzero(g_mouth) == 0                     # exactly zero, every element
    (g_face,) = torch.autograd.grad(v[..., : mouth.start].pow(2).sum(), user)
    assert g_face.abs().max() > 1e-4                             # the user does reach the face


def test_lip_outputs_ignore_user_across_blocks_including_prev_frames(model):
    # user context given for T_prev + T frames: still no path into the mouth tokens
    cfg = model.cfg
    inp, _ = _inputs(cfg, Tp=4, T=12)
    user = torch.randn(2, 16, cfg.user_dim, requires_grad=True)
    v = model(**inp, user_ctx=user)
    (g,) = torch.autograd.grad(v[..., slice(*cfg.regions["mouth"])].sum(), user)
    assert torch.count_nonzero(g) == 0


def test_entangled_fusion_leaks_user_into_lips():
    # the ablation variant must fail the property: proves the test above can fail
    cfg = make_config("micro", synthetic_layout(24), depth=2, audio_input="mel", fusion="entangled")
    model = _randomize(EchoGenerator(cfg))
    inp, user = _inputs(cfg)
    v = model(**inp, user_ctx=user)
    (g,) = torch.autograd.grad(v[..., slice(*cfg.regions["mouth"])].sum(), user)
    assert g.abs().max() > 1e-4


def test_token_masks_follow_motion_space_masks():
    cfg = make_config("micro", synthetic_layout(24))
    m_face, m_lip = token_masks(cfg)
    names = list(cfg.regions)
    i = names.index("mouth")
    assert m_face[i] == 0 and m_lip[i] == 1
    assert all(m_face[j] == 1 and m_lip[j] == 0 for j in range(len(names)) if j != i)


def test_sdcm_module_formula():
    # the module alone: h + M_face (g h_avt + (1-g) h_usr) + M_lip h_avt, token by token
    torch.manual_seed(0)
    m_face, m_lip = torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 1.0, 0.0])
    sd = _randomize(SDCM(16, 2, m_face, m_lip, audio_window=1))
    h = torch.randn(1, 5, 3, 16)
    a = torch.randn(1, 5, 16)
    u1, u2 = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    y1, y2 = sd(h, u1, a), sd(h, u2, a)
    assert torch.equal(y1[:, :, 1], y2[:, :, 1])             # lip token: user-free
    assert not torch.allclose(y1[:, :, 0], y2[:, :, 0])      # face token: user-dependent
    # the half-weighted token moves half as far as the full one would under the same mix
    x = sd.norm(h)
    hu = sd.attn_usr(x.reshape(1, 15, 16), u1).view(1, 5, 3, 16)
    ha = sd.attn_avt(x, a)
    gate = torch.sigmoid(sd.proj(torch.cat([sd._conv_time(sd.conv_usr, hu), sd._conv_time(sd.conv_avt, ha)], -1)))
    expect = h + m_face.view(1, 1, 3, 1) * (gate * ha + (1 - gate) * hu) + m_lip.view(1, 1, 3, 1) * ha
    torch.testing.assert_close(y1, expect)
