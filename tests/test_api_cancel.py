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
