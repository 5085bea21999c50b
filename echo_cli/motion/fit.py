"""Fit the shipped motion space on the real media of ../shared/data and save it.

    python -m echo_cli.motion.fit [--data ../shared/data] [-o echo_cli/checkpoints/motion_space.safetensors]

Tracks every clip of talking/ and clips/ with preprocess.face.track_face (faces are
resampled to at most 15 fps to keep the fit fast; the bases do not need every frame), fits
MotionSpace, measures the encode -> decode round trip on the five speech clips of clips/
and stores those numbers in the checkpoint's JSON config (metrics).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.motion.space import DEFAULT_PATH, MotionSpace

logger = log.get("echo_cli.motion.fit")
SPEECH_CLIPS = ("d6", "d10", "d11", "d12", "d20")


def shared_data() -> Path:
    env = os.environ.get("ECHO_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=shared_data())
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--fps", type=float, default=15.0)
    args = ap.parse_args(argv)
    log.setup(0)
    from echo_cli.errors import EchoError
    from echo_cli.preprocess.face import track_face

    tracks = []
    files = sorted((args.data / "talking").glob("*.mp4")) + sorted((args.data / "clips").glob("*.mp4"))
    for f in files:
        try:
            tr = track_face(f, fps=args.fps)
        except EchoError as e:
            logger.warning("skipped %s: %s", f.name, e.one_line())
            continue
        tracks.append(tr)
        logger.info("tracked %s: %d frames", f.name, tr.n_frames)
    space = MotionSpace.fit(tracks)
    metrics = {}
    for tr in tracks:
        name = Path(tr.source).stem
        if name in SPEECH_CLIPS:
            metrics[name] = {k: round(v, 5) for k, v in
                             space.roundtrip_error(tr.landmarks, tr.width, tr.height).items()}
    space.config = replace(space.config, metrics={"roundtrip_iod": metrics})
    space.save(args.out)
    logger.info("saved %s (D=%d): %s", args.out, space.dim, metrics)


if __name__ == "__main__":
    main()
