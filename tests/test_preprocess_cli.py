"""`echo-cli preprocess FOLDER` end to end on real media plus bad files; the cache."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def need_shared():
    p = Path(os.environ.get("ECHO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (p / "clips").is_dir():
        pytest.skip("../shared/data is absent (set ECHO_SHARED_DATA): real media needed")
    return p


def _ffmpeg(*args):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, timeout=120)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """An isolated cache (sharing the already joined Whisper model folder)."""
    from echo_cli.features.audio import whisper_model_dir

    model = whisper_model_dir()
    e = dict(os.environ, ECHO_CACHE_DIR=str(tmp_path_factory.mktemp("cache")),
             ECHO_WHISPER_MODEL_DIR=str(model), NO_COLOR="1")
    return e


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two good files and every kind of bad input the issue names."""
    import cv2
    import skimage.data

    data = need_shared()
    d = tmp_path_factory.mktemp("media")
    (d / "talk.mp4").write_bytes((data / "talking" / "grid_lrwp9a.mp4").read_bytes())   # 3 s, speech
    (d / "face.jpg").write_bytes((data / "portraits" / "s0.jpg").read_bytes())
    cv2.imwrite(str(d / "cat.png"), cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR))
    (d / "corrupt.mp4").write_bytes((data / "clips" / "d12.mp4").read_bytes()[:30000])
    (d / "unreadable.mp4").write_text("this is not a video\n")
    import wave

    with wave.open(str(d / "zero.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"")
    _ffmpeg("-i", data / "clips" / "d0.mp4", "-t", "1", "-an", "-c:v", "libx264", "-preset", "ultrafast",
            d / "noaudio.mp4")
    (d / "notes.txt").write_text("not media: ignored")
    return d


def _cli(env, *args):
    r = subprocess.run([sys.executable, "-m", "echo_cli", "--json", "preprocess", *map(str, args)],
                       capture_output=True, text=True, env=env, timeout=900)
    out = [l for l in r.stdout.splitlines() if l.strip()]
    assert len(out) == 1, r.stdout                      # exactly one JSON object on stdout
    return r.returncode, json.loads(out[0]), r.stderr


@pytest.fixture(scope="module")
def first_run(env, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, _cli(env, folder, "-o", out, "--workers", "2", "--transcript", "faster-whisper", "--overlay")


def test_bad_files_fail_one_line_each_and_the_rest_completes(first_run, folder):
    out, (code, summary, stderr) = first_run
    assert code == 8 and summary["ok"] is False and summary["error"]["kind"] == "partial"
    failed = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(failed) == {"cat.png", "corrupt.mp4", "unreadable.mp4", "zero.wav"}
    for name, reason in failed.items():
        assert "\n" not in reason and name in reason and "fix:" in reason
        assert reason in stderr                           # the same line on stderr
    assert "no face" in failed["cat.png"]
    ok = {Path(p).name for p in summary["done"] + summary["cached"]}
    assert ok == {"talk.mp4", "face.jpg", "noaudio.mp4"}
    assert summary["total"] == 7                          # notes.txt is not media


def test_outputs_written_and_loadable(first_run):
    from echo_cli.features.audio import load_audio_features
    from echo_cli.preprocess.face import load_track
    from echo_cli.preprocess.transcript import read_transcript

    out, (code, summary, _) = first_run
    tr = load_track(out / "talk.mp4.face.npz")
    au = load_audio_features(out / "talk.mp4.audio.npz")
    assert tr.n_frames == au.n_frames == 75 and tr.detected.mean() >= 0.99
    assert au.whisper is not None and au.vad.any()
    t = read_transcript(out / "talk.mp4.transcript.json")
    assert len(t.words) >= 3 and t.method == "faster-whisper-words"
    assert (out / "talk.mp4.overlay.mp4").stat().st_size > 1000
    assert (out / "face.jpg.overlay.png").is_file()
    assert load_track(out / "face.jpg.face.npz").n_frames == 1
    assert not (out / "noaudio.mp4.audio.npz").exists()
    rec = {Path(r["path"]).name: r for r in summary["items"]}
    assert "no audio track: face only" in rec["noaudio.mp4"]["notes"]
    assert json.loads((out / "summary.json").read_text())["total"] == 7
    assert not list(out.glob(".*part*"))                 # no temp files left behind


def test_second_run_is_served_from_the_cache(first_run, env, folder):
    out, _ = first_run
    code, summary, _ = _cli(env, folder, "-o", out, "--transcript", "faster-whisper")
    assert code == 8
    assert {Path(p).name for p in summary["cached"]} == {"talk.mp4", "face.jpg", "noaudio.mp4"}
    assert summary["done"] == []


def test_a_rerun_into_the_same_folder_leaves_no_stale_result(first_run, env, folder, tmp_path):
    """A rerun with --transcript none kept the first run's transcript beside the new results,
    unlisted in summary.json."""
    d = tmp_path / "one"
    d.mkdir()
    (d / "talk.mp4").write_bytes((folder / "talk.mp4").read_bytes())       # the cache has it: fast
    o = tmp_path / "o"
    assert _cli(env, d, "-o", o, "--transcript", "faster-whisper")[0] == 0
    assert (o / "talk.mp4.transcript.json").is_file()
    code, summary, _ = _cli(env, d, "-o", o, "--transcript", "none")
    assert code == 0 and not (o / "talk.mp4.transcript.json").exists()
    assert (o / "talk.mp4.face.npz").is_file() and (o / "talk.mp4.audio.npz").is_file()


def test_mirror_tracks_anew_and_stays_on_the_same_face(first_run, env, tmp_path):
    """--mirror is a different track (not served from the plain run's cache entry) of the same
    face: every landmark within a few % of the eye distance of the plain track."""
    from echo_cli.preprocess.face import load_track

    out, _ = first_run
    d = tmp_path / "one"
    d.mkdir()
    (d / "talk.mp4").write_bytes((need_shared() / "talking" / "grid_lrwp9a.mp4").read_bytes())
    code, summary, _ = _cli(env, d, "-o", tmp_path / "out", "--mirror", "--transcript", "none", "--no-whisper")
    assert code == 0 and [Path(p).name for p in summary["done"]] == ["talk.mp4"] and summary["options"]["mirror"]
    plain, mirrored = load_track(out / "talk.mp4.face.npz"), load_track(tmp_path / "out" / "talk.mp4.face.npz")
    assert mirrored.n_frames == plain.n_frames and mirrored.detected.all()
    iod = np.linalg.norm(plain.landmarks[:, 33, :2] - plain.landmarks[:, 263, :2], axis=1)
    gap = np.linalg.norm(mirrored.landmarks[..., :2] - plain.landmarks[..., :2], axis=2).mean(1) / iod
    assert 1e-4 < gap.mean() and gap.max() < 0.05


def test_require_audio_and_usage_errors(env, folder, tmp_path):
    d = tmp_path / "one"
    d.mkdir()
    (d / "noaudio.mp4").write_bytes((folder / "noaudio.mp4").read_bytes())
    code, summary, stderr = _cli(env, d, "--require-audio", "--transcript", "none")
    assert code == 4 and "no audio track" in summary["failed"][0]["reason"]     # the only file failed
    r = subprocess.run([sys.executable, "-m", "echo_cli", "preprocess", str(d), "--transcript", "klingon"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "transcript" in r.stderr
    r = subprocess.run([sys.executable, "-m", "echo_cli", "preprocess", str(d), "--language", "zz"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "unknown --language 'zz'" in r.stderr      # was each file's internal error
    notes = tmp_path / "notes.mp4"                     # one file that is not media: nothing completed
    notes.write_text("hello")
    code, summary, stderr = _cli(env, notes, "--transcript", "none")
    assert code == 4 and summary["error"]["kind"] == "input" and "the rest completed" not in stderr
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    for arg, needle in ((tmp_path / "gone.png", "broken or looping symbolic link"),
                        ("/dev/null", "not a regular file or a folder")):
        r = subprocess.run([sys.executable, "-m", "echo_cli", "preprocess", str(arg)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 4 and needle in r.stderr, r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-m", "echo_cli", "preprocess", str(empty)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 4 and "no video, image or audio" in r.stderr
    taken = tmp_path / "results.txt"
    taken.write_text("mine")
    r = subprocess.run([sys.executable, "-m", "echo_cli", "preprocess", str(d), "-o", str(taken)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 7 and "folder" in r.stderr and "Traceback" not in r.stderr and taken.read_text() == "mine"
    # a folder that cannot be made although permissions allow it (a pseudo-filesystem)
    r = subprocess.run([sys.executable, "-m", "echo_cli", "preprocess", str(d), "-o", "/proc/echo-preprocess-out"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 7 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]


# ---------------------------------------------------------------- cache behaviour (in process)

def test_cache_settings_damage_and_hits(tmp_path, monkeypatch):
    from echo_cli.features.audio import whisper_model_dir
    from echo_cli.preprocess.cache import Cache
    from echo_cli.preprocess.pipeline import preprocess_media

    monkeypatch.setenv("ECHO_WHISPER_MODEL_DIR", str(whisper_model_dir()))
    clip = need_shared() / "talking" / "grid_pwij3p.mp4"
    cache = Cache(root=tmp_path / "c")
    a = preprocess_media(clip, cache=cache, whisper=False)
    assert a["cached"] == {"face": False, "audio": False, "transcript": False}
    b = preprocess_media(clip, cache=cache, whisper=False)
    assert b["cached"]["face"] and b["cached"]["audio"]
    assert np.array_equal(a["face"].landmarks, b["face"].landmarks)
    # a changed audio setting recomputes only the audio
    c = preprocess_media(clip, cache=cache, whisper=True)
    assert c["cached"]["face"] and not c["cached"]["audio"] and c["audio"].whisper is not None
    # a truncated entry is detected and recomputed
    entry = next((tmp_path / "c" / "face").rglob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:500])
    d = preprocess_media(clip, cache=cache, whisper=False)
    assert not d["cached"]["face"] and np.allclose(d["face"].landmarks, a["face"].landmarks)
    e = preprocess_media(clip, cache=cache, whisper=False)
    assert e["cached"]["face"]
    # track_face on a path shares the entries (and stores into a given cache)
    from echo_cli.preprocess.face import track_face

    hit = track_face(clip, cache=cache)
    assert np.array_equal(hit.landmarks, e["face"].landmarks)
    n_entries = len(list((tmp_path / "c" / "face").rglob("*.npz")))
    track_face(clip, fps=12.5, cache=cache)                        # another fps: a new entry
    assert len(list((tmp_path / "c" / "face").rglob("*.npz"))) == n_entries + 1
    # a disabled cache never hits
    assert not preprocess_media(clip, cache=False, whisper=False)["cached"]["face"]


def test_resume_after_kill(env, tmp_path):
    """Kill a folder run after its first file; the rerun takes that file from the cache."""
    import signal
    import time

    data = need_shared()
    d = tmp_path / "two"
    d.mkdir()
    for name in ("grid_lrwp9a.mp4", "grid_pwij3p.mp4"):
        (d / name).symlink_to(data / "talking" / name)
    e = dict(env, ECHO_CACHE_DIR=str(tmp_path / "cache"))
    audio_entries = tmp_path / "cache" / "preprocess" / "v1" / "audio"
    p = subprocess.Popen([sys.executable, "-m", "echo_cli", "preprocess", str(d), "--transcript", "none"],
                         env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list(audio_entries.rglob("*.meta.json")) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert list(audio_entries.rglob("*.meta.json")), "the first file never finished"
    code, summary, _ = _cli(e, d, "--transcript", "none")
    assert code == 0
    assert Path(summary["cached"][0]).name == "grid_lrwp9a.mp4"


def test_workers_leave_with_a_killed_parent(env, tmp_path):
    """SIGKILL of `preprocess --workers 2` (the OOM killer, a scheduler): its pool workers
    exit too (they used to wait on their task queue forever, holding ~1 GB each)."""
    import signal
    import time

    import psutil

    data = need_shared()
    d = tmp_path / "clips"
    d.mkdir()
    for name in ("d10.mp4", "d11.mp4", "d12.mp4"):
        (d / name).symlink_to(data / "clips" / name)
    e = dict(env, ECHO_CACHE_DIR=str(tmp_path / "cache"))
    p = subprocess.Popen([sys.executable, "-m", "echo_cli", "preprocess", str(d), "--workers", "2",
                          "--transcript", "none"], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [c for c in psutil.Process(p.pid).children()
                       if "resource_tracker" not in " ".join(c.cmdline())]
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert len(workers) >= 2, "the pool never started"
    gone, alive = psutil.wait_procs(workers, timeout=15)
    for w in alive:
        w.kill()
    assert not alive, f"{len(alive)} workers outlived their parent"


def test_interrupted_workers_stop_the_files_in_flight(env, tmp_path):
    """SIGTERM to `preprocess --workers 2`: the files being processed are stopped, not run to
    the end first (it used to wait for them, seconds to minutes for long videos): no cache
    entry, no temp file, exit 130 with one line and no traceback from the workers."""
    import signal
    import time

    import psutil

    data = need_shared()
    d = tmp_path / "long"
    d.mkdir()
    for name in ("d10", "d11"):        # ~75 s and ~45 s: minutes of face tracking each
        _ffmpeg("-stream_loop", "4", "-i", data / "clips" / f"{name}.mp4", "-c", "copy", d / f"{name}x5.mp4")
    cache = tmp_path / "cache"
    e = dict(env, ECHO_CACHE_DIR=str(cache))
    p = subprocess.Popen([sys.executable, "-m", "echo_cli", "preprocess", str(d), "--workers", "2",
                          "--transcript", "none"], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy: list = []
    try:
        deadline = time.monotonic() + 180
        while len(busy) < 2 and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)        # a worker inside a job has its ffmpeg decoder running
            busy = [w for w in psutil.Process(p.pid).children()
                    if any("ffmpeg" in c.name() for c in w.children())]
        assert len(busy) == 2, "the workers never started decoding"
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: terminated"), err
    # (a short stage, the audio features, may have finished before the signal; the face track
    # of a minute of video cannot have)
    assert not list((cache / "preprocess").rglob("face/**/*.meta.json")), "a file in flight was run to the end"
    assert not [f for f in cache.rglob(".*") if f.is_file()], "temp files left behind"
    assert not [w for w in busy if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_bench_preprocess_face_record(shared_data):
    """`bench preprocess` (face part, quick) on real frames: the floor, 1 and 2 threads, CPU
    and wall per frame, the load, and the target verdict in the Markdown (no timing asserted)."""
    from echo_cli.bench import preprocess as B

    rec = B.measure(shared_data, quick=True, parts=("face",), threads=2)
    stages = [r["stage"] for r in rec["rows"]]
    assert stages == ["MediaPipe FaceMesh alone (floor, 1 thread)", "face track, decoded frames, 1 thread",
                      "face track, decoded frames, 2 threads",
                      "mirror-averaged face track (--mirror), decoded frames, 2 threads"]
    for r in rec["rows"]:
        assert r["frames"] == 183 and r["ms_per_frame"] > 0 and r["cpu_ms_per_frame"] > 0 and r["load"]
    assert rec["rows"][-1]["face_found"] == 1.0
    s = rec["summary"]
    # averaging two independent MediaPipe runs is steadier on this talking clip (13-18 % on three clips)
    assert 0 < s["jitter_mirror_512"] < s["jitter_512"]
    assert rec["rows"][1]["jitter"] == rec["rows"][2]["jitter"]         # threads never change the track
    assert s["face_threads"] == 2 and s["target_ms_per_frame"] == 8.0
    assert s["target_met"] == (s["face_ms_per_frame_512"] <= 8.0)
    md = B._markdown(rec, "echo-cli bench preprocess --quick --set parts=face")
    assert "Target ≤ 8 ms/frame" in md and "load average" in md and "git " in md and "Mirror-averaged" in md

