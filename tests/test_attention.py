"""Attention backends agree: SDPA vs plain math on CPU; xformers vs SDPA on CUDA (skips otherwise)."""
import numpy as np
import pytest
import torch

from echo_cli.errors import DependencyError, UsageError
from echo_cli.model import attention as A


def _qkv(B=2, H=4, N=37, M=29, Dh=16, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    mk = lambda n: torch.randn(B, H, n, Dh, generator=g).to(device, dtype)  # noqa: E731
    return mk(N), mk(M), mk(M)


def test_sdpa_matches_reference_with_and_without_mask():
    q, k, v = _qkv()
    torch.testing.assert_close(A.attention(q, k, v, backend="sdpa"), A.reference_attention(q, k, v),
                               rtol=1e-4, atol=1e-5)
    mask = torch.rand(37, 29, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[:, 0] = True                                            # no fully masked row
    torch.testing.assert_close(A.attention(q, k, v, mask, backend="sdpa"),
                               A.reference_attention(q, k, v, mask), rtol=1e-4, atol=1e-5)


def test_local_cross_attention_equals_dense_banded_attention():
    torch.manual_seed(0)
    B, N, R, C, H, w = 2, 11, 3, 16, 2, 2
    la = A.LocalCrossAttention(C, H, w)
    x, ctx = torch.randn(B, N, R, C), torch.randn(B, N, C)
    dense = A.Attention(C, H)
    dense.load_state_dict(la.state_dict())
    fr = torch.arange(N)
    band = ((fr[:, None] - fr[None, :]).abs() <= w).repeat_interleave(R, dim=0)   # (N*R, N)
    ref = dense(x.reshape(B, N * R, C), ctx, mask=band).view(B, N, R, C)
    torch.testing.assert_close(la(x, ctx), ref, rtol=1e-4, atol=1e-5)


def test_backend_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert A.resolve_backend(cpu, "auto") == "sdpa"
    assert A.resolve_backend(cpu, "sdpa") == "sdpa"
    with pytest.raises(DependencyError):
        A.resolve_backend(cpu, "xformers")
    with pytest.raises(UsageError):
        A.set_backend("flash9")


def test_device_resolution():
    assert A.resolve_device("cpu").type == "cpu"
    assert A.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DependencyError):
            A.resolve_device("cuda")
    with pytest.raises(UsageError):
        A.resolve_device("tpu")


def _need_xformers_kernels(dtype):
    problem = A.xformers_problem(dtype)
    if problem:
        pytest.skip(problem)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="xformers vs SDPA needs a CUDA GPU (xformers has no CPU kernels)")
@pytest.mark.skipif(not A.xformers_available(), reason="xformers is not installed")
@pytest.mark.parametrize("masked", [False, True])
def test_xformers_matches_sdpa_on_cuda(masked):
    _need_xformers_kernels(torch.float16)
    q, k, v = _qkv(device="cuda", dtype=torch.float16)
    mask = None
    if masked:
        mask = (torch.rand(37, 29, generator=torch.Generator().manual_seed(2)) > 0.3).cuda()
        mask[:, 0] = True
    x = A.attention(q, k, v, mask, backend="xformers")
    s = A.attention(q, k, v, mask, backend="sdpa")
    torch.testing.assert_close(x.float(), s.float(), rtol=2e-3, atol=2e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(not A.xformers_available(), reason="xformers is not installed")
def test_generator_same_output_with_either_backend_on_cuda():
    _need_xformers_kernels(torch.float32)
    from echo_cli.model.generator import EchoGenerator, make_config, synthetic_layout
    cfg = make_config("micro", synthetic_layout(24), audio_input="mel")
    m = EchoGenerator(cfg).cuda().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.1)
        args = (torch.randn(1, 16, 24).cuda(), torch.rand(1).cuda(), torch.randn(1, 4, 24).cuda(),
                torch.randn(1, 16, 80).cuda(), torch.randn(1, 24).cuda())
        try:
            A.set_backend("xformers")
            vx = m(*args)
            A.set_backend("sdpa")
            vs = m(*args)
        finally:
            A.set_backend("auto")
    torch.testing.assert_close(vx, vs, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["sdpa", "auto"])
def test_default_checkpoint_makes_the_same_motion_on_cuda_as_on_cpu(backend):
    """What `render --device cuda` relies on: the shipped checkpoint's chunked generation (the
    engine, guidance, stitching) on the GPU gives the CPU's motion within tolerance; "auto" is
    xformers where it is installed. The sampling noise comes from a CPU generator, so both
    devices start from the same noise."""
    from echo_cli.bench.generate import _inputs, _model
    from echo_cli.config import resolve_settings
    from echo_cli.generate.engine import generate_all

    model, _ = _model(None)
    settings = resolve_settings("default")
    inp = _inputs(model, 200, user=True)
    inp["quiet"] = np.arange(200) >= 120            # the quiet gate's resting-mouth path too
    cpu = generate_all(model, inp, settings, seed=3)
    try:
        A.set_backend(backend)
        gpu = generate_all(model.cuda(), inp, settings, seed=3)
    finally:
        A.set_backend("auto")
        model.cpu()
    diff = float(np.abs(gpu - cpu).max())
    print(f"backend {backend} -> {A.resolve_backend(torch.device('cuda'), backend)}: "
          f"max |cuda - cpu| = {diff:.2e} (motion std {cpu.std():.3f})")
    assert gpu.shape == cpu.shape and diff <= 2e-2 * max(float(cpu.std()), 1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_uses_xformers_only_where_its_kernels_run():
    """auto never picks an xformers that imports but cannot run (a build for another torch);
    asking for it explicitly is a DependencyError that names the problem."""
    cuda = torch.device("cuda")
    problem = A.xformers_problem(torch.float32)
    assert A.resolve_backend(cuda, "auto") == ("sdpa" if problem else "xformers")
    if problem:
        with pytest.raises(DependencyError, match="cannot run here"):
            A.resolve_backend(cuda, "xformers")
