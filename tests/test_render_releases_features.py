"""A render's frame loop holds no track's Whisper features: they go to a temporary row
file after preprocessing (api.animate.spill_avatar_whisper). A stale reference to them —
found once in run_preprocess's frame, kept alive by a library during a cold render — held
184 MB for the whole frame loop of a 60-minute render (docs/performance_e2e.md "## Memory").
Checked on a real cold render (empty cache) of looped real media from ../shared/data, in
its own process, by counting live AudioFeatures that still carry Whisper rows at the first
rendered frame."""
from __future__ import annotations

import os
import subprocess
import sys

PROBE = r"""
import gc, sys
from echo_cli.render import warp
from echo_cli.schema import AudioFeatures
orig = warp.MeshWarpRenderer.render
seen = []
def hooked(self, lm):
    if not seen:
        gc.collect()
        seen.append(sum(1 for o in gc.get_objects() if isinstance(o, AudioFeatures) and o.whisper is not None))
    return orig(self, lm)
warp.MeshWarpRenderer.render = hooked
from echo_cli.api.render import render
render(sys.argv[1], output=sys.argv[2], preset="draft", overrides={"size": 128})
print("LIVE", seen[0])
"""


def test_frame_loop_holds_no_whisper_features(shared_data, tmp_path):
    from echo_cli.bench.longform import build_dialogue

    spec = build_dialogue(0.25, tmp_path / "dialogue", data=shared_data, user="audio", transcript="file")
    env = {**os.environ, "ECHO_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", PROBE, str(spec), str(tmp_path / "out.mp4")],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    live = [line for line in r.stdout.splitlines() if line.startswith("LIVE ")]
    assert live == ["LIVE 0"], (r.stdout[-500:], r.stderr[-2000:])
    assert (tmp_path / "out.mp4").is_file()
