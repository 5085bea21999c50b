"""Stage 2: the LCU and the generator trained jointly on dyadic conversations.

Starts from a stage-1 generator (`init_checkpoint`), adds a fresh LCU (its Dc = the
generator's user_dim) and trains both on the dyadic windows of train/dyadic.py:

  fm    flow matching on the avatar target, per-component weights 1 + lip_weight·lip_mask
        (+ react_weight on the pose and smile components of listening windows)
  vel   velocity of the one-step estimate vs the target's
The user context f_pu comes from the LCU run over the user's window plus `history` earlier
frames (so its scans start warm). Conditions are dropped for classifier-free guidance:
user context (p_drop_user → the generator's learned "no user" tokens), emotion
(p_drop_emotion → null emotion), audio (p_drop_audio). The motion encoder of the LPE
sees randomly masked region tokens (masked encoder).

Ablations (config): use_lpe / use_hbcu switch off LCU branches (lcu.model), use_lau=False
trains without c_emo (always null). Without SDCM = a generator config with
fusion="entangled" (the generator engineer's switch), trained the same way.

    echo-cli train --stage 2 [DATA] --out runs/stage2 [--steps N] [--seed S]
    python -m echo_cli.train.stage2 --out runs/stage2 --init runs/stage1/model.safetensors
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from echo_cli import log
from echo_cli.errors import ModelError
from echo_cli.train import common

LOG = log.get("echo_cli.train.stage2")


@dataclass(frozen=True)
class Stage2Config:
    window: int = 48                 # T noisy frames
    t_prev: int = 8                  # clean context frames
    history: int = 25                # extra user frames before the window (warm LCU scans)
    batch: int = 12
    lip_weight: float = 2.0
    vel_weight: float = 0.5
    p_drop_user: float = 0.15
    p_drop_emotion: float = 0.15
    p_drop_audio: float = 0.1
    p_no_prev: float = 0.15
    p_listen: float = 0.6            # share of windows where the avatar listens
    use_lpe: bool = True
    use_hbcu: bool = True
    use_lau: bool = True
    lcu: dict = field(default_factory=dict)   # LCUConfig overrides (dim, depth, ...)
    rules: dict = field(default_factory=dict)  # dyadic.RuleConfig overrides (listener rules)
    # listening windows' avatar audio: silence in conversation context (dyadic.silence_bank)
    # with this probability, isolated silence otherwise; see docs/lcu.md
    context_silence: bool = True
    p_context_silence: float = 0.8
    # extra flow-matching weight on the reaction components (pose + smile regions) of
    # listening windows: the user-driven part of the target lives there, in 10 of 31
    # components, and the loss otherwise barely rewards learning it (docs/lcu.md)
    react_weight: float = 6.0        # 0 before 2026-11-25 evening; 2 / 4 / 6 tried (docs/lcu.md)


def _torch():
    import torch
    return torch


def build_models(gen_tensors: dict, gen_config: dict, cfg: Stage2Config, path="<init>"):
    """(DyadicModel with .generator and .lcu) from a stage-1 checkpoint's tensors + config."""
    import torch.nn as nn

    from echo_cli.lcu.model import LCU, LCUConfig
    from echo_cli.model.checkpoint import build_generator

    gen = build_generator(gen_tensors, gen_config, path).train()
    g = gen.cfg
    regions = tuple((n, int(s), int(e)) for n, (s, e) in g.regions.items())
    lcfg = LCUConfig(**{"motion_dim": g.motion_dim, "regions": regions, "ctx_dim": g.user_dim,
                        "use_lpe": cfg.use_lpe, "use_hbcu": cfg.use_hbcu, **cfg.lcu})

    class _JointConfig:
        """What train.common expects of model.cfg (its state files and resume check)."""
        def to_dict(self):
            return {"generator": gen.cfg.to_dict(), "lcu": lcfg.to_dict()}

    class DyadicModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = gen
            self.lcu = LCU(lcfg)
            self.cfg = _JointConfig()

    return DyadicModel()


def make_loss_fn(batcher, cfg: Stage2Config, device: str):
    import torch

    from echo_cli.features.text import embed_texts
    from echo_cli.generate.sampler import interpolate, predicted_data, sample_time, target_velocity

    Tp, H = cfg.t_prev, cfg.history
    react = None

    def loss_fn(net, step, tg, rng):
        nonlocal react
        m = getattr(net, "module", net)
        gen, lcu = m.generator, m.lcu
        if react is None:
            react = torch.zeros(gen.cfg.motion_dim, device=device)
            for name in ("pose", "smile"):
                a, e = gen.cfg.regions[name]
                react[a:e] = 1.0
        b = batcher.sample(rng, cfg.batch)
        t = {k: torch.from_numpy(b[k]).to(device) for k in ("motion", "audio", "identity", "u_audio", "u_motion", "u_beh")}
        B = t["motion"].shape[0]
        mask = lcu.train_mask(B, t["u_motion"].shape[1], tg)
        f_pu, _ = lcu(t["u_audio"], t["u_motion"], t["u_beh"], None, mask)        # (B, H+N, Dc)
        f_pu = f_pu[:, H:]                                                         # (B, N, Dc)
        emo = torch.from_numpy(embed_texts(b["emotion"])).to(device)             # (B, 384)
        mot, aud = t["motion"], t["audio"]
        x1, prev = mot[:, Tp:], mot[:, :Tp]
        if rng.random() < cfg.p_no_prev:
            prev, aud, f_pu = None, aud[:, Tp:], f_pu[:, Tp:]
        noise = torch.randn(x1.shape, generator=tg).to(device)
        tt = sample_time(B, tg).to(device)
        x_t = interpolate(x1, noise, tt)
        drop_a = torch.from_numpy(rng.random(B) < cfg.p_drop_audio).to(device)
        drop_u = torch.from_numpy(rng.random(B) < cfg.p_drop_user).to(device)
        # emotion dropout per batch (the generator's null emotion is a whole-batch None)
        use_emo = cfg.use_lau and rng.random() >= cfg.p_drop_emotion
        v = gen(x_t, tt, prev, aud, t["identity"], f_pu, emo if use_emo else None,
                drop_audio=drop_a, drop_user=drop_u)                               # (B, T, D)
        dw = (1.0 + cfg.lip_weight * torch.tensor(gen.cfg.lip_mask, device=device))[None, None]
        lis = torch.from_numpy(b["listening"]).to(device)
        if cfg.react_weight:
            dw = dw + cfg.react_weight * (lis[:, None, None].float() * react[None, None])   # (B, 1, D)
        target = target_velocity(x1, noise)
        fm = ((v - target) ** 2 * dw).mean()
        x1_hat = predicted_data(x_t, v, tt)
        vel = ((torch.diff(x1_hat, dim=1) - torch.diff(x1, dim=1)) ** 2 * dw).mean()
        with torch.no_grad():
            fm_l = ((v - target) ** 2 * dw).mean((1, 2))
            out_l = fm_l[lis].mean() if lis.any() else fm_l.new_zeros(())
        return {"loss": fm + cfg.vel_weight * vel, "fm": fm, "vel": vel, "fm_listen": out_l}
    return loss_fn


def fit_stats_from(gen) -> dict:
    return {"motion_mean": gen.motion_mean.cpu().numpy(), "motion_std": gen.motion_std.cpu().numpy()}


def run(data: str | Path | None = None, out: str | Path = "runs/stage2", steps: int | None = None,
        seed: int = 0, resume: bool = False, init_checkpoint: str | Path | None = None,
        config: Stage2Config | None = None, loop: common.LoopConfig | None = None,
        clips=None, space=None, force: bool = False) -> dict:
    """Train stage 2 into `out`; returns a summary (also out/summary.json).

    init_checkpoint: a stage-1 model (default: runs/stage1/model next to `out`, else the
    shipped default checkpoint's generator). clips: (speech, silent) DyadClip lists (tests).
    """
    import torch

    from echo_cli.model.checkpoint import load_checkpoint, save_checkpoint
    from echo_cli.train import dyadic as Y

    # One intra-op thread per process, as stage 1: on the shared 2-core machine 2-thread pools
    # spin against each other (a 250-step run did not reach step 25 in 17 min with 2 threads)
    from echo_cli.env import env_threads

    torch.set_num_threads(env_threads() or 1)
    cfg = config or Stage2Config()
    loop = loop or common.LoopConfig(steps=1500, lr=5e-4, warmup=50, log_every=25, ckpt_every=250)
    if steps is not None:
        loop = replace(loop, steps=int(steps))
    loop = replace(loop, seed=int(seed))
    run_dir = common.RunDir(out, resume=resume, force=force)
    dist_ = common.Dist()

    if init_checkpoint is None:
        cand = Path(out).parent / "stage1" / "model.safetensors"
        if cand.is_file():
            init_checkpoint = cand
        else:
            from echo_cli.api.render import default_checkpoint
            init_checkpoint = default_checkpoint()
    tensors, gconf = load_checkpoint(init_checkpoint)
    model = build_models({k: v for k, v in tensors.items() if k.startswith("generator.")}, gconf, cfg,
                         init_checkpoint)
    gen = model.generator
    if space is None:
        from echo_cli.motion.space import default_space
        space = default_space()
    if clips is None:
        try:
            speech, silent = Y.load_dyadic_clips(data, space, gen.cfg.audio_input)
        except BaseException:
            run_dir.discard_if_empty()      # nothing written yet: no empty run folder left behind
            raise
        (tr_sp, tr_si), (ho_sp, ho_si) = Y.split_pairs(speech, silent)
    else:
        (tr_sp, tr_si), (ho_sp, ho_si) = clips, ([], [])
    sdir = Y.smile_direction(space)
    mouth = slice(*gen.cfg.regions["mouth"])
    rules = Y.RuleConfig(**cfg.rules)
    bank = None
    if cfg.context_silence and clips is None:
        from echo_cli.train.data import shared_data_dir
        bank = Y.silence_bank(tr_sp, Path(data) if data else shared_data_dir(), gen.cfg.audio_input,
                              cfg.t_prev + cfg.window)
    batcher = Y.DyadicBatcher(tr_sp, tr_si, cfg.t_prev, cfg.window, cfg.history, fit_stats_from(gen),
                              sdir, mouth, rules=rules, p_listen=cfg.p_listen, silence=bank,
                              p_context_silence=cfg.p_context_silence,
                              smile=slice(*gen.cfg.regions["smile"]))
    meta = {"stage": 2, "stage2": asdict(cfg), "rules": asdict(rules), "seed": loop.seed,
            "init_checkpoint": str(init_checkpoint),
            "data": {"speech": sorted(c.name for c in tr_sp), "silent": sorted(c.name for c in tr_si),
                     "held_out_speech": sorted(c.name for c in ho_sp),
                     "held_out_silent": sorted(c.name for c in ho_si),
                     "construction": "train/dyadic.py (rule-based listener targets; see docs/lcu.md)"}}
    LOG.info("stage 2: %d speech + %d silent training clips; held out %s", len(batcher.speech),
             len(batcher.silent), meta["data"]["held_out_speech"] + meta["data"]["held_out_silent"])
    result = common.train_loop(model, make_loss_fn(batcher, cfg, "cpu"), loop, run_dir, dist_,
                               resume=resume, config=meta)
    model.eval()
    save_checkpoint(run_dir.model, {**{f"generator.{k}": v for k, v in gen.state_dict().items()},
                                    **{f"lcu.{k}": v for k, v in model.lcu.state_dict().items()}},
                    {"generator": gen.cfg.to_dict(), "lcu": model.lcu.cfg.to_dict(),
                     "training": {**meta, "loop": asdict(loop)}})
    summary = {"run_dir": str(run_dir.path), **result, "model": str(run_dir.model) + ".safetensors"}
    common.write_json(run_dir.path / "summary.json", summary)
    return summary


def load_stage2(path: str | Path):
    """(generator, lcu, config) from a checkpoint with generator.* and lcu.* tensors."""
    from echo_cli.lcu.model import LCU, LCUConfig
    from echo_cli.model.checkpoint import build_generator, component, load_checkpoint, load_state

    tensors, config = load_checkpoint(path)
    gen = build_generator(tensors, config, path)
    if "lcu" not in config:
        raise ModelError("checkpoint has no LCU (a stage-1 model?)", path=path,
                         fix="use a stage-2 or default checkpoint")
    lcu = LCU(LCUConfig.from_dict(config["lcu"]))
    load_state(lcu, component(tensors, "lcu"), path, "lcu")
    return gen.eval(), lcu.eval(), config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m echo_cli.train.stage2", description=__doc__.split("\n")[0])
    p.add_argument("data", nargs="?", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--init", default=None, help="stage-1 model checkpoint")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--force", action="store_true", help="train over a run already in --out")
    a = p.parse_args(argv)
    log.setup(0)
    run(a.data, a.out, a.steps, a.seed, a.resume, a.init, force=a.force)


if __name__ == "__main__":
    main()
