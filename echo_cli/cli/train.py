"""`echo-cli train`: stage 1 (talking head), stage 2 (dyadic, LCU) or the default recipe.

Convention (see cli/main.py): define `register(app)`; keep imports light.
Data parallel: `torchrun --nproc_per_node 2 -m echo_cli train --stage 1 --out RUN_DIR`
(gloo on CPU, NCCL on GPU); rank 0 writes the run folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLE = ("Examples:  echo-cli train --stage 1 --out runs/stage1\n\n"
           "           echo-cli train --stage 1 ../shared/data --out runs/stage1 --steps 500 --resume\n\n"
           "           echo-cli train --recipe default")


def _lazy(module: str, what: str):
    import importlib

    from echo_cli.errors import DependencyError

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise DependencyError(f"{what} is not built in this version ({module} is missing)",
                              fix="use --stage 1, or update echo-cli") from e


def register(app: typer.Typer) -> None:
    @app.command("train", epilog=EXAMPLE, no_args_is_help=True)
    def train(
        data: Annotated[Optional[Path], typer.Argument(help="data folder (default: ../shared/data)")] = None,
        stage: Annotated[Optional[int], typer.Option(help="1: talking head (lip sync); 2: dyadic (LCU)")] = None,
        recipe: Annotated[Optional[str], typer.Option(help="a full recipe, e.g. 'default' (stage 1 + 2 -> the shipped checkpoint)")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="run folder (checkpoints, losses, loss.png)")] = None,
        steps: Annotated[Optional[int], typer.Option(min=1, help="optimisation steps (default: the stage's own)")] = None,
        seed: Annotated[int, typer.Option(help="random seed")] = 0,
        resume: Annotated[bool, typer.Option("--resume", help="continue from RUN_DIR/state")] = False,
        force: Annotated[bool, typer.Option("--force", help="train over a run already in RUN_DIR (it is replaced)")] = False,
        preset: Annotated[str, typer.Option(help="generator architecture: micro, tiny, small")] = "tiny",
        attention: Annotated[str, typer.Option(help="attention backend: auto, xformers, sdpa")] = "auto",
    ) -> None:
        """Train the generator (stage 1), the LCU (stage 2) or a full recipe."""
        from echo_cli.cli.common import emit
        from echo_cli.errors import UsageError
        from echo_cli.model.attention import set_backend

        set_backend(attention)
        if recipe is not None:
            if stage is not None:
                raise UsageError("--recipe and --stage are exclusive", fix="pass one of them")
            mod = _lazy("echo_cli.train.recipe", f"recipe '{recipe}'")
            result = mod.run(recipe=recipe, data=data, out=out, seed=seed, resume=resume, force=force)
        elif stage == 1:
            if out is None:
                raise UsageError("--out is required for --stage 1", fix="e.g. --out runs/stage1")
            from echo_cli.model.generator import GENERATOR_PRESETS
            if preset not in GENERATOR_PRESETS:
                raise UsageError(f"unknown preset '{preset}'", fix=f"use one of: {', '.join(GENERATOR_PRESETS)}")
            from echo_cli.train import stage1
            result = stage1.run(data, out, steps=steps, seed=seed, resume=resume, preset=preset, force=force)
        elif stage == 2:
            if out is None:
                raise UsageError("--out is required for --stage 2", fix="e.g. --out runs/stage2")
            mod = _lazy("echo_cli.train.stage2", "stage 2 training")
            result = mod.run(data=data, out=out, steps=steps, seed=seed, resume=resume, force=force)
        elif stage is not None:
            raise UsageError(f"there is no stage {stage}", fix="pass --stage 1 (lip sync), --stage 2 (dyadic LCU) "
                                                                "or --recipe default")
        else:
            raise UsageError("choose what to train", fix="pass --stage 1, --stage 2 or --recipe default")
        emit(result, human=f"trained: {result.get('model', result)}")
