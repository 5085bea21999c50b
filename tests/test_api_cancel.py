"""request_cancel(): a Python caller stops a render from another thread; the next render runs."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from media_factory import dialogue_yaml, portrait, speech_clip, srt, valid_video


def test_request_cancel_stops_this_render_only(tmp_path):
    from echo_cli import cancel
    from echo_cli.api.render import render, request_cancel
    from echo_cli.errors import Interrupted

    img = tmp_path / "face.png"
    portrait().save(img)
    wav = speech_clip(tmp_path / "talk.wav", seconds=2.0)
    spec = dialogue_yaml(tmp_path / "d.yaml", image=img, audio=wav, transcript=srt(tmp_path / "t.srt"))
    frames_seen = []

    @contextmanager
    def progress(total=None, desc=""):
        class Bar:
            def advance(self, n=1):
                frames_seen.append(n)
                if len(frames_seen) == 3:       # mid-encode, from another thread, as a GUI would
                    t = threading.Thread(target=request_cancel)
                    t.start()
                    t.join()

            def update(self, completed):
                self.advance(0)

            def set_total(self, total):
                pass
        yield Bar()

    with pytest.raises(Interrupted, match="request_cancel"):
        render(spec, overrides={"size": 128}, progress=progress)
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]     # no temp files left
    assert not cancel.requested()                   # the request ended with the render it stopped
    res = render(spec, overrides={"size": 128})     # the next one is not cancelled before it starts
    assert valid_video(tmp_path / "out.mp4") and res["frames"] == 50


def test_a_signal_after_the_output_is_in_place_lets_the_render_finish(tmp_path):
    """SIGTERM landing just after the video was renamed into place: the run finishes (exit 0)
    instead of reporting an interruption beside a whole file (it said exit 130, "no partial
    output was left", and the output was there)."""
    import subprocess
    import sys

    img = tmp_path / "face.png"
    portrait().save(img)
    wav = speech_clip(tmp_path / "talk.wav", seconds=1.0)
    spec = dialogue_yaml(tmp_path / "d.yaml", image=img, audio=wav, transcript=srt(tmp_path / "t.srt"))
    script = (
        "import os, signal, sys\n"
        "from echo_cli import cancel\n"
        "done = cancel.finishing\n"
        "def finishing():\n"
        "    done()\n"
        "    os.kill(os.getpid(), signal.SIGTERM)      # delivered at the next bytecode\n"
        "cancel.finishing = finishing\n"
        "from echo_cli.cli.main import run\n"
        f"run(['--quiet', 'render', {str(spec)!r}, '--size', '128'])\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert valid_video(tmp_path / "out.mp4")
