"""Lip-sync evaluation of a stage-1 generator on held-out real speakers.

    python -m echo_cli.train.lipsync_eval RUN/model.safetensors [MORE.safetensors ...] [--json out.json]

For each held-out clip (train.data.HELD_OUT speakers) the generator makes the motion for the
clip's own audio (streaming engine, default render preset, seed 0). Mouth opening is
measured with MotionSpace's measure (motion.measures.mouth_opening) on *decoded landmarks*
(MotionSpace.decode on the clip's neutral), for the generated motion and for the real
clip's encoded motion alike (so both sides go through the same round trip). Reported:
  corr     Pearson correlation of generated vs real mouth opening at the best lag |L| <= 5
  lag      that lag in frames (positive: generated is late)
  env      corr(generated mouth, audio energy envelope) / corr(real mouth, envelope)
  seams    frame-to-frame motion jitter at chunk seams / inside chunks
  prior    (models with a mouth prior) the prior alone: its deterministic audio -> mouth-code
           estimate decoded with every other component at its mean, same measure
The linear baseline is ridge regression from 8 log band energies (+-2 frames of context)
to mouth opening, fitted on the training clips, evaluated the same way.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from echo_cli import log

LOG = log.get("echo_cli.train.lipsync_eval")
MAX_LAG = 5


def mouth_from_motion(space, motion: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    from echo_cli.motion import measures

    return measures.mouth_opening(space.decode(motion, neutral))


def band_features(mel: np.ndarray, n_bands: int = 8, context: int = 2) -> np.ndarray:
    bands = np.stack([b.mean(1) for b in np.array_split(mel, n_bands, axis=1)], 1)      # (T, 8)
    pad = np.pad(bands, ((context, context), (0, 0)), mode="edge")
    T = len(bands)
    feats = [pad[i:i + T] for i in range(2 * context + 1)]
    return np.concatenate(feats + [np.ones((T, 1))], 1)


def fit_linear_baseline(train, space, ridge: float = 1.0) -> np.ndarray:
    X = np.concatenate([band_features(c.mel) for c in train])
    y = np.concatenate([mouth_from_motion(space, c.motion, c.neutral) for c in train])
    A = X.T @ X + ridge * np.eye(X.shape[1])
    return np.linalg.solve(A, X.T @ y)


def seam_jitter_ratio(motion: np.ndarray, std: np.ndarray, chunk: int, overlap: int) -> float:
    """Mean normalised frame-to-frame change at chunk seams (the cross-faded frames and the
    step into them) over the mean inside chunks."""
    from echo_cli.generate.chunking import plan_chunks

    d = np.linalg.norm(np.diff(motion / std, axis=0), axis=1)        # jitter[t] = |m[t+1] - m[t]|
    seam = np.zeros(len(d), bool)
    for c in plan_chunks(len(motion), chunk, 0, overlap):
        if c.index:
            seam[max(0, c.start - 1): min(len(d), c.start + max(overlap, 1))] = True
    if not seam.any() or seam.all():
        return float("nan")
    return float(d[seam].mean() / d[~seam].mean())


def _tag(path: str, all_paths: list[str]) -> str:
    """Column prefix of a model: its run-stage folder (RUN/stage1/model.safetensors -> stage1) or
    file stem; RUN/stage1 when two models would share one (two runs' stage1 side by side)."""
    def short(p):
        p = Path(p)
        return p.parent.name if p.stem == "model" else p.stem
    if sum(short(p) == short(path) for p in all_paths) > 1 and Path(path).stem == "model":
        return f"{Path(path).parent.parent.name}/{short(path)}"
    return short(path)


def prior_motion(model, audio: np.ndarray) -> np.ndarray | None:
    """(T, D) motion from the model's mouth prior alone (other components at their means),
    or None for a model without one: tells the audio -> lips map apart from the flow."""
    import torch

    if not model.cfg.n_mouth:
        return None
    enc = model.audio_enc
    with torch.inference_mode():
        a = torch.from_numpy(np.asarray(audio, np.float32))[None]
        mp = enc.ridge_mouth(a) if enc.prior_kind == "ridge" else enc.mouth(enc(a))
        z = torch.zeros(a.shape[1], model.cfg.motion_dim)
        z[:, slice(*model.cfg.regions["mouth"])] = mp[0]
        return model.denormalize(z).numpy()


def lively_user(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """A lively stand-in user context f_pu (n, dim): smooth random motion at 3x unit scale,
    changing every ~0.3 s (what an animated user would push through the LCU)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + 16, dim)) * 3.0
    k = np.hanning(9); k /= k.sum()
    x = np.stack([np.convolve(x[:, j], k, mode="same") for j in range(dim)], 1)[8:8 + n]
    return x.astype(np.float32) * 3.0


def evaluate(model_paths: list[str], seeds=(0,), settings=None, clips=None, with_user: bool = False,
             inference: dict | None = None) -> dict:
    """inference: generator inference settings over each checkpoint's own (e.g. prior_blend=0:
    the flow's own lips rather than the ridge prior's, to see what a fusion does to them)."""
    import dataclasses

    import torch

    from echo_cli.config import resolve_settings
    from echo_cli.eval.metrics import best_lag_correlation, pearson
    from echo_cli.generate.engine import generate_all
    from echo_cli.model.checkpoint import load_generator
    from echo_cli.motion.space import default_space
    from echo_cli.train import data as D

    torch.set_num_threads(1)
    space = default_space()
    settings = settings or resolve_settings("default")
    clips = clips or D.load_clips()
    train, val = D.split(clips)
    w = fit_linear_baseline(train, space)
    rows = []
    for c in val:
        real = mouth_from_motion(space, c.motion, c.neutral)
        env = c.energy
        r_env_real = pearson(real, env)
        base = band_features(c.mel) @ w
        b_corr, b_lag = best_lag_correlation(base, real, MAX_LAG)
        row = {"clip": c.name, "frames": c.n_frames, "baseline_corr": round(b_corr, 3), "baseline_lag": b_lag,
               "real_env_corr": round(r_env_real, 3)}
        for mp in model_paths:
            model, conf = load_generator(mp)
            if inference:
                model.cfg = dataclasses.replace(model.cfg, **inference)
            tag = _tag(mp, model_paths)
            audio, quiet = model.gate_audio(c.audio(model.cfg.audio_input), c.energy)
            inp = {"audio": audio, "identity": c.identity, "quiet": quiet}
            corrs, lags, envs, seams = [], [], [], []
            for s in seeds:
                gen = generate_all(model, inp, settings, seed=s)
                mouth = mouth_from_motion(space, gen, c.neutral)
                cr, lg = best_lag_correlation(mouth, real, MAX_LAG)
                corrs.append(cr); lags.append(lg)
                envs.append(pearson(mouth, env) / r_env_real if abs(r_env_real) > 1e-6 else float("nan"))
                seams.append(seam_jitter_ratio(gen, model.motion_std.numpy(), settings.chunk_frames,
                                               settings.overlap))
            if with_user:     # SDCM claim: a lively user context must not move the lips
                gen_u = generate_all(model, {**inp, "user_ctx": lively_user(c.n_frames, model.cfg.user_dim)},
                                     settings, seed=seeds[0])
                mu = mouth_from_motion(space, gen_u, c.neutral)
                row[f"{tag}_user_corr"] = round(best_lag_correlation(mu, real, MAX_LAG)[0], 3)
                row[f"{tag}_user_max_mouth_change"] = float(np.abs(gen_u[:, slice(*model.cfg.regions["mouth"])]
                                                                   - gen[:, slice(*model.cfg.regions["mouth"])]).max()) \
                    if len(seeds) == 1 else float("nan")
                row[f"{tag}_user_face_change"] = round(float(np.abs(gen_u - gen).max()), 4)
            pm = prior_motion(model, inp["audio"])
            if pm is not None:
                row[f"{tag}_prior_corr"] = round(best_lag_correlation(mouth_from_motion(space, pm, c.neutral),
                                                                      real, MAX_LAG)[0], 3)
            row[f"{tag}_corr"] = round(float(np.mean(corrs)), 3)
            row[f"{tag}_lag"] = int(np.round(np.mean(lags)))
            row[f"{tag}_env_ratio"] = round(float(np.mean(envs)), 3)
            row[f"{tag}_seam_ratio"] = round(float(np.mean(seams)), 3)
        rows.append(row)
        LOG.info("%s", row)
    # frame-weighted means over the held-out clips
    total = {"clip": "ALL (frame-weighted)", "frames": int(sum(r["frames"] for r in rows))}
    for k in rows[0]:
        if k not in ("clip", "frames") and not k.endswith("_lag"):
            total[k] = round(float(sum(r[k] * r["frames"] for r in rows) / total["frames"]), 3)
        elif k.endswith("_lag"):
            total[k] = int(max(abs(r[k]) for r in rows))
    rows.append(total)
    return {"rows": rows, "models": model_paths, "seeds": list(seeds),
            "measure": "mouth opening on MotionSpace-decoded landmarks (generated and real alike)"}


def markdown(result: dict) -> str:
    rows = result["rows"]
    keys = list(rows[-1].keys())
    head = "| " + " | ".join(keys) + " |"
    sep = "|" + "|".join("---" for _ in keys) + "|"
    body = ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join([head, sep] + body)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m echo_cli.train.lipsync_eval")
    p.add_argument("models", nargs="+")
    p.add_argument("--seeds", default="0")
    p.add_argument("--json", default=None)
    p.add_argument("--with-user", action="store_true", help="also generate with a lively user context")
    p.add_argument("--preset", default="default", help="render preset for chunking/sampling settings")
    p.add_argument("--set", action="append", default=[], help="render setting key=value (e.g. cfg_audio=2.5)")
    p.add_argument("--inference", action="append", default=[], choices=("prior_blend=0", "prior_blend=1"),
                   help="generator inference setting over the checkpoints' own (prior_blend=0: the flow's own lips)")
    a = p.parse_args(argv)
    log.setup(0)
    from echo_cli.config import resolve_settings
    cli = {k: float(v) if "." in v else int(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    settings = resolve_settings(a.preset, cli=cli)
    inference = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.inference)}
    res = evaluate(a.models, seeds=[int(s) for s in a.seeds.split(",")], with_user=a.with_user,
                   settings=settings, inference=inference)
    res["settings"] = settings.model_dump()
    res["command"] = "python -m echo_cli.train.lipsync_eval " + " ".join(argv or __import__("sys").argv[1:])
    if a.json:
        from echo_cli.io_atomic import write_text
        write_text(a.json, json.dumps(res, indent=2) + "\n")
    print(markdown(res))


if __name__ == "__main__":
    main()
