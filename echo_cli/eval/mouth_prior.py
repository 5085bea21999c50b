"""The mouth prior on silence, and its calibration: the measurements behind the quiet gate
and `prior_gain` (docs/generator.md "Quiet gate and prior gain").

    python -m echo_cli.eval.mouth_prior CKPT [CKPT ...]          # prior std, silence / speech
    python -m echo_cli.eval.mouth_prior CKPT --calibration       # + least-squares slope (ridge)

Silence: the avatar track of a render, RD_Radio34_002 speech, 12 s of digital silence, the
speech again, 12 s of noise at -60 dBFS. The prior is read where the generator reads it
(`EchoGenerator.condition`, so the gain and the resting mouth of gated frames are in), with
the quiet gate off and on; the ratio is its std over the silent (or noisy) frames over its
std over the speech frames the VAD marks, averaged over the mouth components.
Calibration (ridge priors): per mouth component, the least-squares slope of the training
clips' normalised mouth codes on the ridge's raw in-sample predictions, the clips re-aligned
as stage 1 fitted them (the slope stage 1 records and the recipe packages as prior_gain);
the held-out speakers are never read.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from echo_cli import log

LOG = log.get("echo_cli.eval.mouth_prior")
SPEECH = "audio/RD_Radio34_002.wav"


def silence_track(data) -> tuple[np.ndarray, np.ndarray]:
    """(wave, segment of each 25-fps frame: 0 speech, 1 digital silence, 2 faint noise)."""
    from echo_cli.features.audio import read_audio
    from echo_cli.schema import SAMPLE_RATE

    speech = np.asarray(read_audio(data / SPEECH), np.float32).reshape(-1)
    quiet = np.zeros(12 * SAMPLE_RATE, np.float32)
    noise = (np.random.default_rng(0).standard_normal(12 * SAMPLE_RATE) * 1e-3).astype(np.float32)
    parts = [speech, quiet, speech, noise]
    seg = np.concatenate([np.full(int(round(len(p) * 25 / SAMPLE_RATE)), label)
                          for p, label in zip(parts, (0, 1, 0, 2))])
    return np.concatenate(parts), seg


def prior_on_track(gen, feats, n: int) -> np.ndarray:
    """(n, n_mouth) the mouth prior `gen` conditions its mouth token on, as a render feeds it."""
    import torch

    from echo_cli.model.audio_encoder import audio_matrix

    audio, quiet = gen.gate_audio(audio_matrix(feats, gen.cfg.audio_input), feats.energy)
    with torch.no_grad():
        cond = gen.condition(n, torch.from_numpy(np.asarray(audio, np.float32)[:n])[None],
                             torch.zeros(1, gen.cfg.motion_dim),
                             quiet=None if quiet is None else torch.from_numpy(quiet[:n])[None])
    return cond["mouth_prior"][0].numpy()


def silence_ratios(path: str, data) -> list[dict]:
    from echo_cli.features.audio import audio_features
    from echo_cli.model.audio_encoder import feature_request
    from echo_cli.model.checkpoint import load_generator

    wave, seg = silence_track(data)
    gen, _ = load_generator(path)
    feats = audio_features(wave, 25.0, n_frames=len(seg), **feature_request(gen.cfg.audio_input))
    gen.eval()
    rows = []
    for gate in (False, True):
        gen.cfg = dataclasses.replace(gen.cfg, quiet_gate=gate)
        p = prior_on_track(gen, feats, len(seg))
        sp = p[(seg == 0) & np.asarray(feats.vad, bool)].std(0).mean()
        rows.append({"checkpoint": path, "prior": gen.cfg.mouth_prior_kind, "quiet_gate": gate,
                     "prior_gain": gen.cfg.prior_gain, "speech_std": round(float(sp), 4),
                     "silence_over_speech": round(float(p[seg == 1].std(0).mean() / sp), 3),
                     "noise_over_speech": round(float(p[seg == 2].std(0).mean() / sp), 3)})
    return rows


def calibration(path: str, data) -> dict:
    """Least-squares slope of the training clips' mouth codes on the ridge's raw predictions."""
    import torch

    from echo_cli.model.checkpoint import load_generator
    from echo_cli.motion.space import default_space
    from echo_cli.train import data as D

    gen, conf = load_generator(path)
    if gen.cfg.mouth_prior_kind != "ridge":
        return {"checkpoint": path, "note": "not a ridge prior"}
    ms = slice(*gen.cfg.regions["mouth"])
    mean, std = gen.motion_mean.numpy()[ms], gen.motion_std.numpy()[ms]
    kind = gen.cfg.audio_input
    space = default_space()
    # the training clips as stage 1 fitted the ridge on them: audio/video re-aligned, then
    # shifted again where its re-alignment pass did (recorded in the checkpoint)
    extra = (((conf or {}).get("training") or {}).get("ridge_prior") or {}).get("realigned") or {}
    clips = [D.shift_clip(c, int(extra.get(c.name, 0)))
             for c in D.align_speech([c for c in D.load_clips(data, space=space)
                                      if c.speaker not in D.HELD_OUT and c.has_audio(kind)], space)]
    with torch.no_grad():
        pred = np.concatenate([gen.audio_enc.ridge_mouth(torch.from_numpy(c.audio(kind).astype(np.float32))[None])[0].numpy()
                               for c in clips])
    tgt = np.concatenate([(c.motion[:, ms] - mean) / std for c in clips])
    pc, tc = pred - pred.mean(0), tgt - tgt.mean(0)
    slope = (pc * tc).sum(0) / (pc ** 2).sum(0)
    return {"checkpoint": path, "training_clips": len(clips), "frames": int(len(pred)),
            "slope_per_component": [round(float(x), 2) for x in slope], "slope_mean": round(float(slope.mean()), 2)}


def main(argv: list[str] | None = None) -> None:
    from echo_cli.train.data import shared_data_dir

    p = argparse.ArgumentParser(prog="python -m echo_cli.eval.mouth_prior", description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--calibration", action="store_true", help="also the ridge's least-squares slope")
    p.add_argument("--data", default=None, help="../shared/data by default")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    log.setup(0)
    data = shared_data_dir() if a.data is None else Path(a.data)
    res = {"silence": [r for c in a.checkpoints for r in silence_ratios(c, data)]}
    if a.calibration:
        res["calibration"] = [calibration(c, data) for c in a.checkpoints]
    for r in res["silence"]:
        print(r)
    for r in res.get("calibration", []):
        print(r)
    if a.json:
        from echo_cli.io_atomic import write_text
        write_text(a.json, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
