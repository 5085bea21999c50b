"""Which audio features predict the mouth: the shipped ridge mouth prior's own fit
(train/mouth_ridge.py, penalty by leave-one-speaker-out CV) on each feature set, scored
like the lip-sync evaluation. The measurement behind `audio_input="whisper_mid"`.

    python -m echo_cli.eval.audio_layers [--sets final,2,3,2+3] [--ranks 256,512] [--json F]

Feature sets (joined with "+"): "final" = the encoder output from CTranslate2 (what
audio_input "whisper" reads), 0..6 = the torch encoder's hidden state after that many
blocks (0: the convolution stem with positions; features/whisper_layers.py), "mel" = log-mel.
Each part is normalised per column on the training clips, then projected on `rank`
principal directions, +-`context` frames, as the shipped prior is.
Columns: the CV score on the training speakers (what picks lambda, and what a choice of
features may be judged on) and the score on the held-out speakers (reagan, d6, lrd; never
used for any choice), frame-weighted, both the evaluation's measure: decoded mouth
opening of the prior alone vs the real one, best lag |L| <= 5 (stage1.prior_scorer).
Training clips get the same audio/video re-alignment as stage 1.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from echo_cli import log

LOG = log.get("echo_cli.eval.audio_layers")
DEFAULT_SETS = ("final", "1", "2", "3", "4", "5", "6", "2+3", "mel", "2+3+mel")


def hidden_states(c, data_dir, encoder) -> np.ndarray:
    """(T, 7, 512): the torch encoder's stem and block outputs for clip c, at its frames."""
    from faster_whisper.feature_extractor import FeatureExtractor

    from echo_cli.features.audio import encoder_rows, frame_centres, read_audio
    from echo_cli.train import data as D

    rel = next(r for r in D.SPEECH_CLIPS if r.rsplit("/", 1)[-1].rsplit(".", 1)[0] == c.name)
    rows = encoder_rows(read_audio(data_dir / rel), frame_centres(c.n_frames, D.FPS), FeatureExtractor(),
                        lambda m: np.concatenate(encoder(m), 1), 7 * 512)
    return rows.reshape(c.n_frames, 7, 512)


def _part(c, hid: np.ndarray, part: str) -> np.ndarray:
    if part == "final":
        return c.whisper
    if part == "mel":
        return c.mel
    return hid[:, int(part)]


def _normed(x: np.ndarray, norm: str) -> np.ndarray:
    """"clip": each clip's features centred and scaled by its own statistics first (cepstral
    mean/variance normalisation, the classic remedy for speaker and channel differences)."""
    if norm == "clip":
        return (x - x.mean(0)) / (x.std(0) + 1e-4)
    return x


def run(sets=DEFAULT_SETS, ranks=(256, 512), context: int = 3, data=None, norms=("global",)) -> list[dict]:
    from echo_cli.features.whisper_layers import load_encoder
    from echo_cli.model.generator import layout_from_motion_space
    from echo_cli.motion.space import default_space
    from echo_cli.train import data as D
    from echo_cli.train import mouth_ridge
    from echo_cli.train.lipsync_eval import fit_linear_baseline
    from echo_cli.train.stage1 import fit_stats, prior_scorer

    space = default_space()
    data_dir = D.shared_data_dir() if data is None else data
    mouth = slice(*layout_from_motion_space(space)["regions"]["mouth"])
    clips = D.load_clips(data_dir, space=space)
    encoder = load_encoder(6)
    hid = {c.name: hidden_states(c, data_dir, encoder) for c in clips}
    train, val = D.split(clips)
    # stage 1's re-alignment (data.align_speech), applied to the hidden states as well
    w = fit_linear_baseline(train, space)
    aligned = []
    for c in train:
        lag = D.av_offset(c, space, w)
        if lag:
            n = c.n_frames - abs(lag)
            hid[c.name] = hid[c.name][lag:lag + n] if lag > 0 else hid[c.name][:n]
        aligned.append(D.shift_clip(c, lag))
    train = aligned
    stats = fit_stats(train, "mel")                  # motion statistics (the audio ones are per set)
    t_score = prior_scorer(train, stats, mouth, space)
    v_score = prior_scorer(val, stats, mouth, space)
    target = lambda c: (c.motion[:, mouth] - stats["motion_mean"][mouth]) / stats["motion_std"][mouth]  # noqa: E731
    rows = []
    for spec, nm in [(s_, n_) for s_ in sets for n_ in norms]:
        parts = spec.split("+")
        feat = lambda c: _normed(np.concatenate([_part(c, hid[c.name], p) for p in parts], 1), nm)  # noqa: E731
        allf = np.concatenate([feat(c) for c in train])
        mu, sd = allf.mean(0), allf.std(0) + 1e-4
        del allf
        norm = lambda c: ((feat(c) - mu) / sd).astype(np.float32)                     # noqa: E731
        for rank in ranks:
            rp = mouth_ridge.fit([norm(c) for c in train], [target(c) for c in train],
                                 [c.speaker for c in train], [c.name for c in train],
                                 rank=min(rank, len(mu)), context=context, score=t_score)
            held = {c.name: v_score(i, mouth_ridge.apply(rp, norm(c), context)) for i, c in enumerate(val)}
            n = sum(c.n_frames for c in val)
            row = {"features": spec + ("" if nm == "global" else f" ({nm} norm)"), "width": int(len(mu)), "rank": min(rank, len(mu)), "lambda": rp.lam,
                   "cv_train_speakers": round(rp.cv[rp.lam], 3),
                   "held_out": round(sum(held[c.name] * c.n_frames for c in val) / n, 3),
                   **{k: round(v, 3) for k, v in held.items()}}
            LOG.info("%s", row)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    clips = [k for k in rows[0] if k not in ("features", "width", "rank", "lambda", "cv_train_speakers", "held_out")]
    out = ["| features | width | rank | lambda | CV, training speakers | held-out (frame-weighted) | "
           + " | ".join(clips) + " |", "|" + "---|" * (6 + len(clips))]
    for r in rows:
        out.append(f"| {r['features']} | {r['width']} | {r['rank']} | {r['lambda']:g} | {r['cv_train_speakers']} | "
                   f"{r['held_out']} | " + " | ".join(str(r[c]) for c in clips) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m echo_cli.eval.audio_layers", description=__doc__.split("\n")[0])
    p.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma list of feature sets (see above)")
    p.add_argument("--ranks", default="256,512")
    p.add_argument("--context", type=int, default=3)
    p.add_argument("--norms", default="global", help="comma list: global (training statistics) and/or clip")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    log.setup(0)
    rows = run(tuple(a.sets.split(",")), tuple(int(r) for r in a.ranks.split(",")), a.context,
               norms=tuple(a.norms.split(",")))
    print(markdown(rows))
    if a.json:
        from echo_cli.io_atomic import write_text
        write_text(a.json, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
