"""`echo-cli render DIALOGUE.yaml`: one conversation -> one MP4."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLE = """Examples:

  echo-cli render samples/dialogue.yaml

  echo-cli --json render talk.yaml --preset draft --fps 30 --output out/talk.mp4

Precedence of settings: CLI flag > dialogue.yaml > preset > built-in default."""


def common_state_json() -> bool:
    from echo_cli.cli.common import state

    return bool(state().json)


def register(app: typer.Typer) -> None:
    @app.command("render", epilog=EXAMPLE)
    def render(
        dialogue: Annotated[Path, typer.Argument(help="dialogue.yaml to render (or a folder holding one, as `echo-cli init DIR` makes)", show_default=False, metavar="DIALOGUE.yaml")],
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="output .mp4 (overrides output.path); an existing folder: output.path's file name in it")] = None,
        preset: Annotated[Optional[str], typer.Option("--preset", "-p", help="draft | default | quality")] = None,
        seed: Annotated[Optional[int], typer.Option("--seed", help="sampling seed")] = None,
        checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="model .safetensors")] = None,
        fps: Annotated[Optional[float], typer.Option("--fps", help="output frame rate")] = None,
        size: Annotated[Optional[int], typer.Option("--size", help="avatar size in pixels")] = None,
        crf: Annotated[Optional[int], typer.Option("--crf", help="H.264 quality (lower = better)")] = None,
        steps: Annotated[Optional[int], typer.Option("--steps", help="sampling steps")] = None,
        device: Annotated[Optional[str], typer.Option("--device", help="where the generator runs: auto | cpu | cuda")] = None,
        attention: Annotated[Optional[str], typer.Option("--attention", help="attention kernels: auto | xformers | sdpa")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="validate inputs and settings, write nothing")] = False,
        explain: Annotated[bool, typer.Option("--explain", help="print the per-turn emotion text (LAU) and the user's "
                                                                 "behaviour summaries (HBCU) used")] = False,
        ablate: Annotated[Optional[list[str]], typer.Option("--ablate", help="switch off a paper component at inference: "
                                                                              "lpe | hbcu | lau (repeatable)")] = None,
    ) -> None:
        """Render the avatar's side of a conversation described by a dialogue.yaml."""
        from echo_cli.api.render import render as api_render
        from echo_cli.cli.common import emit, progress

        import contextlib
        import sys

        overrides = {"fps": fps, "size": size, "crf": crf, "steps": steps, "device": device, "attention": attention}
        # Third-party libraries (pyannote, lightning, whisperx) print to stdout; stdout is for
        # results (`--json` promises exactly one JSON object there), so their chatter goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            res = api_render(dialogue, output=output, preset=preset, seed=seed, checkpoint=checkpoint,
                             overrides=overrides, progress=progress, dry_run=dry_run, explain=explain,
                             ablate=tuple(ablate or ()))
        if dry_run:
            shown = dialogue / "dialogue.yaml" if dialogue.is_dir() else dialogue
            human = f"ok: {shown} is valid; would write {res['output']} (preset {res['preset']})"
        else:
            human = f"wrote {res['output']} ({res.get('duration', 0):.2f} s, {res.get('frames', 0)} frames)"
        if explain and "explanation" in res:
            import sys

            from echo_cli.lcu.explain import format_explanation

            # the explanation is a result: on stdout (inside the JSON object under --json)
            if not common_state_json():
                print(format_explanation(res["explanation"]), file=sys.stdout)
        emit(res, human=human)
