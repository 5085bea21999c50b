"""media.probe memoises per (path, size, mtime, inode) within a process (speed round 3):
the same file is read once, a replaced or edited file is probed again."""
from __future__ import annotations

import os
import shutil

from echo_cli.media.probe import probe


def test_probe_is_memoised_and_sees_a_replaced_file(shared_data, tmp_path):
    p = tmp_path / "input.mp4"
    shutil.copy(shared_data / "clips" / "s13.mp4", p)
    first = probe(p)
    assert first.has_video and probe(p) is first                 # answered from the memo
    shutil.copy(shared_data / "audio" / "RD_Radio34_002.wav", tmp_path / "new.tmp")
    os.replace(tmp_path / "new.tmp", p)                           # same name, other content
    again = probe(p)
    assert not again.has_video and again.has_audio
    assert abs(again.duration - 8.0) < 0.05
