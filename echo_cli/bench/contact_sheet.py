"""Cross-reenactment contact sheet: several portraits driven by several real clips.

    python -m echo_cli.bench.contact_sheet [-o docs/img/cross_reenactment.png]
        [--portraits s1 d8 s30 art_0] [--clips d12 d6 d10] [--times 1.2 2.6]

Top row: the driving frames. Each following row: a portrait (first column, as given) and
the same portrait driven by each clip at those times (motion retargeted relative to the
clip's first frame, decoded on the portrait's own neutral face). Also prints an identity
measure per (portrait, clip): the robust neutral face (motion.space.estimate_neutral) of
the driven portrait's pose-free landmarks, as the mean distance over the 468 mesh points to
the portrait's own face and to the driver's neutral face, in inter-ocular units; identity
is kept when the first is much smaller than the second.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.bench.selfcheck import shared_data

logger = log.get("echo_cli.bench.contact_sheet")


def _thumb(img: np.ndarray, size: int) -> np.ndarray:
    import cv2
    h, w = img.shape[:2]
    s = size / max(h, w)
    t = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    out = np.full((size, size, 3), 255, np.uint8)
    y, x = (size - t.shape[0]) // 2, (size - t.shape[1]) // 2
    out[y:y + t.shape[0], x:x + t.shape[1]] = t
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="cross-reenactment contact sheet")
    ap.add_argument("--data", type=Path, default=shared_data())
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/img/cross_reenactment.png"))
    ap.add_argument("--portraits", nargs="*", default=["s1", "d8", "s30", "art_0"])
    ap.add_argument("--clips", nargs="*", default=["d12", "d6", "d10"])
    ap.add_argument("--times", nargs="*", type=float, default=[1.2, 2.6])
    ap.add_argument("--thumb", type=int, default=160)
    args = ap.parse_args(argv)
    log.setup(0)
    import cv2

    from echo_cli.api.reenact import ReenactOptions, drive_landmarks
    from echo_cli.media.video_io import iter_frames
    from echo_cli.motion.space import default_space
    from echo_cli.preprocess.face import track_face
    from echo_cli.render.base import load_reference_image
    from echo_cli.render.warp import MeshWarpRenderer

    space = default_space()
    fps = 25.0
    n = int(max(args.times) * fps) + 1
    idx = [int(t * fps) for t in args.times]
    drivers = {}
    for c in args.clips:
        frames = np.stack(list(iter_frames(args.data / "clips" / f"{c}.mp4", fps=fps, max_frames=n)))
        drivers[c] = (frames[idx], track_face(frames, fps=fps))
    T = args.thumb
    blank = np.full((T, T, 3), 255, np.uint8)
    rows = [np.concatenate([blank] + [_thumb(f, T) for c in args.clips for f in drivers[c][0]], 1)]
    identity = {}
    for p in args.portraits:
        path = next((args.data / "portraits").glob(f"{p}.*"))
        img = load_reference_image(path)
        if max(img.shape[:2]) > 1024:
            k = 1024 / max(img.shape[:2])
            img = cv2.resize(img, (int(img.shape[1] * k) // 2 * 2, int(img.shape[0] * k) // 2 * 2),
                             interpolation=cv2.INTER_AREA)
        lm = track_face(img).landmarks[0]
        r = MeshWarpRenderer(); r.prepare(img, lm)
        cells = [_thumb(img, T)]
        for c in args.clips:
            track = drivers[c][1]
            tl = drive_landmarks(lm, (img.shape[1], img.shape[0]), track, ReenactOptions(), space)
            cells += [_thumb(r.render(tl[i]), T) for i in idx]
            co, *_ = space.align(tl)
            cr, *_ = space.align(lm[None])
            cd, *_ = space.align(track.landmarks)
            n_out, n_drv = space.estimate_neutral(co), space.estimate_neutral(cd)
            dist = lambda a, b: round(float(np.linalg.norm(a[:468] - b[:468], axis=-1).mean()), 4)
            identity[f"{p}<-{c}"] = {"to_portrait": dist(n_out, cr[0]), "to_driver": dist(n_out, n_drv),
                                     "portrait_vs_driver": dist(cr[0], n_drv)}
        rows.append(np.concatenate(cells, 1))
    sheet = np.concatenate(rows, 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    from echo_cli.io_atomic import write_bytes
    write_bytes(args.out, buf.tobytes())
    import os
    os.chmod(args.out, 0o644)
    print(json.dumps(identity, indent=1))
    return identity


if __name__ == "__main__":
    main()
