"""MotionSpace and retargeting on real tracked faces (MediaPipe on ../shared/data clips)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from echo_cli.errors import InputError, ModelError
from echo_cli.motion import measures
from echo_cli.motion.retarget import Reference, retarget, to_reference_landmarks
from echo_cli.motion.space import REGION_NAMES, MotionSpace, MotionSpaceConfig, default_space


@pytest.fixture(scope="module")
def tracks(shared_data):
    """Short real tracks: d12 (speech, head motion) and d11 (speech), 60 frames each."""
    from echo_cli.media.video_io import iter_frames
    from echo_cli.preprocess.face import track_face

    out = {}
    for name in ("d12", "d11"):
        frames = np.stack(list(iter_frames(shared_data / "clips" / f"{name}.mp4", fps=25, max_frames=60)))
        out[name] = track_face(frames, fps=25.0)
    return out


@pytest.fixture(scope="module")
def portrait(shared_data):
    from echo_cli.preprocess.face import track_face
    from echo_cli.render.base import load_reference_image

    img = load_reference_image(shared_data / "portraits" / "s1.jpg")
    return img, track_face(img).landmarks[0]


def test_shipped_space_layout_and_masks():
    sp = default_space()
    assert sp.region_names == REGION_NAMES == ("pose", "mouth", "smile", "eyes", "brows", "gaze")
    # regions tile [0, D) in order
    stops = [sp.regions[n] for n in REGION_NAMES]
    assert stops[0].start == 0 and all(a.stop == b.start for a, b in zip(stops, stops[1:]))
    assert stops[-1].stop == sp.dim and 20 <= sp.dim <= 60
    assert sp.lip_mask.shape == sp.face_mask.shape == (sp.dim,)
    assert sp.lip_mask[sp.regions["mouth"]].min() == 1.0
    assert sp.lip_mask.sum() == sp.regions["mouth"].stop - sp.regions["mouth"].start
    np.testing.assert_allclose(sp.lip_mask + sp.face_mask, 1.0)
    for name in ("pose", "smile", "eyes", "brows", "gaze"):
        assert sp.face_mask[sp.regions[name]].min() == 1.0
    # smile and mouth live in orthogonal subspaces of the lower face
    cross = sp.bases["smile"] @ sp.bases["mouth"].T
    assert np.abs(cross).max() < 1e-4


def test_roundtrip_on_real_tracks(tracks):
    sp = default_space()
    for name, tr in tracks.items():
        m = sp.encode(tr)
        assert m.shape == (tr.n_frames, sp.dim) and m.dtype == np.float32 and np.isfinite(m).all()
        err = sp.roundtrip_error(tr.landmarks, tr.width, tr.height)
        assert err["all"] < 0.02, (name, err)          # < 2 % of the inter-ocular distance
        assert err["lips"] < 0.02, (name, err)
        assert err["mouth_opening_corr"] > 0.9, (name, err)


def test_mouth_codes_follow_speech_and_smile_leaves_opening(tracks):
    sp = default_space()
    tr = tracks["d12"]
    m, neutral = sp.encode_landmarks(tr.landmarks, tr.width, tr.height)
    mo = measures.mouth_opening(tr.landmarks)
    mouth = m[:, sp.regions["mouth"]]
    # the mouth opening is (almost) a linear function of the mouth codes
    X = np.c_[mouth, np.ones(len(mouth))]
    pred = X @ np.linalg.lstsq(X, mo, rcond=None)[0]
    assert np.corrcoef(pred, mo)[0, 1] > 0.95
    # moving smile codes by +-2 std changes the corners, not the lip opening
    std = sp.scales["std"]
    base = np.zeros((1, sp.dim), np.float32)
    for j in range(sp.regions["smile"].start, sp.regions["smile"].stop):
        mm = np.repeat(base, 2, 0); mm[0, j] = -2 * std[j]; mm[1, j] = 2 * std[j]
        c = sp.decode(mm, neutral)
        assert np.ptp(measures.mouth_opening(c)) < 0.01, j
    j = sp.regions["smile"].start
    mm = np.repeat(base, 2, 0); mm[0, j] = -2 * std[j]; mm[1, j] = 2 * std[j]
    assert np.ptp(measures.smile_width(sp.decode(mm, neutral))) > 0.05     # the smile does something


def test_single_frame_is_its_own_neutral(portrait):
    sp = default_space()
    img, lm = portrait
    m, neutral = sp.encode_landmarks(lm[None], img.shape[1], img.shape[0])
    assert np.abs(m[0, 6:]).max() < 1e-5
    back = sp.to_image_landmarks(m, neutral, img.shape[1], img.shape[0])[0]
    assert measures.landmark_error(back, lm)[0] < 1e-3


def test_state_dict_save_load_identical(tmp_path, tracks):
    sp = default_space()
    p = tmp_path / "ms.safetensors"
    sp.save(p)
    conf = json.loads(p.with_suffix(".json").read_text())
    assert conf["dim"] == sp.dim and conf["version"] == 1
    sp2 = MotionSpace.load(p)
    tr = tracks["d11"]
    np.testing.assert_array_equal(sp.encode(tr), sp2.encode(tr))


def test_bad_checkpoints_and_inputs(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        MotionSpace.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError):
        MotionSpace.load(junk)
    tensors, conf = default_space().state_dict()
    with pytest.raises(ModelError, match="version"):
        MotionSpace.from_state_dict(tensors, {**conf, "version": 99})
    with pytest.raises(InputError):
        default_space().align(np.zeros((3, 468, 3)))


def test_fit_small(tracks):
    sp = MotionSpace.fit(list(tracks.values()), MotionSpaceConfig(n_mouth=6, n_smile=3, n_eyes=2, n_brows=2, n_gaze=2))
    assert sp.dim == 6 + 6 + 3 + 2 + 2 + 2
    for name, b in sp.bases.items():
        np.testing.assert_allclose(b @ b.T, np.eye(len(b)), atol=1e-4)     # orthonormal rows
    # every point belongs to at most one expression area
    areas = [set(sp.sets[k].tolist()) for k in ("lower", "eyes", "brows", "irises", "rigid")]
    assert sum(len(a) for a in areas) == len(set().union(*areas)) == 478
    err = sp.roundtrip_error(tracks["d12"].landmarks, 512, 512)
    assert err["all"] < 0.03


def test_self_retarget_reproduces_driving(tracks):
    sp = default_space()
    tr = tracks["d12"]
    ref = Reference.from_landmarks(sp, tr.landmarks[0], tr.width, tr.height)
    out = retarget(sp, sp.encode(tr), (tr.width, tr.height), ref, anchor=0)
    lm = to_reference_landmarks(sp, out, ref)
    err = measures.landmark_error(lm, tr.landmarks)
    assert err[0] < 1e-3                      # frame 0 is the reference itself
    assert err.mean() < 0.02


def test_cross_retarget_keeps_identity(tracks, portrait):
    """Another person's motion moves the portrait but its face shape (identity) stays its own."""
    sp = default_space()
    img, lm = portrait
    tr = tracks["d12"]
    ref = Reference.from_landmarks(sp, lm, img.shape[1], img.shape[0])
    out = retarget(sp, sp.encode(tr), (tr.width, tr.height), ref, anchor=0)
    drv = to_reference_landmarks(sp, out, ref)
    assert measures.landmark_error(drv[0], lm)[0] < 1e-3
    # pose-free shapes: the driven face stays much closer to the portrait than to the driver
    canon_out, *_ = sp.align(drv)
    canon_ref, *_ = sp.align(lm[None])
    canon_drv, *_ = sp.align(tr.landmarks)
    rigid = sp.sets["rigid"]
    d_ref = np.linalg.norm(canon_out[:, rigid] - canon_ref[:, rigid], axis=-1).mean()
    d_drv = np.linalg.norm(canon_out[:, rigid] - canon_drv[:, rigid], axis=-1).mean()
    assert d_ref < 0.2 * d_drv
    # and the driver's mouth motion comes through
    r = np.corrcoef(measures.mouth_opening(drv), measures.mouth_opening(tr.landmarks))[0, 1]
    assert r > 0.8
