"""`echo-cli train --recipe default`: stage 1 + stage 2 → the shipped default checkpoint.

    echo-cli train --recipe default [DATA] [--out runs/recipe-default] [--seed 0]

1. stage 1 (train/stage1.py) on the talking clips of ../shared/data, speakers held out;
2. stage 2 (train/stage2.py) on dyadic conversations built from the same data
   (train/dyadic.py), listener clips and speakers held out;
3. the held-out measurements: dyadic (train/dyadic.evaluate) and lip sync on held-out
   speakers (train/lipsync_eval.evaluate);
4. one checkpoint with everything `echo-cli render` needs — generator.*, lcu.* and
   motion_space.* tensors in echo_cli/checkpoints/default.safetensors, their configs,
   the recipe and the metrics in default.json — and MODEL_CARD.md beside it.
Budget: ≤ 60 min on 2 CPU cores (timing of each run is recorded in default.json / MODEL_CARD.md).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from echo_cli import log
from echo_cli.errors import UsageError
from echo_cli.train import common

LOG = log.get("echo_cli.train.recipe")
PACKAGE_CKPT = Path(__file__).resolve().parent.parent / "checkpoints" / "default"
MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Recipe:
    stage1_steps: int = 1500         # sized so the whole recipe fits 60 min on 2 shared CPU cores
    stage2_steps: int = 250
    preset: str = "tiny"
    seed: int = 0
    # Stage-1 generator overrides of the preset; none: the preset's frozen ridge mouth prior
    # (held-out lip sync 0.47 vs the learned head's 0.29, docs/generator.md).
    stage1_model: tuple = ()
    # Inference settings packaged with the generator (GeneratorConfig fields the recipe's own
    # measurements use too). quiet_gate: digital silence reads as silence and the mouth
    # prior rests there (without it the ridge prior kept the lips moving while listening,
    # 0.42x on rendered video); prior_gain: the ridge's shrunken output scaled back by the
    # least-squares slope of the training clips' mouth codes on its in-sample predictions,
    # "calibrated" = the slope stage 1 measured when it fitted the ridge (its mean over the
    # mouth components; 1.9 for the 2026-12-04 ridge; docs/generator.md "Quiet gate").
    inference: tuple = (("quiet_gate", True), ("prior_gain", "calibrated"))


def resolve_inference(inference: tuple, stage1_config: dict) -> dict:
    """The recipe's inference settings with "calibrated" replaced by stage 1's measurement."""
    out = dict(inference)
    if out.get("prior_gain") == "calibrated":
        slope = ((stage1_config.get("training") or {}).get("ridge_prior") or {}).get("calibration_slope")
        if slope is None:
            raise UsageError("prior_gain 'calibrated' needs a ridge prior fitted by stage 1",
                             fix="use a ridge mouth prior, or give prior_gain a number")
        out["prior_gain"] = float(slope)
    return out


RECIPES = {"default": Recipe()}


def package(out: Path, inference: tuple, target: str | Path, training: dict):
    """stage 1 + stage 2 in `out` -> one checkpoint at `target`: the stage-2 model with the
    motion space and the inference settings resolved against stage 1 (what the recipe ships,
    and what an ablation variant trained the same way must carry to be compared with it).
    Returns (generator, lcu, space, config, tensors) with those settings applied."""
    import torch

    from echo_cli.model.checkpoint import load_checkpoint, save_checkpoint
    from echo_cli.motion.space import default_space
    from echo_cli.train import stage2

    out = Path(out)
    gen, lcu, cfg2 = stage2.load_stage2(out / "stage2" / "model.safetensors")
    s1 = load_checkpoint(out / "stage1" / "model.safetensors")[1]
    resolved = resolve_inference(inference, s1)
    gen.cfg = dataclasses.replace(gen.cfg, **resolved)
    space = default_space()
    tensors, _ = load_checkpoint(out / "stage2" / "model.safetensors")
    ms_t, ms_c = space.state_dict()
    tensors.update({f"motion_space.{k}": torch.as_tensor(v) for k, v in ms_t.items()})
    config = {"generator": {**cfg2["generator"], **resolved}, "lcu": cfg2["lcu"], "motion_space": ms_c,
              "training": {**training, "inference_resolved": resolved,
                           # the prior's fit: penalty, CV, calibration, the clips it re-aligned
                           "ridge_prior": (s1.get("training") or {}).get("ridge_prior"),
                           "stage2_config": cfg2.get("training", {}).get("stage2", {}),
                           "data": cfg2.get("training", {}).get("data", {})},
              "metrics": {}}
    save_checkpoint(target, tensors, config)
    return gen, lcu, space, config, tensors


def run(recipe: str = "default", data=None, out=None, seed: int = 0, resume: bool = False,
        target: str | Path | None = None, steps1: int | None = None, steps2: int | None = None,
        force: bool = False) -> dict:
    """Run a recipe; writes the final checkpoint to `target` (default: the package's)."""
    import torch

    from echo_cli.model.checkpoint import checkpoint_paths, save_checkpoint
    from echo_cli.train import dyadic, stage1, stage2

    if recipe not in RECIPES:
        raise UsageError(f"unknown recipe '{recipe}'", fix=f"use one of: {', '.join(RECIPES)}")
    r = RECIPES[recipe]
    r = Recipe(stage1_steps=steps1 or r.stage1_steps, stage2_steps=steps2 or r.stage2_steps,
               preset=r.preset, seed=int(seed), stage1_model=r.stage1_model, inference=r.inference)
    out = Path(out or f"runs/recipe-{recipe}")
    target = Path(target) if target else PACKAGE_CKPT
    t0 = time.time()
    torch.manual_seed(r.seed)

    s1 = stage1.run(data, out / "stage1", steps=r.stage1_steps, seed=r.seed, resume=resume, preset=r.preset,
                    model_overrides=dict(r.stage1_model), force=force)
    t1 = time.time()
    s2 = stage2.run(data, out / "stage2", steps=r.stage2_steps, seed=r.seed, resume=resume,
                    init_checkpoint=out / "stage1" / "model.safetensors", force=force)
    t2 = time.time()

    # the packaged inference settings apply to the recipe's own measurements too
    gen, lcu, space, config, tensors = package(out, r.inference, target,
                                 {"recipe": recipe, **asdict(r), "command": f"echo-cli train --recipe {recipe}",
                                  "stage1": s1.get("final", {}), "stage2": s2.get("final", {})})
    metrics = {}
    try:
        metrics = dyadic.evaluate(gen, lcu, space, data=data)
    except Exception as e:   # measurements must not lose a finished training run
        LOG.warning("held-out measurements failed: %s", e)
        metrics = {"error": str(e)}
    try:
        from echo_cli.train import lipsync_eval
        packaged = str(checkpoint_paths(target)[0])
        tag = lipsync_eval._tag(packaged, [packaged])
        ls = lipsync_eval.evaluate([packaged])
        metrics["lipsync_held_out"] = {r["clip"]: {k.replace(f"{tag}_", ""): v for k, v in r.items() if k != "clip"}
                                       for r in ls["rows"]}
    except Exception as e:   # as above: report, keep the run
        LOG.warning("lip-sync measurement failed: %s", e)
        metrics["lipsync_held_out"] = {"error": str(e)}
    t3 = time.time()

    timing = {"stage1_s": round(t1 - t0, 1), "stage2_s": round(t2 - t1, 1), "eval_s": round(t3 - t2, 1)}
    config["training"]["timing"] = timing
    config["metrics"] = metrics
    save_checkpoint(target, tensors, config)
    st, js = checkpoint_paths(target)
    size = st.stat().st_size
    if size > MAX_BYTES:
        LOG.warning("checkpoint is %.1f MB, over the 10 MB budget", size / 1e6)
    write_model_card(st.parent / "MODEL_CARD.md", config, size, data)
    summary = {"model": str(st), "bytes": size, "timing": timing, "metrics": metrics}
    common.write_json(out / "summary.json", summary)
    return summary


def _lipsync_lines(rows: dict) -> str:
    """A markdown table of the recipe's lip-sync rows (corr at best lag |L| <= 5, lag, envelope ratio)."""
    if not rows or "error" in rows:
        return f"Not measured ({rows.get('error', 'no rows')})." if isinstance(rows, dict) else "Not measured."
    out = ["| clip | frames | linear baseline | model corr | lag | envelope ratio | seam jitter ratio |",
           "|---|---|---|---|---|---|---|"]
    for clip, r in rows.items():
        out.append(f"| {clip} | {r.get('frames')} | {r.get('baseline_corr')} | {r.get('corr')} | {r.get('lag')} | "
                   f"{r.get('env_ratio')} | {r.get('seam_ratio')} |")
    out.append("")
    out.append("Acceptance (issue 6): corr >= 0.6 at lag <= 1, envelope ratio >= 0.8.")
    return "\n".join(out)


def write_model_card(path: Path, config: dict, size: int, data=None) -> None:
    from echo_cli.io_atomic import write_text
    from echo_cli.train.data import shared_data_dir

    tr = config["training"]
    d = Path(data) if data else shared_data_dir()
    attribution = ""
    if d is not None and (d / "README.md").is_file():
        txt = (d / "README.md").read_text()
        # the provenance paragraph and the talking/ table carry the licences
        start = txt.find("Provenance:")
        attribution = txt[start: txt.find("\n\n", start)] if start >= 0 else ""
        t0 = txt.find("## talking/")
        t1 = txt.find("## audio/")
        if t0 >= 0:
            attribution += "\n\n" + txt[t0:t1 if t1 > t0 else None].strip()
    m = config.get("metrics", {})
    rp = tr.get("ridge_prior") or {}
    ridge_lines = [] if rp.get("lambda") is None else [
        f"- Ridge mouth prior: lambda {rp['lambda']:g} by leave-one-speaker-out CV {json.dumps(rp.get('loso_cv'))}; "
        f"training clips re-aligned on its own out-of-speaker predictions (frames): {json.dumps(rp.get('realigned') or {})} "
        "(docs/generator.md \"Re-aligning the training clips on the prior\")."]
    lines = [
        "# echo-cli default checkpoint",
        "",
        f"`default.safetensors` ({size / 1e6:.2f} MB) + `default.json`: generator (`generator.*`), "
        "LCU (`lcu.*`) and MotionSpace (`motion_space.*`). Safetensors only, never pickle.",
        "",
        "## Recipe",
        "",
        f"Command: `{tr['command']}` (seed {tr['seed']}; stage 1: {tr['stage1_steps']} steps, "
        f"stage 2: {tr['stage2_steps']} steps, generator preset `{tr['preset']}`).",
        f"Timing on this machine: {json.dumps(tr.get('timing', {}))}.",
        "",
        "- Stage 1: talking-head training on real speech clips (lip sync), user context dropped; "
        f"generator overrides of the preset: {dict(tr.get('stage1_model') or ()) or 'none (frozen ridge mouth prior)'}.",
        *ridge_lines,
        f"- Inference settings packaged with the generator: {tr.get('inference_resolved') or dict(tr.get('inference') or ()) or 'none'} "
        f"(recipe: {dict(tr.get('inference') or ()) or 'none'}; \"calibrated\" = stage 1's least-squares slope of the "
        "training mouth codes on the ridge prior; docs/generator.md \"Quiet gate and prior gain\").",
        f"- Audio features: `{config['generator'].get('audio_input')}` (model/audio_encoder.py; "
        "\"whisper_mid\" = Whisper-base encoder blocks 2-3, docs/generator.md \"Whisper's middle layers\").",
        "- Stage 2: LCU + generator jointly on dyadic conversations *constructed* from single-person clips "
        "(train/dyadic.py, docs/lcu.md): avatar speaking windows from real speech clips, listening windows "
        "from real non-speaking clips edited by literature rules (closed mouth, delayed smile mirroring "
        "0.2–1.5 s, backchannel nods at user pauses, emotion-congruent smile).",
        f"- Training clips: {json.dumps(tr.get('data', {}))}",
        "",
        "## Lip sync (held-out speakers; "
        "`python -m echo_cli.train.lipsync_eval echo_cli/checkpoints/default.safetensors`)",
        "",
        _lipsync_lines(m.get("lipsync_held_out", {})),
        "",
        "## Metrics (held-out pairs, motion space; `python -m echo_cli.train.dyadic --checkpoint ...`)",
        "",
        "```",
        json.dumps(m, indent=2, sort_keys=True),
        "```",
        "",
        "## Data and attribution",
        "",
        "Trained only on ../shared/data (no dyadic corpus exists there; all conversations are constructed).",
        "",
        attribution,
        "",
        "## Limits",
        "",
        "Reactions are learned from rule-based targets, not from observed real dyads; emotion conditioning "
        "knows happy / neutral / sad as smile levels only. A small CPU model: expect modest fidelity.",
        "",
    ]
    write_text(path, "\n".join(lines))
