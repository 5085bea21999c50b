"""`echo-cli render DIALOGUE.yaml [...]`: one conversation -> one MP4 (several: one each, in one
process, models loaded once; every file is validated before the first render, and one bad
file does not stop the others: exit 8 when some failed, their own code when all did)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLE = """Examples:

  echo-cli render samples/dialogue.yaml

  echo-cli --json render talk.yaml --preset draft --fps 30 --output out/talk.mp4

  echo-cli render talks/*.yaml --preset draft       # several: each to its own output.path

Precedence of settings: CLI flag > dialogue.yaml > preset > built-in default."""


def common_state_json() -> bool:
    from echo_cli.cli.common import state

    return bool(state().json)


def register(app: typer.Typer) -> None:
    @app.command("render", epilog=EXAMPLE)
    def render(
        dialogues: Annotated[list[Path], typer.Argument(help="dialogue.yaml to render (or a folder holding one, as "
                                                             "`echo-cli init DIR` makes); several: each in turn",
                                                        show_default=False, metavar="DIALOGUE.yaml")],
        output: Annotated[Optional[str], typer.Option("--output", "-o", show_default=False, help="output .mp4 (overrides output.path); a folder (existing, or ending in /): output.path's file name in it (with several dialogues, always a folder)")] = None,
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
        if len(dialogues) > 1:
            _render_several(dialogues, output=output, preset=preset, seed=seed, checkpoint=checkpoint,
                            overrides=overrides, dry_run=dry_run, ablate=tuple(ablate or ()), explain=explain)
            return
        dialogue = dialogues[0]
        # Third-party libraries (pyannote, lightning, whisperx) print to stdout; stdout is for
        # results (`--json` promises exactly one JSON object there), so their chatter goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            res = api_render(dialogue, output=output, preset=preset, seed=seed, checkpoint=checkpoint,
                             overrides=overrides, progress=progress, dry_run=dry_run, explain=explain,
                             ablate=tuple(ablate or ()))
        if dry_run:
            from echo_cli.dialogue import dialogue_file

            human = f"ok: {dialogue_file(dialogue)} is valid; would write {res['output']} (preset {res['preset']})"
        else:
            human = f"wrote {res['output']} ({res.get('duration', 0):.2f} s, {res.get('frames', 0)} frames)"
        if explain and "explanation" in res:
            import sys

            from echo_cli.lcu.explain import format_explanation

            # the explanation is a result: on stdout (inside the JSON object under --json)
            if not common_state_json():
                print(format_explanation(res["explanation"]), file=sys.stdout)
        emit(res, human=human)


def _render_several(dialogues: list[Path], *, output: str | None, dry_run: bool, explain: bool, **kw) -> None:
    """Each dialogue in turn. All are validated first (a typo in the tenth file is found before
    an hour of rendering), two that would write one file are refused, and a failure is that
    file's one line: the others still render."""
    import contextlib
    import os
    import sys

    import typer

    from echo_cli.api.render import render as api_render
    from echo_cli.cli.common import emit, emit_error, progress, state
    from echo_cli.errors import EchoError, PartialFailure, UsageError, all_failed

    if output is not None and not Path(output).is_dir():
        from echo_cli.dialogue import OUTPUT_SUFFIXES

        if Path(output).exists() or Path(output).suffix.lower() in OUTPUT_SUFFIXES:
            raise UsageError(f"--output with {len(dialogues)} dialogues must be a folder, got '{output}'",
                             fix="give a folder (each video keeps its output.path file name), or render one at a time")
        output = output.rstrip("/" + os.sep) + os.sep    # a folder to make (each render creates its output's folder)
    if explain:
        raise UsageError("--explain takes one dialogue", fix="render the one to explain on its own")
    failed: dict[Path, EchoError] = {}
    results: list[dict] = []
    said = sys.stderr if state().json else sys.stdout        # "wrote ..." lines: results, unless --json

    def fail(d: Path, e: EchoError) -> None:
        failed[d] = e
        print(e.one_line() if e.path else f"error: {d}: {e.one_line().removeprefix('error: ')}", file=sys.stderr)

    with contextlib.redirect_stdout(sys.stderr):
        with _quiet_preflight(not dry_run):   # the render pass says its warnings again: once is enough
            _validate_all(dialogues, output, kw, fail, api_render)
        for d in dialogues:
            if dry_run or d in failed:
                continue
            try:
                res = api_render(d, output=output, progress=progress, **kw)
            except EchoError as e:
                fail(d, e)
                continue
            results.append({"dialogue": str(d), **res})
            print(f"wrote {res['output']} ({res.get('duration', 0):.2f} s, {res.get('frames', 0)} frames)",
                  file=said, flush=True)
    n, n_fail = len(dialogues), len(failed)
    summary = {"dialogues": [str(d) for d in dialogues], "dry_run": dry_run, "renders": results,
               "failed": [{"dialogue": str(d), **e.to_dict()} for d, e in failed.items()]}
    if not n_fail:
        emit(summary, human=f"ok: {n} dialogues are valid" if dry_run else f"rendered {n} dialogues")
        return
    err = PartialFailure(f"{n_fail} of {n} dialogues failed; the rest {'are valid' if dry_run else 'rendered'}",
                         fix="see the lines above and fix those files")
    if n_fail == n:
        err = all_failed((e.exit_code for e in failed.values()), f"all {n} dialogues failed", fix=err.fix)
    print(err.one_line(), file=sys.stderr)
    if state().json:
        emit_error(err.to_dict(), summary)
    raise typer.Exit(err.exit_code)


def _validate_all(dialogues: list[Path], output: str | None, kw: dict, fail, api_render) -> None:
    """Each dialogue's preflight (cheap probes, no model), and no two writing one file."""
    from echo_cli.errors import EchoError, OutputError

    planned: dict[str, Path] = {}
    for d in dialogues:
        try:
            res = api_render(d, output=output, dry_run=True, **kw)
            if res["output"] in planned:
                raise OutputError(f"writes the same output as {planned[res['output']]} ({res['output']})",
                                  path=d, fix="give the dialogues different output.path values")
            planned[res["output"]] = d
        except EchoError as e:
            fail(d, e)


@contextmanager
def _quiet_preflight(quiet: bool):
    import logging

    log = logging.getLogger("echo_cli.api.render")
    level = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
