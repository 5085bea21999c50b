"""`echo-cli reenact` and `echo-cli bench` as a user runs them, on real media (short segments),
and the reference portrait taken from a video (shared by reenact and a video avatar)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def cli(*args):
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "echo_cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def last_line(r) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    return lines[-1] if lines else ""


def test_self_reenactment_api_matches_driving(shared_data, tmp_path):
    """Reference = first frame; the rendered video, tracked again, follows the driving face."""
    from echo_cli.api.reenact import ReenactOptions, reenact
    from echo_cli.media.probe import probe
    from echo_cli.media.video_io import iter_frames
    from echo_cli.motion import measures
    from echo_cli.preprocess.face import track_face

    clip = shared_data / "clips" / "d11.mp4"
    out = tmp_path / "self.mp4"
    res = reenact(None, clip, out, ReenactOptions(reference_frame=0, max_frames=50), keep_landmarks=True)
    info = probe(out)
    assert info.has_audio and info.has_video and (info.width, info.height) == (512, 512)
    assert abs(info.n_frames - 50) <= 1 and res.frames == info.n_frames      # the summary counts the file
    drv = track_face(np.stack(list(iter_frames(clip, fps=25, max_frames=50))), fps=25.0)
    got = track_face(out, fps=25.0)
    n = min(drv.n_frames, got.n_frames)
    err = measures.landmark_error(got.landmarks[:n], drv.landmarks[:n]).mean()
    r = np.corrcoef(measures.mouth_opening(got.landmarks[:n]), measures.mouth_opening(drv.landmarks[:n]))[0, 1]
    assert err < 0.03 and r > 0.85, (err, r)


def test_cli_cross_reenactment(shared_data, tmp_path):
    out = tmp_path / "cross.mp4"
    r = cli("--json", "reenact", shared_data / "portraits" / "s1.jpg", shared_data / "clips" / "d12.mp4",
            "-o", out, "--size", "256", "--max-frames", "20")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["frames"] == 20 and summary["height"] == 256 and summary["audio"]
    assert out.is_file() and out.stat().st_size > 1000


def test_cli_bad_references(shared_data, tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(blank)
    drv = shared_data / "clips" / "d12.mp4"
    r = cli("reenact", blank, drv, "-o", tmp_path / "o.mp4", "--max-frames", "5")
    assert r.returncode == 4 and last_line(r).startswith(f"error: {blank}: ") and "face" in last_line(r)
    assert not (tmp_path / "o.mp4").exists()
    r = cli("reenact", tmp_path / "missing.jpg", drv, "-o", tmp_path / "o.mp4")
    assert r.returncode == 4 and "not found" in last_line(r)
    r = cli("reenact", shared_data / "portraits" / "s1.jpg", drv, "-o", tmp_path / "o.avi")
    assert r.returncode == 2 and ".mp4" in last_line(r)
    own = tmp_path / "drive.mp4"                       # the output named as the driving video
    own.write_bytes(drv.read_bytes())
    r = cli("reenact", shared_data / "portraits" / "s1.jpg", own, "-o", own)
    assert r.returncode == 2 and "overwrite" in last_line(r) and own.read_bytes() == drv.read_bytes()
    # a tiny face: a portrait shrunk to 36 px (too small to detect or to animate)
    small = tmp_path / "tiny.png"
    Image.open(shared_data / "portraits" / "s1.jpg").convert("RGB").resize((36, 36)).save(small)
    r = cli("reenact", small, drv, "-o", tmp_path / "o.mp4", "--max-frames", "5")
    assert r.returncode == 4 and last_line(r).startswith("error: ") and "face" in last_line(r)
    assert not (tmp_path / "o.mp4").exists()


def test_two_faces_pick_one(shared_data, tmp_path):
    """Two portraits side by side: the largest/central face (or --face-index) is animated."""
    from PIL import Image

    a = Image.open(shared_data / "portraits" / "s1.jpg").convert("RGB").resize((256, 256))
    b = Image.open(shared_data / "portraits" / "s2.jpg").convert("RGB").resize((256, 256))
    both = Image.new("RGB", (512, 256)); both.paste(a, (0, 0)); both.paste(b, (256, 0))
    both.save(tmp_path / "two.png")
    r = cli("reenact", tmp_path / "two.png", shared_data / "clips" / "d12.mp4", "-o", tmp_path / "two.mp4",
            "--max-frames", "8", "--face-index", "1", "--no-audio")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "two.mp4").is_file()


def test_bench_dispatch_errors():
    r = cli("bench", "nonsense")
    assert r.returncode == 2 and "unknown bench target" in last_line(r)


def test_bench_render_quick(shared_data, tmp_path):
    out = tmp_path / "bench.json"
    hist = tmp_path / "hist.jsonl"
    r = cli("bench", "render", "--sizes", "128", "--frames", "12", "--out", out, "--no-doc", "--history", hist)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(out.read_text())
    row = rec["rows"][0]
    assert row["size"] == 128 and row["frames"] == 12
    assert row["render_ms"] > 0 and row["floor_ms"] > 0 and row["ratio"] > 0 and row["peak_mb"] > 0
    assert len(hist.read_text().splitlines()) == 1


def test_bench_doc_sections_and_history(tmp_path):
    """Each target owns its section of the doc; re-running replaces it; history only appends."""
    from echo_cli.bench.common import append_history, markdown_table, update_doc_section

    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nintro\n")
    update_doc_section(doc, "render", "## Render\nold")
    update_doc_section(doc, "generate", "## Generate\nnumbers")
    update_doc_section(doc, "render", "## Render\nnew")
    text = doc.read_text()
    assert text.startswith("# Performance\n\nintro") and "new" in text and "old" not in text
    assert text.count("<!-- bench:render -->") == 1 and "## Generate\nnumbers" in text
    hist = tmp_path / "h.jsonl"
    append_history({"a": 1}, hist); append_history({"a": 2}, hist)
    assert [json.loads(l)["a"] for l in hist.read_text().splitlines()] == [1, 2]
    table = markdown_table([{"x": 1, "y": 2.345}], [("x", "X"), ("y", "Y")])
    assert table.splitlines() == ["| X | Y |", "|---|---|", "| 1 | 2.35 |"]


def test_video_reference_that_fades_in_takes_its_first_face(shared_data, tmp_path):
    """A video that fades in from black has no face in frame 0: as a reference (render's
    avatar.video, reenact's REFERENCE) the first frame with a face is taken, with a warning;
    an explicit --reference-frame on a faceless frame is an error naming the file and frame."""
    from media_factory import face_clip

    fade = face_clip(tmp_path / "fade.mp4", 2.0, "clips/d12.mp4", vf="fade=t=in:st=0:d=0.5")
    drv = shared_data / "clips" / "d11.mp4"
    r = cli("reenact", fade, drv, "-o", tmp_path / "o.mp4", "--max-frames", "5", "--size", "128")
    assert r.returncode == 0, r.stderr
    assert "no face in frame 0; the reference portrait is frame" in r.stderr
    import re

    frame = int(re.search(r"the reference portrait is frame (\d+)", r.stderr).group(1))
    assert frame >= 10          # the end of the 0.5 s fade, not its first dim frame with a face
    r = cli("reenact", "--reference-frame", "0", fade, "-o", tmp_path / "p.mp4", "--max-frames", "5")
    assert r.returncode == 4 and last_line(r).startswith(f"error: {fade}: no face found in frame 0 of the video")
    assert not (tmp_path / "p.mp4").exists()
    black = face_clip(tmp_path / "black.mp4", 1.0, "clips/d12.mp4", vf="drawbox=x=0:y=0:w=iw:h=ih:c=black:t=fill")
    r = cli("reenact", black, drv, "-o", tmp_path / "q.mp4", "--max-frames", "5")
    assert r.returncode == 4 and f"error: {black}: no face in frames 0-" in last_line(r)


def test_slow_motion_driving_clip_is_rendered_at_60_fps(shared_data, tmp_path):
    from media_factory import face_clip

    fast = face_clip(tmp_path / "fast.mp4", 0.5, "clips/d12.mp4", r=240)
    r = cli("reenact", shared_data / "portraits" / "s1.jpg", fast, "-o", tmp_path / "o.mp4", "--size", "128",
            "--no-audio")
    assert r.returncode == 0 and "240 fps; the output is 60 fps" in r.stderr
    from echo_cli.media.probe import probe

    info = probe(tmp_path / "o.mp4")
    assert info.fps == pytest.approx(60.0) and abs(info.n_frames - 30) <= 1      # not 120


def test_avatar_video_whose_face_appears_late_renders(tmp_path):
    """An avatar video black for its first 6 of 8 s: the portrait is the first frame with a
    face (it failed: "no face found in 75% of the frames" from tracking the whole video)."""
    from media_factory import dialogue_yaml, ffmpeg, need_shared, speech_clip, srt

    from echo_cli.api.render import render

    late = tmp_path / "late.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=black:size=512x512:rate=25:d=6", "-i", need_shared() / "clips" / "d12.mp4",
           "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0,format=yuv420p[v]", "-map", "[v]", "-t", "8",
           "-c:v", "libx264", "-preset", "ultrafast", late)
    wav = speech_clip(tmp_path / "talk.wav", seconds=2.0)
    spec = dialogue_yaml(tmp_path / "d.yaml", video=late, audio=wav, transcript=srt(tmp_path / "t.srt"))
    res = render(spec, overrides={"size": 128})
    assert res["frames"] == 50
