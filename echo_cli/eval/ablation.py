"""The paper's ablation in our metrics: full model vs w/o LPE, HBCU, LAU and SDCM.

    python -m echo_cli.eval.ablation train-entangled --out runs/ablation-entangled [--steps1 700 --steps2 250]
    python -m echo_cli.eval.ablation table --full CKPT --entangled runs/ablation-entangled/stage2/model.safetensors --json OUT

w/o LPE / HBCU / LAU switch a branch off at inference in the one trained model
(`dyadic.evaluate(ablate=...)`, the same switches as `echo-cli render --ablate`).
w/o SDCM needs a generator *trained* with `fusion="entangled"` (model/sdcm.py: the
user/audio mix is added to every token and no region attention mask keeps the lips
user-free), so `train-entangled` runs the default recipe's two stages with that one change:
stage 1 (same steps, preset, seed, data) and stage 2 (same steps, same dyadic windows).
Its output goes to runs/, never to the package.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np

from echo_cli import log

LOG = log.get("echo_cli.eval.ablation")


@contextlib.contextmanager
def entangled_configs():
    """Every generator config made inside is the entangled-fusion ablation.

    Stage 1 builds its GeneratorConfig with `model.generator.make_config` inside `run()`;
    rather than adding an ablation knob to the stage-1 trainer, the ablation swaps that
    factory for the duration of the run (stage 2 reads the fusion from the checkpoint)."""
    from echo_cli.model import generator as G

    orig = G.make_config

    def make(preset="tiny", layout=None, **over):
        return G.with_fusion(orig(preset, layout, **over), "entangled")

    G.make_config = make
    try:
        yield
    finally:
        G.make_config = orig


def train_entangled(out: str | Path, data=None, steps1: int | None = None, steps2: int | None = None,
                    seed: int = 0, resume: bool = False) -> dict:
    """The default recipe's stage 1 + stage 2 with fusion="entangled" into `out`, packaged as
    `out`/model.safetensors with the recipe's inference settings (recipe.package), so it runs
    exactly like the shipped default."""
    from echo_cli.train import recipe, stage1, stage2

    r = recipe.RECIPES["default"]
    out = Path(out)
    with entangled_configs():
        s1 = stage1.run(data, out / "stage1", steps=steps1 or r.stage1_steps, seed=seed, resume=resume,
                        preset=r.preset)
    s2 = stage2.run(data, out / "stage2", steps=steps2 or r.stage2_steps, seed=seed, resume=resume,
                    init_checkpoint=out / "stage1" / "model.safetensors")
    packaged = out / "model.safetensors"
    recipe.package(out, r.inference, packaged, {"recipe": "default", "variant": "entangled", "seed": seed,
                                                "command": f"python -m echo_cli.eval.ablation train-entangled --out {out}"})
    return {"stage1": s1, "stage2": s2, "model": str(packaged)}


PAPER = {  # ECHO Table 1 (RealTalk / HDTF / Seamless Interaction, 3DMM coefficients, SyncNet)
    "full": {"rpcc": 0.109, "sid": 2.631, "var": 1.543, "lse_d": 7.899, "lse_c": 6.701},
    "lpe": {"rpcc": 0.131, "sid": 2.392, "var": 1.316, "lse_d": 7.925, "lse_c": 6.691},
    "hbcu": {"rpcc": 0.129, "sid": 2.499, "var": 1.397, "lse_d": 7.908, "lse_c": 6.683},
    "lau": {"rpcc": 0.124, "sid": 2.558, "var": 1.486, "lse_d": 7.914, "lse_c": 6.689},
    "sdcm": {"rpcc": 0.119, "sid": 2.601, "var": 1.519, "lse_d": 8.009, "lse_c": 6.572},
}
ROWS = (("full", "full model"), ("lpe", "w/o LPE"), ("hbcu", "w/o HBCU"), ("lau", "w/o LAU"), ("sdcm", "w/o SDCM (entangled)"))


def table(results: dict[str, dict]) -> str:
    """Markdown: ours (held-out dyadic measurements, motion space) beside the paper's numbers."""
    def f(x, nd=3):
        return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"

    head = ("| variant | rPCC ↓ (ours) | SID ↑ (ours) | Var ↑ (ours) | lip sync PCC ↑ (ours) | "
            "listen/speak mouth std (ours) | paper rPCC | paper SID | paper Var | paper LSE-D ↓ | paper LSE-C ↑ |")
    lines = [head, "|" + "---|" * 11]
    for key, name in ROWS:
        r, pp = results.get(key) or {}, PAPER[key]
        lines.append(f"| {name} | {f(r.get('rpcc'))} | {f(r.get('sid'))} | {f(r.get('var'), 4)} | "
                     f"{f(r.get('lip_sync_pcc'))} | {f(r.get('mouth_std_ratio'))} | {pp['rpcc']:.3f} | "
                     f"{pp['sid']:.3f} | {pp['var']:.3f} | {pp['lse_d']:.3f} | {pp['lse_c']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m echo_cli.eval.ablation", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-entangled")
    t.add_argument("data", nargs="?", default=None)
    t.add_argument("--out", default="runs/ablation-entangled")
    t.add_argument("--steps1", type=int, default=None)
    t.add_argument("--steps2", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--stage", choices=("both", "1", "2"), default="both")
    t.add_argument("--rule", action="append", default=[],
                   help="dyadic.RuleConfig field=value for stage 2 (match the checkpoint being compared)")
    t.add_argument("--no-context-silence", action="store_true",
                   help="stage 2 with isolated silence only (as checkpoints trained before it existed)")
    tb = sub.add_parser("table", help="markdown table from dyadic JSONs (python -m echo_cli.train.dyadic --json)")
    for key, _ in ROWS:
        tb.add_argument(f"--{key}", default=None, help=f"JSON of the {key} variant")
    a = p.parse_args(argv)
    log.setup(0)
    if a.cmd == "table":
        res = {k: json.loads(Path(getattr(a, k)).read_text()) for k, _ in ROWS if getattr(a, k)}
        print(table(res), end="")
        return
    if a.cmd == "train-entangled":
        if a.stage == "both":
            res = train_entangled(a.out, a.data, a.steps1, a.steps2, a.seed, a.resume)
        elif a.stage == "1":
            from echo_cli.train import recipe, stage1
            r = recipe.RECIPES["default"]
            with entangled_configs():
                res = stage1.run(a.data, Path(a.out) / "stage1", steps=a.steps1 or r.stage1_steps, seed=a.seed,
                                 resume=a.resume, preset=r.preset)
        else:
            from echo_cli.train import recipe, stage2
            r = recipe.RECIPES["default"]
            rules = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.rule)}
            res = stage2.run(a.data, Path(a.out) / "stage2", steps=a.steps2 or r.stage2_steps, seed=a.seed,
                             resume=a.resume, init_checkpoint=Path(a.out) / "stage1" / "model.safetensors",
                             config=stage2.Stage2Config(rules=rules, context_silence=not a.no_context_silence))
        print(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
