"""Stage 1: talking-head training of the generator (user context dropped).

Losses, on random windows (T_prev clean frames + T noisy frames) of real talking clips:
  fm       flow matching: || v - (x1 - x0) ||^2, per-component weights 1 + lip_weight * lip_mask
  vel      velocity (temporal difference) of the one-step estimate x1_hat vs the data's
  viseme   cross-entropy of the audio encoder's viseme head vs the phonetic prior (features/phonetic.py)
  mouth    MSE of the audio encoder's mouth-prior head vs the real normalised mouth codes
           (video items only): the deterministic audio -> lips regression the flow refines
           (models with mouth_prior_kind="head"; a "ridge" prior is instead fitted in closed
           form before training, train/mouth_ridge.py, and frozen; the flow then sees each
           training clip's leave-its-speaker-out prediction, `loso_prior`)
  fm on speech without video (../shared/data/audio, espeak-ng): mouth components only, targets
           from a viseme -> mouth-code table fitted on the video clips (`audio_only_weight`)
Conditions are dropped at random for classifier-free guidance (audio) and robustness
(identity, previous frames). The user context is always "no user" here.

    echo-cli train --stage 1 [DATA] --out runs/stage1 [--steps N] [--seed S] [--resume]
    torchrun --nproc_per_node 2 -m echo_cli.train.stage1 --out runs/stage1     # data parallel
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.train import common
from echo_cli.train.data import FPS, HELD_OUT, ClipData

LOG = log.get("echo_cli.train.stage1")


@dataclass(frozen=True)
class Stage1Config:
    preset: str = "tiny"
    audio_input: str = "whisper_mid"  # model.audio_encoder.AUDIO_INPUTS
    window: int = 32                 # T: noisy frames per training window
    t_prev: int = 8                  # clean context frames (as the default render preset)
    batch: int = 8
    lip_weight: float = 2.0
    vel_weight: float = 0.5
    viseme_weight: float = 0.1
    audio_only_weight: float = 0.5   # share of the batch from speech without video (0 = off)
    p_drop_audio: float = 0.1
    p_drop_identity: float = 0.3
    p_no_prev: float = 0.15
    use_visemes: bool = True
    use_audio_only: bool = True
    mouth_weight: float = 1.0        # mouth-prior regression loss (models with a prior head)
    align_av: bool = True            # shift clips with a clear audio/video offset (data.align_speech)
    loso_prior: bool = True          # ridge prior: feed the flow out-of-speaker predictions on training clips
    realign_prior: bool = True       # ridge prior: re-pair each training clip at the offset its
                                     # out-of-speaker prediction shows, then refit (data.prior_offset)


#################################################################################
#                                 Batching                                      #
#################################################################################

def fit_stats(clips: list[ClipData], kind: str) -> dict:
    m = np.concatenate([c.motion for c in clips])
    a = np.concatenate([c.audio(kind) for c in clips])
    ids = np.stack([c.identity for c in clips])
    return {"motion_mean": m.mean(0), "motion_std": m.std(0) + 1e-4,
            "feat_mean": a.mean(0), "feat_std": a.std(0) + 1e-4,
            "identity_mean": ids.mean(0), "identity_std": ids.std(0) + 0.05 * (np.abs(ids).mean() + 1e-3)}


def apply_stats(model, stats: dict) -> None:
    import torch

    with torch.no_grad():
        model.motion_mean.copy_(torch.from_numpy(stats["motion_mean"]))
        model.motion_std.copy_(torch.from_numpy(stats["motion_std"]))
        model.identity_mean.copy_(torch.from_numpy(stats["identity_mean"]))
        model.identity_std.copy_(torch.from_numpy(stats["identity_std"]))
        model.audio_enc.feat_mean.copy_(torch.from_numpy(stats["feat_mean"]))
        model.audio_enc.feat_std.copy_(torch.from_numpy(stats["feat_std"]))


def viseme_mouth_table(clips: list[ClipData], mouth: slice, stats: dict, n_visemes: int) -> np.ndarray:
    """(V, n_mouth) mean normalised mouth codes per viseme, fitted on the video clips."""
    sums = np.zeros((n_visemes, mouth.stop - mouth.start))
    counts = np.zeros(n_visemes)
    for c in clips:
        z = (c.motion[:, mouth] - stats["motion_mean"][mouth]) / stats["motion_std"][mouth]
        ok = c.visemes >= 0
        np.add.at(sums, c.visemes[ok], z[ok])
        np.add.at(counts, c.visemes[ok], 1)
    table = sums / np.maximum(counts, 1)[:, None]
    return table.astype(np.float32)


def audio_only_motion(c: ClipData, table: np.ndarray, mouth: slice, stats: dict) -> np.ndarray:
    """Normalised pseudo-motion for speech without video: mouth codes from the viseme table
    (3-frame smoothing for coarticulation), every other component at its mean (0)."""
    D = stats["motion_mean"].shape[0]
    z = np.zeros((c.n_frames, D), np.float32)
    vis = np.where(c.visemes >= 0, c.visemes, 0)
    m = table[vis]
    k = np.array([0.25, 0.5, 0.25], np.float32)
    m = np.stack([np.convolve(np.pad(m[:, j], 1, mode="edge"), k, mode="valid") for j in range(m.shape[1])], 1)
    z[:, mouth] = m
    return z


class Batcher:
    """Random windows from video clips (all components) and audio-only items (mouth only)."""

    def __init__(self, clips, audio_only, cfg: Stage1Config, stats: dict, mouth: slice, lip_mask, n_visemes,
                 priors: dict | None = None):
        """priors: clip name -> (T, n_mouth) mouth prior to feed instead of the model's own
        (ridge prior, `fit_ridge_prior`); None: the model computes its prior."""
        self.cfg, self.stats, self.mouth, self.priors = cfg, stats, mouth, priors
        self.N = cfg.t_prev + cfg.window
        self.items = [c for c in clips if c.n_frames >= self.N]
        self.motion = [((c.motion - stats["motion_mean"]) / stats["motion_std"]).astype(np.float32) for c in self.items]
        self.audio = [c.audio(cfg.audio_input).astype(np.float32) for c in self.items]
        w = np.array([c.n_frames for c in self.items], np.float64)
        self.p = w / w.sum()
        self.ao = []
        if cfg.use_audio_only and cfg.audio_only_weight > 0 and audio_only:
            table = viseme_mouth_table(self.items, mouth, stats, n_visemes)
            self.ao = [(audio_only_motion(c, table, mouth, stats), c.audio(cfg.audio_input).astype(np.float32), c)
                       for c in audio_only if c.n_frames >= self.N and (c.visemes >= 0).any()]
        self.dim_w = (1.0 + cfg.lip_weight * np.asarray(lip_mask, np.float32)).astype(np.float32)
        self.mouth_only = np.zeros_like(self.dim_w)
        self.mouth_only[mouth] = self.dim_w[mouth]

    def sample(self, rng: np.random.Generator, B: int) -> dict:
        N = self.N
        n_ao = int(round(B * self.cfg.audio_only_weight / (1 + self.cfg.audio_only_weight))) if self.ao else 0
        mot, aud, ids, vis, dw, video, pri = [], [], [], [], [], [], []
        for b in range(B):
            if b < B - n_ao:
                i = rng.choice(len(self.items), p=self.p)
                c = self.items[i]
                s = rng.integers(0, c.n_frames - N + 1)
                mot.append(self.motion[i][s:s + N]); aud.append(self.audio[i][s:s + N])
                ids.append(c.identity); vis.append(c.visemes[s:s + N]); dw.append(self.dim_w); video.append(True)
                if self.priors is not None:
                    pri.append(self.priors[c.name][s:s + N])
            else:
                m, a, c = self.ao[rng.integers(len(self.ao))]
                s = rng.integers(0, c.n_frames - N + 1)
                mot.append(m[s:s + N]); aud.append(a[s:s + N])
                ids.append(self.stats["identity_mean"]); vis.append(c.visemes[s:s + N]); dw.append(self.mouth_only)
                video.append(False)
                if self.priors is not None:
                    pri.append(self.priors[c.name][s:s + N])
        out = {"motion": np.stack(mot), "audio": np.stack(aud), "identity": np.stack(ids).astype(np.float32),
               "visemes": np.stack(vis), "dim_w": np.stack(dw), "video": np.array(video, bool)}
        if pri:
            out["prior"] = np.stack(pri).astype(np.float32)
        return out


def make_loss_fn(batcher: Batcher, cfg: Stage1Config, device: str):
    import torch
    import torch.nn.functional as F

    from echo_cli.generate.sampler import interpolate, predicted_data, sample_time, target_velocity

    Tp = cfg.t_prev

    def loss_fn(net, step, tg, rng):
        b = batcher.sample(rng, cfg.batch)
        mot = torch.from_numpy(b["motion"]).to(device)                    # (B, N, D)
        aud = torch.from_numpy(b["audio"]).to(device)                     # (B, N, Fa)
        ident = torch.from_numpy(b["identity"]).to(device)                # (B, D)
        dw = torch.from_numpy(b["dim_w"]).to(device)[:, None, :]         # (B, 1, D)
        B = mot.shape[0]
        pri = torch.from_numpy(b["prior"]).to(device) if "prior" in b else None   # (B, N, n_mouth)
        x1 = mot[:, Tp:]
        prev = mot[:, :Tp]
        if rng.random() < cfg.p_no_prev:
            prev, aud = None, aud[:, Tp:]
            pri = None if pri is None else pri[:, Tp:]
        noise = torch.randn(x1.shape, generator=tg).to(device)
        t = sample_time(B, tg).to(device)
        x_t = interpolate(x1, noise, t)
        drop_a = torch.from_numpy(rng.random(B) < cfg.p_drop_audio).to(device)
        keep_id = torch.from_numpy(rng.random(B) >= cfg.p_drop_identity).to(device)
        mean_id = net_module(net).identity_mean
        ident = torch.where(keep_id[:, None], ident, mean_id.expand_as(ident))
        v, aux = net(x_t, t, prev, aud, ident, None, None, drop_audio=drop_a, return_aux=True, mouth_prior=pri)
        target = target_velocity(x1, noise)
        fm = ((v - target) ** 2 * dw).mean()
        x1_hat = predicted_data(x_t, v, t)
        vel = ((torch.diff(x1_hat, dim=1) - torch.diff(x1, dim=1)) ** 2 * dw).mean()
        out = {"fm": fm, "vel": vel}
        loss = fm + cfg.vel_weight * vel
        if cfg.use_visemes and cfg.viseme_weight > 0:
            vis = torch.from_numpy(b["visemes"][:, -x1.shape[1]:]).to(device)
            if (vis >= 0).any():
                ce = F.cross_entropy(aux["viseme_logits"].reshape(-1, aux["viseme_logits"].shape[-1]),
                                     vis.reshape(-1), ignore_index=-1)
                out["viseme"] = ce
                loss = loss + cfg.viseme_weight * ce
        learned_prior = net_module(net).audio_enc.mouth_head is not None
        if cfg.mouth_weight > 0 and learned_prior and "mouth_prior" in aux and b["video"].any():
            sel = torch.from_numpy(b["video"]).to(device)
            err = (aux["mouth_prior"] - x1[..., batcher.mouth]) ** 2                # (B, T, n_mouth)
            out["mouth"] = err[sel].mean()
            loss = loss + cfg.mouth_weight * out["mouth"]
        out["loss"] = loss
        return out
    return loss_fn


def net_module(net):
    return getattr(net, "module", net)


def prior_as_motion(pred: np.ndarray, stats: dict, mouth: slice) -> np.ndarray:
    """(T, n_mouth) normalised mouth codes of a prior -> (T, D) motion, every other
    component at its mean (what the evaluation decodes for the prior alone)."""
    z = np.zeros((len(pred), len(stats["motion_mean"])), np.float32)    # as the clips' motion
    z[:, mouth] = pred
    return z * stats["motion_std"] + stats["motion_mean"]


def prior_scorer(clips: list[ClipData], stats: dict, mouth: slice, space):
    """score(i, pred) for clip i: the lip-sync evaluation's own measure of a mouth prior
    (normalised mouth codes, every other component at its mean, decoded on the clip's neutral;
    correlation with the real mouth opening at the best lag |L| <= MAX_LAG)."""
    from echo_cli.eval.metrics import best_lag_correlation
    from echo_cli.train.lipsync_eval import MAX_LAG, mouth_from_motion

    real = [mouth_from_motion(space, c.motion, c.neutral) for c in clips]

    def score(i, pred):
        mot = prior_as_motion(pred, stats, mouth)
        return best_lag_correlation(mouth_from_motion(space, mot, clips[i].neutral), real[i], MAX_LAG)[0]
    return score


def fit_ridge_prior(model, train: list[ClipData], audio_only: list[ClipData], cfg: Stage1Config,
                    stats: dict, mouth: slice, space=None) -> tuple[dict, dict, list[ClipData]]:
    """Fit the frozen ridge mouth prior (train/mouth_ridge.py) into `model`; returns the priors
    the batcher feeds (training clips: leave-its-speaker-out predictions if cfg.loso_prior,
    audio-only items: the final fit's), a summary for the run's config, and the training
    clips as finally paired. The penalty is chosen by leave-one-speaker-out CV on `train`
    only; with a MotionSpace, the CV score is the evaluation's own (decoded mouth opening,
    best lag |L| <= 5, lipsync_eval).

    cfg.realign_prior: one re-alignment pass. Each training clip's out-of-speaker prediction
    shows where its audio and mouth line up best (data.prior_offset); clips off by a frame
    or more are re-paired and the ridge is fitted again. A clip whose sound is a frame late
    teaches the map to smear every mouth movement over its neighbours; held-out clips are
    never touched (measured: docs/generator.md "Re-aligning the training clips on the
    prior")."""
    from echo_cli.train import data as D
    from echo_cli.train import mouth_ridge

    enc = model.audio_enc
    k = enc.prior_context
    norm = lambda c: ((c.audio(cfg.audio_input) - stats["feat_mean"]) / stats["feat_std"]).astype(np.float32)
    can_score = space is not None and all(c.neutral is not None for c in train)

    def fit(clips):
        feats = [norm(c) for c in clips]
        targets = [(c.motion[:, mouth] - stats["motion_mean"][mouth]) / stats["motion_std"][mouth] for c in clips]
        score = prior_scorer(clips, stats, mouth, space) if can_score else None
        return mouth_ridge.fit(feats, targets, [c.speaker for c in clips], [c.name for c in clips],
                               rank=enc.prior_proj.shape[1], context=k, score=score), feats, targets

    rp, feats, targets = fit(train)
    realigned, first_cv = {}, None
    if cfg.realign_prior and can_score:
        for c in train:
            lag = D.prior_offset(c, prior_as_motion(rp.loso[c.name], stats, mouth), space)
            if lag:
                realigned[c.name] = lag
        if realigned:
            LOG.info("ridge mouth prior: training clips re-aligned on its predictions: %s", realigned)
            first_cv = {f"{lam:g}": round(v, 4) for lam, v in rp.cv.items()}
            train = [D.shift_clip(c, realigned.get(c.name, 0)) for c in train]
            rp, feats, targets = fit(train)
    enc.set_ridge(rp.proj, rp.weight, rp.bias)
    priors = {c.name: (rp.loso[c.name] if cfg.loso_prior else mouth_ridge.apply(rp, f, k)).astype(np.float32)
              for c, f in zip(train, feats)}
    for c in audio_only:
        priors[c.name] = mouth_ridge.apply(rp, norm(c), k).astype(np.float32)
    # the ridge shrinks its output toward the mean; the least-squares slope of the training
    # targets on its in-sample predictions says by how much (the recipe's prior_gain)
    pred = np.concatenate([mouth_ridge.apply(rp, f, k) for f in feats])
    tgt = np.concatenate(targets)
    pc, tc = pred - pred.mean(0), tgt - tgt.mean(0)
    slope = (pc * tc).sum(0) / np.maximum((pc ** 2).sum(0), 1e-12)
    info = {"lambda": rp.lam, "loso_cv": {f"{lam:g}": round(v, 4) for lam, v in rp.cv.items()},
            "rank": int(rp.proj.shape[1]), "context": k, "loso_prior": cfg.loso_prior,
            "calibration_slope": round(float(slope.mean()), 2),
            # frames each clip was shifted by on top of data.align_speech (eval.mouth_prior reads it)
            "realigned": realigned}
    if first_cv is not None:
        info["loso_cv_before_realign"] = first_cv
    LOG.info("ridge mouth prior: lambda %g (leave-one-speaker-out CV %s)", rp.lam, info["loso_cv"])
    return priors, info, train


#################################################################################
#                               Synthetic data                                  #
#################################################################################

def synthetic_clips(n_clips: int = 4, frames: int = 200, motion_dim: int = 24, seed: int = 0,
                    audio_dim: int = 512) -> list[ClipData]:
    """Tests only: motion whose mouth follows a smoothed audio channel (learnable in steps)."""
    from echo_cli.model.generator import synthetic_layout

    rng = np.random.default_rng(seed)
    mouth = slice(*synthetic_layout(motion_dim)["regions"]["mouth"])
    out = []
    for i in range(n_clips):
        a = rng.standard_normal((frames, audio_dim)).astype(np.float32)
        env = np.convolve(a[:, 0], np.ones(5) / 5, mode="same")
        m = 0.1 * np.cumsum(rng.standard_normal((frames, motion_dim)), 0).astype(np.float32) / np.sqrt(frames)
        m[:, mouth] += env[:, None]
        vis = (np.clip(env, -1, 1) * 7 + 7).astype(np.int64) % 15
        out.append(ClipData(name=f"syn{i}", speaker=f"spk{i}", motion=m.astype(np.float32), whisper=a,
                            mel=a[:, :80], identity=rng.standard_normal(motion_dim).astype(np.float32) * 0.1,
                            visemes=vis, energy=np.zeros(frames, np.float32)))
    return out


#################################################################################
#                                   Entry                                       #
#################################################################################

def run(data: str | Path | None = None, out: str | Path = "runs/stage1", steps: int | None = None,
        seed: int = 0, resume: bool = False, preset: str = "tiny", config: Stage1Config | None = None,
        clips: list[ClipData] | None = None, audio_only: list[ClipData] | None = None,
        held_out=HELD_OUT, loop: common.LoopConfig | None = None, model_overrides: dict | None = None,
        force: bool = False) -> dict:
    """Train stage 1 into the run folder `out`; returns a summary dict (also out/summary.json).

    clips/audio_only: pre-built data (tests); otherwise the speech clips of `data`
    (default ../shared/data) are preprocessed (cached) and split by speaker.
    """
    import torch

    from echo_cli.model.checkpoint import save_generator
    from echo_cli.model.generator import EchoGenerator, layout_from_motion_space, make_config, synthetic_layout
    from echo_cli.train import data as D

    dist_ = common.init_distributed()
    cfg = config or Stage1Config(preset=preset)
    loop = loop or common.LoopConfig()
    if steps is not None:
        loop = replace(loop, steps=int(steps))
    loop = replace(loop, seed=int(seed))
    run_dir = common.RunDir(out, resume=resume, force=force)
    # One intra-op thread per process: on a shared 2-core machine more threads spin against
    # each other (we measured 10-20x slow-downs); use torchrun processes for parallelism.
    from echo_cli.env import env_threads

    torch.set_num_threads(env_threads() or 1)

    if clips is None:
        try:
            all_clips = D.load_clips(data)
            train, val = D.split(all_clips, held_out)
            if not train:
                from echo_cli.errors import InputError

                raise InputError(f"no training clips found ({len(all_clips)} held-out only)" if all_clips
                                 else "no training clips found", path=data or D.shared_data_dir(),
                                 fix="pass ../shared/data, or a folder of talking-head videos with their own "
                                     "speech (DATA/<speaker>/*.mp4, or DATA/*.mp4 one speaker each)")
        except BaseException:
            run_dir.discard_if_empty()
            raise
        from echo_cli.motion.space import default_space
        if cfg.align_av:
            train = D.align_speech(train, default_space())
        layout = layout_from_motion_space(default_space())
        if audio_only is None and cfg.use_audio_only:
            audio_only = D.audio_only_items(data, layout["motion_dim"])
    else:
        train, val = clips, []
        layout = synthetic_layout(clips[0].motion.shape[1])
    if not all(c.has_audio(cfg.audio_input) for c in train):
        LOG.warning("some clips lack Whisper features: training on log-mel")
        cfg = replace(cfg, audio_input="mel")
    audio_only = [c for c in (audio_only or []) if c.has_audio(cfg.audio_input)]

    mcfg = make_config(cfg.preset, layout, audio_input=cfg.audio_input, **(model_overrides or {}))
    torch.manual_seed(loop.seed)
    model = EchoGenerator(mcfg).to(dist_.device)
    stats = fit_stats(train, cfg.audio_input)
    apply_stats(model, stats)
    mouth = slice(*mcfg.regions["mouth"])
    priors, ridge_info = None, None
    if mcfg.n_mouth and mcfg.mouth_prior_kind == "ridge":
        # deterministic (closed form), so every rank and every --resume fits the same map
        priors, ridge_info, train = fit_ridge_prior(model, train, audio_only, cfg, stats, mouth,
                                                    space=default_space() if clips is None else None)
    batcher = Batcher(train, audio_only, cfg, stats, mouth, mcfg.lip_mask, mcfg.n_visemes, priors=priors)
    meta = {"stage": 1, "stage1": asdict(cfg), "seed": loop.seed, "ridge_prior": ridge_info,
            "data": {"train": sorted({c.name for c in train}), "held_out": sorted({c.name for c in val}),
                     "audio_only": sorted({c.name for c in audio_only}),
                     "fps": FPS, "source": str(Path(data).resolve()) if data is not None and clips is None
                     else "../shared/data (see its README for licences and attribution)"}}
    LOG.info("stage 1: %d training clips (%d frames), %d audio-only, held out: %s", len(batcher.items),
             sum(c.n_frames for c in batcher.items), len(batcher.ao), meta["data"]["held_out"])
    result = common.train_loop(model, make_loss_fn(batcher, cfg, dist_.device), loop, run_dir, dist_,
                               resume=resume, config=meta)
    summary = {"run_dir": str(run_dir.path), **result, "model": str(run_dir.model) + ".safetensors"}
    if dist_.main:
        save_generator(run_dir.model, model.cpu(), extra_config={"training": {**meta, "loop": asdict(loop)}})
        common.write_json(run_dir.path / "summary.json", summary)
    common.shutdown_distributed()
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m echo_cli.train.stage1", description=__doc__.split("\n")[0])
    p.add_argument("data", nargs="?", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--force", action="store_true", help="train over a run already in --out")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--synthetic", action="store_true", help="tiny synthetic data (tests of the machinery)")
    p.add_argument("--set", action="append", default=[], help="Stage1Config field=value (ablations), repeatable")
    p.add_argument("--model", action="append", default=[],
                   help="GeneratorConfig field=value over the preset (ablations, e.g. mouth_prior=false)")
    a = p.parse_args(argv)
    log.setup(0)
    clips = synthetic_clips() if a.synthetic else None
    cfg = Stage1Config(preset=a.preset, batch=4, window=16, t_prev=4) if a.synthetic else Stage1Config(preset=a.preset)
    over = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        typ = type(getattr(cfg, k))
        over[k] = (v.lower() in ("1", "true", "yes")) if typ is bool else typ(v)
    cfg = replace(cfg, **over)
    loop = common.LoopConfig(log_every=1, ckpt_every=2, warmup=2) if a.synthetic else common.LoopConfig()
    if a.lr:
        loop = replace(loop, lr=a.lr)
    from echo_cli.model.generator import GeneratorConfig
    mover = {}
    for kv in a.model:
        k, v = kv.split("=", 1)
        typ = type(GeneratorConfig.__dataclass_fields__[k].default)
        mover[k] = (v.lower() in ("1", "true", "yes")) if typ is bool else typ(v)
    run(a.data, a.out, a.steps, a.seed, a.resume, a.preset, cfg, clips=clips,
        audio_only=[] if a.synthetic else None, loop=loop, model_overrides=mover, force=a.force)


if __name__ == "__main__":
    main()
