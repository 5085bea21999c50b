"""eval/events.py: onset detectors and the follow-vs-chance test on event trains whose answer is known."""
import numpy as np

from echo_cli.eval import events as E

FPS = 25.0


def _poisson(rng, n, rate_per_s):
    return sorted(np.flatnonzero(rng.random(n) < rate_per_s / FPS).tolist())


def test_follower_beats_chance():
    rng = np.random.default_rng(1)
    seqs = []
    for _ in range(6):
        n = 500
        user = _poisson(rng, n, 0.25)
        follow = [u + int(rng.integers(8, 25)) for u in user]             # 0.32-1.0 s later
        noise = _poisson(rng, n, 0.15)
        seqs.append((user, sorted(set(follow + noise)), n))
    r = E.follow_test(seqs, FPS, n_shifts=400)
    assert r["n_user_events"] >= 20
    assert r["rate"] > 0.95
    assert r["chance"] < 0.5
    assert r["p"] < 0.01


def test_independent_trains_are_at_chance():
    rng = np.random.default_rng(2)
    seqs = [(_poisson(rng, 500, 0.25), _poisson(rng, 500, 0.3), 500) for _ in range(6)]
    r = E.follow_test(seqs, FPS, n_shifts=400)
    assert abs(r["rate"] - r["chance"]) < 0.2
    assert r["p"] > 0.05


def test_leading_events_and_too_late_events_do_not_count():
    user = [100, 200, 300]
    before = [u - 15 for u in user]          # avatar acts 0.6 s *before* the user
    late = [u + 45 for u in user]            # 1.8 s after: outside 0.2-1.5 s
    instant = [u + 2 for u in user]          # 0.08 s: too early to be a reaction
    for av in (before, late, instant):
        r = E.follow_test([(user, av, 400)], FPS, n_shifts=50)
        assert r["rate"] == 0.0
    r = E.follow_test([(user, [u + 10 for u in user], 400)], FPS, n_shifts=50)
    assert r["rate"] == 1.0


def test_dense_avatar_events_make_the_test_uninformative():
    # an avatar with an event every 0.5 s "follows" everything, and so does chance
    user = list(range(30, 470, 60))
    r = E.follow_test([(user, list(range(0, 500, 12)), 500)], FPS, n_shifts=200)
    assert r["rate"] == 1.0 and r["chance"] > 0.95 and r["p"] > 0.5


def test_nod_onsets_find_nods_not_sway():
    t = np.arange(500) / FPS
    sway = 0.03 * np.sin(2 * np.pi * 0.2 * t)                               # slow head sway
    assert E.nod_onsets(sway, FPS) == []
    pitch = sway.copy()
    L = 12
    bump = 0.08 * 0.5 * (1 - np.cos(2 * np.pi * np.arange(L) / (L - 1)))  # 0.5 s nod
    starts = [80, 230, 390]
    for s in starts:
        pitch[s:s + L] += bump
    found = E.nod_onsets(pitch, FPS)
    assert len(found) == len(starts)
    for s, f in zip(starts, found):
        assert 0 <= f - s <= 5


def test_smile_onsets_find_rises_not_plateaus():
    s = np.zeros(400)
    s[100:] += 0.08                  # a smile starts at frame 100 (ramped over 5 frames below)
    s[100:105] = np.linspace(0.0, 0.08, 5)
    s[300:] -= 0.08                  # and ends: a fall is no onset
    rng = np.random.default_rng(0)
    found = E.smile_onsets(s + 0.002 * rng.standard_normal(400), FPS)
    assert len(found) == 1 and 98 <= found[0] <= 106
    assert E.smile_onsets(0.002 * rng.standard_normal(400), FPS) == []


def test_merge_events():
    assert E.merge_events([10, 50], [12, 80], refractory=5) == [10, 50, 80]
    assert E.merge_events([], []) == []


def test_on_real_landmarks_a_delayed_copy_follows_and_another_face_does_not(shared_data):
    """The whole chain on faces re-detected by MediaPipe: a real listener clip's own nods and
    smiles, delayed by 0.6 s, follow its events (rate 1, far above chance); another real
    face's events do not (at chance)."""
    from echo_cli.eval import measure as ME

    def face_events(path, delay_s=0.0):
        m = ME.measure_video(shared_data / path)
        pose = ME.pose_features(m.landmarks, m.euler)
        expr = ME.expression_features(m.landmarks)
        cfg = E.EventConfig() if m.euler is not None else E.PROXY_EVENTS
        d = int(round(delay_s * m.fps))
        pitch = np.r_[np.full(d, pose[0, 1]), pose[:, 1]][:m.n_frames]
        smile = np.r_[np.full(d, expr[0, 2]), expr[:, 2]][:m.n_frames]
        return E.avatar_events(pitch, smile, m.fps, cfg), m.fps, m.n_frames

    user, fps, n = face_events("clips/d9.mp4")
    copy, _, _ = face_events("clips/d9.mp4", delay_s=0.6)
    assert len(user) >= 6
    r = E.follow_test([(user, copy, n)], fps, n_shifts=500)
    assert r["rate"] == 1.0 and r["p"] < 0.05 and r["chance"] < 0.8
    other, fps2, n2 = face_events("clips/d13.mp4")
    m = min(n, n2)
    r2 = E.follow_test([(user, other, m)], fps, n_shifts=500)
    assert r2["p"] > 0.05
