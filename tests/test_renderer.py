"""MeshWarpRenderer on real references: identity, re-detected motion, mouth, paste-back, odd images."""
from __future__ import annotations

import numpy as np
import pytest

from echo_cli.errors import InputError
from echo_cli.motion import measures, regions as R
from echo_cli.render.base import load_reference_image, to_rgb8
from echo_cli.render.paste import feather_mask, head_box
from echo_cli.render.warp import MeshWarpRenderer, _affines


@pytest.fixture(scope="module")
def d12(shared_data):
    """First 40 frames of a real speech clip and their MediaPipe track."""
    from echo_cli.media.video_io import iter_frames
    from echo_cli.preprocess.face import track_face

    frames = np.stack(list(iter_frames(shared_data / "clips" / "d12.mp4", fps=25, max_frames=40)))
    return frames, track_face(frames, fps=25.0)


@pytest.fixture(scope="module")
def renderer(d12):
    frames, tr = d12
    r = MeshWarpRenderer()
    r.prepare(frames[0], tr.landmarks[0])
    return r


def test_affines_map_vertices_exactly():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 100, (50, 3, 2)); q = rng.uniform(0, 100, (50, 3, 2))
    a = _affines(t, q).reshape(50, 2, 3)
    hom = np.concatenate([t, np.ones((50, 3, 1))], 2)
    np.testing.assert_allclose(np.einsum("ncj,nkj->nkc", a, hom), q, atol=1e-6)


def test_identity_target_returns_the_reference(d12, renderer):
    frames, tr = d12
    out = renderer.render(tr.landmarks[0])
    assert out.shape == frames[0].shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frames[0]).mean() < 1.0


def test_rendered_motion_is_redetected(d12, renderer):
    """Render the clip's own landmarks; MediaPipe finds them again in the rendered frames."""
    from echo_cli.preprocess.face import track_face

    frames, tr = d12
    out = np.stack(list(renderer.render_iter(tr.landmarks)))
    assert out.shape == frames.shape
    got = track_face(out, fps=25.0)
    err = measures.landmark_error(got.landmarks, tr.landmarks)
    assert err.mean() < 0.03
    r = np.corrcoef(measures.mouth_opening(got.landmarks), measures.mouth_opening(tr.landmarks))[0, 1]
    assert r > 0.8
    # the background far from the face does not move
    assert np.abs(out[:, :20, :20].astype(int) - frames[0, :20, :20]).max() <= 2


def test_open_mouth_gets_an_interior(d12, renderer):
    """A closed reference mouth, an opened target: the inner-lip polygon is dark with a teeth band."""
    import cv2

    frames, tr = d12
    assert renderer.synth_mouth            # d12 starts with the mouth closed
    lm = tr.landmarks[0].copy()
    iod = measures.inter_ocular(lm)[0]
    lower = list(set(R.LIPS_INNER_LOWER) - set(R.LIPS_INNER_UPPER) | {17, 84, 314, 181, 405, 91, 321})
    lm[lower, 1] += 0.18 * iod            # drop the lower lip
    assert measures.mouth_opening(lm)[0] > 0.12
    out = renderer.render(lm)
    mask = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(lm[list(R.LIPS_INNER), :2]).astype(np.int32)], 1)
    inside = out[mask.astype(bool)].astype(float)
    lum = inside.mean(1)
    skin = out[np.round(lm[[50, 280], 1]).astype(int), np.round(lm[[50, 280], 0]).astype(int)].mean()
    assert np.percentile(lum, 20) < 0.5 * skin             # a dark cavity ...
    assert np.percentile(lum, 95) > 2.0 * np.percentile(lum, 20)   # ... and a bright teeth band
    ref_inside = renderer.reference[mask.astype(bool)].astype(float).mean(1)
    assert np.abs(lum - ref_inside).mean() > 20            # not the stretched closed lips


def test_small_face_crop_and_paste_back(shared_data):
    """full3.png: small face in a full-body image; only the head box changes."""
    from echo_cli.preprocess.face import track_face

    img = load_reference_image(shared_data / "portraits" / "full3.png")
    lm = track_face(img).landmarks[0]
    r = MeshWarpRenderer()
    r.prepare(img, lm)
    g = r.geom
    assert not r.full_crop and (g.x1 - g.x0) * (g.y1 - g.y0) < 0.7 * img.shape[0] * img.shape[1]
    tgt = lm.copy(); tgt[:, 0] += 0.1 * measures.inter_ocular(lm)[0]       # move the head a bit
    out = r.render(tgt)
    assert out.shape == img.shape
    outside = np.ones(img.shape[:2], bool); outside[g.y0:g.y1, g.x0:g.x1] = False
    assert np.array_equal(out[outside], img[outside])
    assert np.abs(out[g.y0:g.y1, g.x0:g.x1].astype(int) - img[g.y0:g.y1, g.x0:g.x1]).mean() > 0.5


def test_huge_reference_works_on_a_capped_crop(shared_data):
    """An 8K-wide reference: the renderer works on a <= 1024 px crop and pastes back at full size."""
    import cv2

    from echo_cli.preprocess.face import track_face

    small = load_reference_image(shared_data / "portraits" / "s1.jpg")
    lm_small = track_face(small).landmarks[0]
    k = 7680 / small.shape[1]
    big = cv2.resize(small, (7680, int(round(small.shape[0] * k))), interpolation=cv2.INTER_LINEAR)
    lm = lm_small * np.array([k, k, k], np.float32)
    r = MeshWarpRenderer()
    r.prepare(big, lm)
    assert max(r.geom.size) <= 1024 and r.geom.scale < 1
    out = r.render(lm)
    assert out.shape == big.shape
    assert np.abs(out.astype(np.int16) - big).mean() < 2.0


def test_image_conversions(tmp_path):
    from PIL import Image

    rgb = (np.random.default_rng(0).uniform(0, 255, (40, 30, 3))).astype(np.uint8)
    assert to_rgb8(rgb[..., 0]).shape == (40, 30, 3)                           # gray
    rgba = np.dstack([rgb, np.zeros((40, 30), np.uint8)])
    assert (to_rgb8(rgba) == 255).all()                                        # transparent -> white
    assert to_rgb8(rgb.astype(np.uint16) * 257).max() == rgb.max()             # 16-bit
    assert to_rgb8(rgb.astype(np.float32) / 255).dtype == np.uint8             # float
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    for name in ("cmyk.jpg", "gray.png", "alpha.png", "g16.png", "pal.png"):
        im = load_reference_image(tmp_path / name)
        assert im.shape == (40, 30, 3) and im.dtype == np.uint8, name
    with pytest.raises(InputError):
        load_reference_image(tmp_path / "missing.png")


def test_feather_and_box_geometry():
    m = feather_mask(100, 80, 10, (True, False, False, False))
    assert m.shape == (80, 100, 1) and m[40, 0, 0] == 1.0 and m[0, 50, 0] < 0.1 and m[40, 50, 0] == 1.0
    lm = np.zeros((478, 3), np.float32); lm[:, 0] = np.linspace(100, 200, 478); lm[:, 1] = np.linspace(50, 150, 478)
    g = head_box(lm, 1000, 1000, margin=2.0, max_work=100)
    assert 0 <= g.x0 < 100 and g.x1 > 200 and g.scale == pytest.approx(100 / max(g.x1 - g.x0, g.y1 - g.y0))
    with pytest.raises(InputError):
        MeshWarpRenderer().prepare(np.zeros((10, 10, 3), np.uint8), np.full((478, 3), np.nan))


def test_blink_covers_the_eye_with_skin(d12, renderer):
    """Upper lids moved onto the lower lids: the dark iris/pupil pixels disappear under lid skin."""
    import cv2

    frames, tr = d12
    lm = tr.landmarks[0].copy()
    out_open = renderer.render(lm)
    for upper, lower in ((R.RIGHT_EYE_UPPER, R.RIGHT_EYE_LOWER), (R.LEFT_EYE_UPPER, R.LEFT_EYE_LOWER)):
        lo = lm[list(lower)]
        for i in upper:                      # each upper-lid point onto the lower lid below it
            lm[i, 1] = np.interp(lm[i, 0], *zip(*sorted(zip(lo[:, 0], lo[:, 1])))) - 0.5
    assert measures.eye_opening(lm)[0] < 0.2 * measures.eye_opening(tr.landmarks[0])[0]
    out = renderer.render(lm)
    ref = tr.landmarks[0]
    for contour in (R.RIGHT_EYE, R.LEFT_EYE):
        mask = np.zeros(out.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(ref[list(contour), :2]).astype(np.int32)], 1)
        m = mask.astype(bool)
        dark_open = np.percentile(out_open[m].mean(1), 10)
        dark_closed = np.percentile(out[m].mean(1), 10)
        assert dark_closed > dark_open + 15, (dark_open, dark_closed)   # pupil/iris gone


def test_paste_back_band_blend_equals_full_blend():
    from echo_cli.render.paste import CropGeometry, paste_back

    rng = np.random.default_rng(3)
    full = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    g = CropGeometry(20, 10, 140, 110, 0.5)                   # 120 x 100 box rendered at 60 x 50
    crop = rng.integers(0, 255, (50, 60, 3), dtype=np.uint8)
    m = feather_mask(120, 100, 8, (False, False, False, False))
    a = paste_back(full, crop, g, m, feather=8)
    b = paste_back(full, crop, g, m, feather=0)
    assert np.abs(a.astype(int) - b).max() <= 1
    assert np.array_equal(a[:10], full[:10]) and np.array_equal(a[:, :20], full[:, :20])


def test_damaged_stills_are_errors_not_green_frames(shared_data, tmp_path):
    """A cut-off JPEG/PNG is an InputError (ffmpeg used to fill the rest with green and the
    render succeeded); random bytes named .jpg say "image", not "video"; a float TIFF loads.
    Face tracking reads the same pixels (one decoder for both)."""
    from PIL import Image

    from echo_cli.errors import InputError
    from echo_cli.preprocess.face import read_image

    src = shared_data / "portraits" / "s0.jpg"
    good = load_reference_image(src)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])
    png = tmp_path / "cut.png"
    Image.fromarray(good).save(tmp_path / "whole.png")
    png.write_bytes((tmp_path / "whole.png").read_bytes()[:200_000])
    for p in (cut, png):
        for load in (load_reference_image, read_image):
            with pytest.raises(InputError, match="truncated or damaged") as e:
                load(p)
            assert e.value.exit_code == 4 and e.value.path == str(p)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    with pytest.raises(InputError, match="image") as e:
        load_reference_image(junk)
    assert "video" not in str(e.value)
    f32 = tmp_path / "float.tif"
    Image.fromarray(good[..., 1].astype(np.float32) / 255.0, mode="F").save(f32)
    got = load_reference_image(f32)
    assert got.shape == good.shape and np.abs(got[..., 0].astype(int) - good[..., 1]).max() <= 1
    assert np.array_equal(read_image(tmp_path / "whole.png"), good)
