"""bench.memory samples a real process tree: RSS and PSS peaks of a child that holds
~300 MB and spawns ffmpeg (fork + exec) several times."""
from __future__ import annotations

import sys

from echo_cli.bench.memory import run_measured

SCRIPT = """
import numpy as np, time
from echo_cli.media import ffmpeg as ff
big = np.ones(300 * 2 ** 20 // 8)
for _ in range(5):
    ff.run(ff.base_args() + ["-f", "lavfi", "-i", "anullsrc", "-t", "0.2", "-f", "null", "-"], what="x")
time.sleep(0.5)
print("ok")
"""


def test_run_measured_reports_rss_and_pss_of_the_tree():
    st = run_measured([sys.executable, "-c", SCRIPT], timeout=120, interval=0.05)
    assert st.rc == 0 and st.stdout.strip() == "ok" and not st.timed_out
    assert st.peak_pss_mb > 300 and st.peak_mb > 300
    # PSS never counts a page twice, so it cannot exceed the RSS sum (small sampling slack)
    assert st.peak_pss_mb <= st.peak_mb * 1.05
    assert st.max_child_rss_mb > 300 and st.samples > 5
