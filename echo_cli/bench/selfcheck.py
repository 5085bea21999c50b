"""Self-reenactment check of the motion space + renderer on real speech clips.

    python -m echo_cli.bench.selfcheck [--clips d6 d10 d11 d12 d20] [--max-frames N] [--out docs/...json]

For each clip: reference = its first frame, driving = the clip itself (echo-cli reenact
--reference-frame 0). The rendered MP4 is decoded and tracked again with MediaPipe, then
compared with the driving clip's own track:
  - landmark error: mean 2-D point distance / inter-ocular distance of the driving face
    (all 478 points; also lips only), per frame, averaged;
  - mouth-opening correlation: Pearson r between the inner-lip-gap series of the rendered
    and the driving faces (motion.measures.mouth_opening);
  - SSIM and PSNR on the face crop (square box around the driving landmarks, 256 px, gray
    for SSIM, RGB for PSNR); the background is left out because the driving body moves
    while the rendered one stays still by design.
Acceptance (issue 5): error <= 0.03, r >= 0.9 on d6, d10, d11, d12, d20.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from echo_cli import log

logger = log.get("echo_cli.bench.selfcheck")
SPEECH_CLIPS = ("d6", "d10", "d11", "d12", "d20")


def shared_data() -> Path:
    env = os.environ.get("ECHO_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def face_crop_quality(rendered_path: Path, driving_path: Path, boxes: np.ndarray, fps: float,
                      n: int, size: int = 256) -> tuple[float, float]:
    """Mean SSIM (gray) and PSNR (RGB, dB) over the face crops of the first n frames."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from echo_cli.media.video_io import iter_frames
    from echo_cli.preprocess.crop import crop_image

    ss, ps = [], []
    for i, (a, b) in enumerate(zip(iter_frames(rendered_path, fps=fps, max_frames=n),
                                   iter_frames(driving_path, fps=fps, max_frames=n))):
        ca, cb = crop_image(a, boxes[i], size), crop_image(b, boxes[i], size)
        ga = ca.astype(np.float32).mean(2); gb = cb.astype(np.float32).mean(2)
        ss.append(structural_similarity(ga, gb, data_range=255.0))
        ps.append(peak_signal_noise_ratio(cb, ca, data_range=255))
    return float(np.mean(ss)), float(np.mean(ps))


def check_clip(path: Path, workdir: Path, max_frames: int | None = None) -> dict:
    from echo_cli.api.reenact import ReenactOptions, reenact
    from echo_cli.media.probe import probe
    from echo_cli.media.video_io import iter_frames
    from echo_cli.motion import measures
    from echo_cli.motion import regions as R
    from echo_cli.preprocess.face import track_face

    fps = float(probe(path).fps or 25.0)
    out = workdir / f"self_{path.stem}.mp4"
    res = reenact(None, path, out, ReenactOptions(reference_frame=0, max_frames=max_frames, audio=False),
                  keep_landmarks=True)
    n = res.frames
    if max_frames:
        drv = track_face(np.stack(list(iter_frames(path, fps=fps, max_frames=n))), fps=fps)
    else:
        drv = track_face(path, fps=fps)
    got = track_face(out, fps=fps)
    n = min(n, drv.n_frames, got.n_frames)
    sx = drv.width / res.width; sy = drv.height / res.height       # output may be resized
    g = got.landmarks[:n].copy(); g[..., 0] *= sx; g[..., 1] *= sy
    d = drv.landmarks[:n]
    ok = drv.detected[:n] & got.detected[:n]
    err = measures.landmark_error(g[ok], d[ok])
    err_lips = measures.landmark_error(g[ok], d[ok], R.lips_all())
    mo_r = float(np.corrcoef(measures.mouth_opening(g[ok]), measures.mouth_opening(d[ok]))[0, 1])
    # how far the renderer's own input (driven landmarks) is from the driving track: the
    # motion-space part of the error (the rest is renderer + re-detection)
    tl = res.target_landmarks[:n].copy(); tl[..., 0] *= sx; tl[..., 1] *= sy
    err_in = measures.landmark_error(tl[ok], d[ok])
    ssim, psnr = face_crop_quality(out, path, drv.boxes, fps, n)
    row = {"clip": path.stem, "frames": int(n), "size": f"{res.width}x{res.height}",
           "lm_err_iod": round(float(err.mean()), 4), "lm_err_lips_iod": round(float(err_lips.mean()), 4),
           "lm_err_input_iod": round(float(err_in.mean()), 4),
           "mouth_open_r": round(mo_r, 3), "ssim_face": round(ssim, 3), "psnr_face_db": round(psnr, 2),
           "render_ms_per_frame": round(res.ms_per_frame, 1)}
    logger.info("%s", row)
    return row


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description="self-reenactment check (see module docstring)")
    ap.add_argument("--data", type=Path, default=shared_data())
    ap.add_argument("--clips", nargs="*", default=list(SPEECH_CLIPS))
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    log.setup(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="echo-selfcheck-") as td:
        for c in args.clips:
            rows.append(check_clip(args.data / "clips" / f"{c}.mp4", Path(td), args.max_frames))
    if args.out:
        from echo_cli.io_atomic import write_text
        write_text(args.out, json.dumps(rows, indent=2) + "\n")
    print("| clip | frames | size | landmark err / IOD | lips err / IOD | driven-input err / IOD | mouth-opening r | SSIM face | PSNR face (dB) | render+encode ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['frames']} | {r['size']} | {r['lm_err_iod']:.4f} | {r['lm_err_lips_iod']:.4f} | "
              f"{r['lm_err_input_iod']:.4f} | {r['mouth_open_r']:.3f} | {r['ssim_face']:.3f} | {r['psnr_face_db']:.2f} | "
              f"{r['render_ms_per_frame']:.1f} |")
    return rows


if __name__ == "__main__":
    main()
