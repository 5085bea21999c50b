"""LCU invariants on real tensors: the scan equals its frame loop, chunked streaming equals
one pass, outputs are causal, ablation switches cut their branch, the model trains."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)   # the CI box has 2 shared cores; threads only add contention here

from echo_cli.lcu.model import LCU, LCUConfig, detach_state
from echo_cli.lcu.ssm import ScanConfig, SelectiveScanBlock, selective_scan, selective_scan_reference

CFG = LCUConfig(audio_dim=10, motion_dim=18, ctx_dim=32, dim=16, depth=2, d_state=4, chunk=8,
                window=5, n_past=2, heads=4)


def _inputs(B=2, T=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, CFG.audio_dim, generator=g), torch.randn(B, T, CFG.motion_dim, generator=g),
            torch.randn(B, T, 384, generator=g))


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    m = LCU(LCUConfig(**{**CFG.to_dict(), **kw}))
    # open the fusion gate and the scan outputs so every branch contributes
    with torch.no_grad():
        m.fusion.alpha.fill_(0.8)
        for blk in list(m.lpe.audio.scan.blocks) + list(m.lpe.motion.scan.blocks):
            torch.nn.init.normal_(blk.out_proj.weight, std=0.2)
    return m.eval()


def test_chunked_scan_matches_frame_loop():
    g = torch.Generator().manual_seed(1)
    B, T, H, P, N = 2, 29, 3, 4, 5
    u = torch.randn(B, T, H, P, generator=g)
    delta = torch.rand(B, T, H, generator=g)
    A = -torch.rand(H, generator=g) * 2
    Bm, Cm = torch.randn(B, T, N, generator=g), torch.randn(B, T, N, generator=g)
    h0 = torch.randn(B, H, P, N, generator=g)
    y1, h1 = selective_scan(u, delta, A, Bm, Cm, h0, chunk=7)
    y2, h2 = selective_scan_reference(u, delta, A, Bm, Cm, h0)
    assert torch.allclose(y1, y2, atol=1e-5) and torch.allclose(h1, h2, atol=1e-5)


def test_scan_block_state_carries_across_chunks():
    torch.manual_seed(0)
    blk = SelectiveScanBlock(ScanConfig(dim=8, d_state=4, headdim=4, chunk=4))
    torch.nn.init.normal_(blk.out_proj.weight)
    x = torch.randn(1, 50, 8)
    full, _ = blk(x)
    st, parts = None, []
    for a, b in ((0, 3), (3, 20), (20, 21), (21, 50)):
        y, st = blk(x[:, a:b], st)
        parts.append(y)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_lcu_streaming_equals_one_pass_and_shapes():
    m = _model()
    a, mo, s = _inputs()
    with torch.no_grad():
        full, _ = m(a, mo, s)
        st, parts = None, []
        for lo, hi in ((0, 11), (11, 12), (12, 30), (30, 37)):
            y, st = m(a[:, lo:hi], mo[:, lo:hi], s[:, lo:hi], st)
            parts.append(y)
    assert full.shape == (2, 37, CFG.ctx_dim)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-4)


def test_lcu_is_causal_and_long_range():
    m = _model()
    a, mo, s = _inputs(T=60)
    with torch.no_grad():
        y0, _ = m(a, mo, s)
        a2, mo2, s2 = a.clone(), mo.clone(), s.clone()
        a2[:, 40:] += 3.0; mo2[:, 40:] += 3.0; s2[:, 40:] = -s2[:, 40:]
        y1, _ = m(a2, mo2, s2)
        # future change leaves the past untouched
        assert torch.allclose(y0[:, :40], y1[:, :40], atol=1e-5)
        # a change at the very start still reaches the last frame (long-range state)
        a3, mo3 = a.clone(), mo.clone()
        a3[:, :3] += 3.0; mo3[:, :3] += 3.0
        y3, _ = m(a3, mo3, s)
    assert (y3[:, -1] - y0[:, -1]).abs().max() > 1e-6


@pytest.mark.parametrize("switch,changed", [("use_lpe", "motion"), ("use_hbcu", "behaviour")])
def test_ablation_switches_cut_their_branch(switch, changed):
    a, mo, s = _inputs()
    on, off = _model(), _model(**{switch: False})
    off.load_state_dict(on.state_dict())
    if changed == "motion":
        mo2, s2 = mo + 2.0, s
    else:
        mo2, s2 = mo, -s
    with torch.no_grad():
        d_on = (on(a, mo, s)[0] - on(a, mo2, s2)[0]).abs().max()
        d_off = (off(a, mo, s)[0] - off(a, mo2, s2)[0]).abs().max()
    assert d_on > 1e-3
    assert d_off < 1e-6


def test_lcu_learns_a_user_dependent_target():
    """A few Adam steps fit a target that needs the user's motion history (a delayed copy)."""
    torch.manual_seed(0)
    m = LCU(CFG).train()
    head = torch.nn.Linear(CFG.ctx_dim, 1)
    opt = torch.optim.Adam(list(m.parameters()) + list(head.parameters()), lr=3e-3)
    a, mo, s = _inputs(B=4, T=40, seed=3)
    target = torch.roll(mo[..., :1], 5, dims=1)          # user's first channel, 5 frames ago
    target[:, :5] = 0
    losses = []
    for _ in range(80):
        y, _ = m(a, mo, s)
        loss = ((head(y) - target) ** 2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_detach_state_and_train_mask():
    m = _model()
    a, mo, s = _inputs()
    _, st = m(a, mo, s)
    d = detach_state(st)
    assert not d["lpe"]["audio"][0]["h"].requires_grad
    mask = m.train_mask(2, 37, torch.Generator().manual_seed(0))
    assert mask.shape == (2, 37, 6) and 0 < mask.float().mean() < 0.6


@pytest.mark.parametrize("gate_init,learns", [(0.0, False), (0.5, True)])
def test_fusion_gate_init_decides_whether_hbcu_gets_a_gradient(gate_init, learns):
    """With the tanh gate shut (alpha = 0) no gradient reaches the behaviour branch (f_align,
    attention): in 250 stage-2 steps it never opened. gate_init opens it from the start."""
    torch.manual_seed(0)
    m = LCU(LCUConfig(**{**CFG.to_dict(), "gate_init": gate_init})).train()
    a, mo, s = _inputs()
    y, _ = m(a, mo, s)
    y.pow(2).mean().backward()
    g = m.fusion.align[0].weight.grad
    assert float(m.fusion.alpha) == pytest.approx(gate_init)
    assert (g is not None and g.abs().max() > 0) == learns
