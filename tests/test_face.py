"""Face tracking, pose and crop on real media (MediaPipe runs for real, never mocked)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from echo_cli.errors import InputError
from echo_cli.preprocess import crop, pose
from echo_cli.preprocess.smoothing import OneEuroParams, one_euro


@pytest.fixture(scope="module")
def d12_track(shared_data):
    from echo_cli.preprocess.face import track_face

    return track_face(shared_data / "clips" / "d12.mp4", cache=False)       # the real tracker, not the cache


# ---------------------------------------------------------------- real clips

def test_track_found_in_every_frame_with_consistent_shapes(d12_track):
    tr = d12_track
    T = tr.n_frames
    assert T > 150 and tr.fps == pytest.approx(25.0)
    assert (tr.width, tr.height) == (512, 512)
    assert tr.landmarks.shape == (T, 478, 3) and tr.canonical.shape == (T, 478, 3)
    assert tr.pose.rotation.shape == (T, 3, 3) and tr.pose.euler.shape == (T, 3)
    assert tr.pose.translation.shape == (T, 2) and tr.pose.scale.shape == (T,)
    assert tr.boxes.shape == (T, 4)
    assert tr.detected.mean() >= 0.99 and tr.valid.all()
    assert np.isfinite(tr.landmarks).all()
    # landmarks inside the frame, in pixels (not normalised 0..1)
    assert tr.landmarks[..., 0].max() > 100 and tr.landmarks[..., 0].max() <= 512


def test_landmarks_agree_with_direct_mediapipe(d12_track, shared_data):
    """The smoothed track stays within a few % of the face size of a plain MediaPipe run."""
    import mediapipe as mp

    from echo_cli.preprocess.face import _iter_video_frames_av

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True)
    direct = []
    for img in _iter_video_frames_av(shared_data / "clips" / "d12.mp4", None):
        res = mesh.process(img)
        lm = res.multi_face_landmarks[0].landmark
        direct.append([(p.x * img.shape[1], p.y * img.shape[0]) for p in lm])
    mesh.close()
    direct = np.array(direct, np.float32)
    ours = d12_track.landmarks[: len(direct), :, :2]
    iod = np.linalg.norm(direct[:, 33] - direct[:, 263], axis=1)           # eye-corner distance
    err = np.linalg.norm(ours - direct, axis=2).mean(1) / iod
    assert len(direct) == d12_track.n_frames
    assert np.median(err) < 0.02 and err.max() < 0.08


def test_chunked_tracking_is_the_same_for_any_thread_count(shared_data):
    """Chunks run in parallel but are fixed by the settings: 1 and 2 threads give the same
    track, and the chunk seams stay close to one unbroken MediaPipe run."""
    from echo_cli.preprocess.face import TrackSettings, open_frames, track_raw

    frames_it, fps, *_ = open_frames(shared_data / "clips" / "d12.mp4")
    frames = np.stack([f for f, _ in zip(frames_it, range(120))])
    chunked = TrackSettings(chunk_frames=40)            # 3 chunks: one tracker restarts
    one = track_raw(frames, fps, settings=chunked, threads=1)
    two = track_raw(frames, fps, settings=chunked, threads=2)
    assert np.array_equal(one.landmarks, two.landmarks) and np.array_equal(one.detected, two.detected)
    whole = track_raw(frames, fps, settings=TrackSettings(chunk_frames=10 ** 6, chunk_mb=10 ** 6), threads=1)
    assert one.detected.all() and whole.detected.all()
    iod = np.linalg.norm(whole.landmarks[:, 33, :2] - whole.landmarks[:, 263, :2], axis=1)
    err = np.linalg.norm(one.landmarks[..., :2] - whole.landmarks[..., :2], axis=2).mean(1) / iod
    assert err[:40].max() == 0.0                        # the first chunk is the same run
    assert err.max() < 0.02                             # seams at 40 and 80: warm-up settles them


def test_crop_holds_the_face(d12_track):
    inside = crop.inside_fraction(d12_track.landmarks, d12_track.boxes)
    assert (inside == 1.0).mean() >= 0.99
    side = d12_track.boxes[:, 2] - d12_track.boxes[:, 0]
    assert np.allclose(side, d12_track.boxes[:, 3] - d12_track.boxes[:, 1], atol=1e-3)  # square
    # steady: the box centre moves less from frame to frame than the raw landmark centre
    c_box = (d12_track.boxes[:, :2] + d12_track.boxes[:, 2:]) / 2
    c_lm, _ = crop.landmark_extent(d12_track.landmarks)
    assert np.abs(np.diff(c_box, axis=0)).mean() <= np.abs(np.diff(c_lm, axis=0)).mean()


def test_pose_canonical_is_pose_free(d12_track):
    mean, rigid = pose.canonical_face()
    resid = np.linalg.norm(d12_track.canonical[:, rigid] - mean[rigid], axis=2).mean()
    assert resid < 0.06                      # canonical units: eye-corner distance = 1
    back = pose.pose_landmarks(d12_track.canonical, d12_track.pose.rotation, d12_track.pose.scale,
                               d12_track.pose.translation)
    assert np.abs(back[..., :2] - d12_track.landmarks[..., :2]).max() < 0.5 + 1e-3 * d12_track.pose.scale.max()


def test_small_face_second_pass(shared_data):
    """s13: a full-body shot where a plain full-frame face mesh finds nothing."""
    from echo_cli.preprocess.face import track_face, track_raw

    raw = track_raw(shared_data / "clips" / "s13.mp4")
    assert raw.n_crop > 0.9 * len(raw.detected)          # found by the zoomed pass
    assert raw.detected.mean() >= 0.99
    tr = track_face(shared_data / "clips" / "s13.mp4", cache=False)
    face_w = tr.landmarks[..., 0].max(1) - tr.landmarks[..., 0].min(1)
    assert face_w.mean() < 0.2 * tr.width                # really a small face
    assert (crop.inside_fraction(tr.landmarks, tr.boxes) == 1.0).mean() >= 0.99


@pytest.mark.parametrize("name", ["s0.jpg", "full3.png"])
def test_portrait_image_is_one_frame(shared_data, name):
    from echo_cli.preprocess.face import read_image, track_face

    tr = track_face(shared_data / "portraits" / name, cache=False)
    img = read_image(shared_data / "portraits" / name)
    assert tr.n_frames == 1 and (tr.height, tr.width) == img.shape[:2]
    assert tr.detected[0] and crop.inside_fraction(tr.landmarks, tr.boxes)[0] == 1.0


def test_no_face_raises_input_error(tmp_path):
    import cv2
    import skimage.data

    p = tmp_path / "cat.png"
    cv2.imwrite(str(p), cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR))
    from echo_cli.preprocess.face import track_face

    with pytest.raises(InputError) as e:
        track_face(p, cache=False)
    assert "no face" in e.value.one_line() and "cat.png" in e.value.one_line()


def test_save_load_roundtrip_and_damage(d12_track, tmp_path):
    from echo_cli.preprocess.face import load_track, save_track

    p = tmp_path / "t.npz"
    save_track(d12_track, p)
    back = load_track(p)
    assert np.array_equal(back.landmarks, d12_track.landmarks) and back.fps == d12_track.fps
    assert np.array_equal(back.pose.euler, d12_track.pose.euler)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(InputError):
        load_track(p)


# ---------------------------------------------------------------- pure parts

def test_umeyama_recovers_a_known_similarity():
    mean, rigid = pose.canonical_face()
    R = pose.euler_to_matrix(np.array([[0.3, -0.2, 0.1]]))
    lm = 120.0 * np.einsum("tij,nj->tni", R, mean) + np.array([200.0, 150.0, 5.0])
    p, canon = pose.fit_pose(lm.astype(np.float32))
    assert np.allclose(p.euler[0], [0.3, -0.2, 0.1], atol=1e-4)
    assert p.scale[0] == pytest.approx(120.0, rel=1e-4)
    assert np.allclose(p.translation[0], [200.0, 150.0], atol=1e-2)
    assert np.abs(canon[0] - mean).max() < 1e-4


def test_euler_roundtrip():
    rng = np.random.default_rng(0)
    e = rng.uniform(-1.2, 1.2, size=(50, 3))
    assert np.allclose(pose.matrix_to_euler(pose.euler_to_matrix(e)), e, atol=1e-9)


def test_fill_gaps_interpolates_short_and_holds_long():
    from echo_cli.preprocess.face import fill_gaps

    lm = np.zeros((12, 478, 3), np.float32)
    lm[:, :, 0] = np.arange(12)[:, None]
    det = np.ones(12, bool)
    det[3:5] = False                 # short gap: interpolated
    det[7:12] = False                # open-ended gap: held, invalid
    lm[~det] = np.nan
    out, valid = fill_gaps(lm, det, max_gap=3)
    assert np.allclose(out[3:5, 0, 0], [3, 4]) and valid[3:5].all()
    assert not valid[7:].any() and np.allclose(out[7:, 0, 0], 6)


def test_one_euro_low_lag_on_fast_motion_and_smooth_at_rest():
    fps = 30.0
    rng = np.random.default_rng(1)
    still = 100 + rng.normal(0, 0.5, size=(60, 1))
    ramp = 100 + np.arange(60)[:, None] * 6.0                      # fast move: 180 px/s
    params = OneEuroParams()
    s = one_euro(still, fps, params, scale=100.0)
    assert s[10:].std() < 0.8 * still[10:].std()                    # jitter reduced
    r = one_euro(ramp, fps, params, scale=100.0)
    assert np.abs(r[20:] - ramp[20:]).max() < 2.0                   # well under one frame (6 px) of lag


def test_choose_face_largest_central_and_override():
    from echo_cli.preprocess.face import choose_face

    def face(cx, cy, size):
        return np.array([[cx - size / 2, cy - size / 2, 0], [cx + size / 2, cy + size / 2, 0]], np.float32)

    faces = [face(100, 200, 60), face(320, 240, 120), face(560, 240, 150)]
    assert choose_face(faces, 640, 480, None) == 1                  # big and central beats bigger at edge
    assert choose_face(faces, 640, 480, None, face_index=0) == 0    # left-most
    assert choose_face(faces, 640, 480, None, pick=(0.9, 0.5)) == 2
    assert choose_face(faces, 640, 480, np.array([110.0, 190.0])) == 0   # continuity


# ---------------------------------------------------------------- mirror-averaged tracking

def test_mirror_index_swaps_sides_and_keeps_the_midline():
    from echo_cli.preprocess.face import mirror_index

    m = mirror_index()
    assert m.shape == (478,) and np.array_equal(m[m], np.arange(478))          # an involution
    for a, b in [(61, 291), (33, 263), (468, 473), (82, 312), (87, 317), (234, 454)]:
        assert m[a] == b and m[b] == a                                          # left <-> right
    for i in (0, 1, 4, 13, 14, 17, 152, 168):
        assert m[i] == i                                                        # midline


def test_mirror_key_keeps_old_cache_keys():
    from echo_cli.preprocess.face import TrackSettings

    assert "mirror" not in TrackSettings().key()        # tracks cached before the option still match
    assert TrackSettings(mirror=True).key()["mirror"] is True


def test_mirror_track_is_the_average_of_direct_and_mirrored_runs(shared_data):
    """A mirrored frame tracked and un-mirrored lands on the direct landmarks (within MediaPipe's
    own error), and the mirror option averages exactly those two runs."""
    from echo_cli.preprocess.face import TrackSettings, open_frames, track_raw, unmirror

    frames_it, fps, *_ = open_frames(shared_data / "talking" / "lrd_sample_video.mp4", fps=25.0)
    frames = np.stack([f for f, _ in zip(frames_it, range(60))])
    w = frames.shape[2]
    one = TrackSettings(chunk_frames=10 ** 6, chunk_mb=10 ** 6)
    direct = track_raw(frames, fps, settings=one, threads=1)
    flipped = track_raw(np.ascontiguousarray(frames[:, :, ::-1]), fps, settings=one, threads=1)
    back = np.stack(unmirror(list(flipped.landmarks), w))
    both = track_raw(frames, fps, settings=dataclasses.replace(one, mirror=True), threads=1)
    assert direct.detected.all() and flipped.detected.all() and both.detected.all()
    iod = np.linalg.norm(direct.landmarks[:, 33, :2] - direct.landmarks[:, 263, :2], axis=1)
    gap = np.linalg.norm(back[..., :2] - direct.landmarks[..., :2], axis=2).mean(1) / iod
    assert gap.max() < 0.08 and gap.mean() > 1e-4       # the same face, not the same numbers
    np.testing.assert_allclose(both.landmarks, (direct.landmarks + back) / 2, atol=1e-3)


def test_mirror_leaves_small_face_crops_to_the_direct_track(shared_data):
    """s13.mp4's small face is found on zoomed crops; mirroring those moved the crop and one
    frame collapsed 0.4 eye distances off. The crop pass tracks directly under --mirror."""
    from echo_cli.preprocess.face import TrackSettings, track_face

    p = shared_data / "clips" / "s13.mp4"
    plain = track_face(p, cache=False)
    mirrored = track_face(p, cache=False, settings=TrackSettings(mirror=True))
    assert np.array_equal(plain.landmarks, mirrored.landmarks)


def test_face_choice_warnings_fit_what_the_user_asked(shared_data, caplog):
    """Several faces: the "kept the largest" advice only when the caller did not choose; a
    --face-index beyond the faces present is said, not silently clamped."""
    from echo_cli.preprocess.face import open_frames, track_face

    def first(rel, n=4):
        it, *_ = open_frames(shared_data / rel, fps=25.0)
        return np.stack([f for f, _ in zip(it, range(n))])

    a, b = first("clips/d12.mp4"), first("clips/d11.mp4")
    two = np.concatenate([a, b], axis=2)                    # two people side by side
    with caplog.at_level("WARNING", logger="echo_cli"):
        track_face(two, fps=25.0, source="pair")
    assert "pair: several faces" in caplog.text and "kept the largest" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="echo_cli"):
        right = track_face(two, fps=25.0, face_index=1, source="pair")
    assert "several faces" not in caplog.text
    assert right.landmarks[..., 0].mean() > a.shape[2]     # the right-hand face, as asked
    caplog.clear()
    with caplog.at_level("WARNING", logger="echo_cli"):
        track_face(a, fps=25.0, face_index=3)
    assert "--face-index 3, but the first frame shows 1 face" in caplog.text
