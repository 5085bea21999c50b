"""`echo-cli preprocess FOLDER`: face tracks, audio features and transcripts for a whole folder.

Exit codes: 0 every file done (or cached); 8 (PartialFailure) when some files failed while
the rest completed (each failure is one line on stderr and in the summary's "failed");
when every file failed the same way, that failure's code (4 for bad media); 4 when the
folder holds no media; 2 for bad flags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLE = """Examples:

  echo-cli preprocess ../shared/data/clips -o prep --workers 2

  echo-cli preprocess footage/ --recursive --transcript faster-whisper

  echo-cli --json preprocess footage/ -o prep --overlay --face-index 0

Results are cached (~/.cache/echo-cli or $ECHO_CACHE_DIR) by content hash + settings +
tool version: rerunning, or resuming after a kill, only computes what is missing.
Exit codes: 0 all done, 8 some files failed (the rest completed), 4 no media found."""


def _parse_pick(value: str | None) -> tuple[float, float] | None:
    from echo_cli.errors import UsageError

    if value is None:
        return None
    try:
        x, y = (float(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"--pick expects 'x,y' in 0..1, got '{value}'", fix="e.g. --pick 0.3,0.5") from None
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise UsageError(f"--pick values must be within 0..1, got '{value}'", fix="e.g. --pick 0.3,0.5")
    return x, y


def register(app: typer.Typer) -> None:
    @app.command("preprocess", epilog=EXAMPLE, no_args_is_help=True,
                 help="Face tracks, audio features and transcripts for every media file of a folder "
                      "(cached, parallel, resumable).")
    def preprocess(
        folder: Annotated[Path, typer.Argument(help="folder of videos, images and audio files (or one file)")],
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="also write results here (+ summary.json)")] = None,
        workers: Annotated[int, typer.Option("--workers", "-w", min=1, max=64, help="parallel processes")] = 1,
        recursive: Annotated[bool, typer.Option("--recursive", "-r", help="include sub-folders")] = False,
        overlay: Annotated[bool, typer.Option("--overlay", help="write a debug video with landmarks and crop box (needs -o)")] = False,
        face_index: Annotated[Optional[int], typer.Option("--face-index", min=0, help="with several faces: the n-th from the left")] = None,
        pick: Annotated[Optional[str], typer.Option("--pick", help="with several faces: the one nearest x,y (0..1)")] = None,
        transcript: Annotated[str, typer.Option("--transcript", help="auto | whisperx | faster-whisper | none (auto: WhisperX only when its alignment model is on disk)")] = "auto",
        language: Annotated[Optional[str], typer.Option("--language", help="transcript language, e.g. en (default: detect)")] = None,
        fps: Annotated[Optional[float], typer.Option("--fps", min=1.0, max=120.0, help="resample videos to this frame rate")] = None,
        no_whisper: Annotated[bool, typer.Option("--no-whisper", help="skip Whisper encoder features")] = False,
        whisper_layers: Annotated[str, typer.Option("--whisper-layers", help="Whisper encoder features: mid (blocks 2-3, what the default model reads) | final (the encoder output)")] = "mid",
        require_audio: Annotated[bool, typer.Option("--require-audio", help="a video without audio is an error")] = False,
        mirror: Annotated[bool, typer.Option("--mirror", help="steadier landmarks: also track each mirrored frame and average (about 2.5x the tracking time; what training data uses)")] = False,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="recompute everything (nothing read from or stored in the cache)")] = False,
    ) -> None:
        """Preprocess every video, image and audio file in FOLDER."""
        import sys

        from echo_cli.api.preprocess import folder_job, preprocess_folder
        from echo_cli.cli.common import emit, emit_error, progress, state
        from echo_cli.errors import PartialFailure, UsageError
        from echo_cli.preprocess.face import TrackSettings
        from echo_cli.preprocess.pipeline import PreprocessOptions

        from echo_cli.features.audio import WHISPER_LAYERS

        if whisper_layers not in WHISPER_LAYERS:
            raise UsageError(f"unknown --whisper-layers '{whisper_layers}'", fix=f"use {' or '.join(WHISPER_LAYERS)}")
        if language is not None:        # checked once here: it failed every file as an internal error
            from echo_cli.preprocess.transcript import language_codes

            codes = language_codes()
            if codes and language not in codes:
                import difflib

                close = difflib.get_close_matches(language.lower(), codes, n=1)
                raise UsageError(f"unknown --language '{language}'",
                                 fix=f"did you mean '{close[0]}'?" if close else "use a code such as en, de, fr, zh")
        if transcript not in ("auto", "whisperx", "faster-whisper", "none"):
            raise UsageError(f"unknown --transcript '{transcript}'", fix="use auto, whisperx, faster-whisper or none")
        opts = PreprocessOptions(fps=fps, face_index=face_index, pick=_parse_pick(pick), whisper=not no_whisper,
                                 transcript=None if transcript == "none" else transcript, language=language,
                                 require_audio=require_audio, whisper_layers=whisper_layers,
                                 track=TrackSettings(mirror=mirror))
        st = state()
        total = len(folder_job(folder, out, recursive, overlay, cache=not no_cache))
        with progress(total=total, desc="preprocess") as bar:
            def on_item(rec: dict) -> None:
                if rec["status"] == "failed":
                    print(rec["error"], file=sys.stderr, flush=True)
                bar.advance(1)

            summary = preprocess_folder(folder, out=out, workers=workers, recursive=recursive, overlay=overlay,
                                        options=opts, cache=not no_cache, on_item=on_item)
        n_fail = len(summary["failed"])
        human = (f"preprocessed {summary['total']} file{'' if summary['total'] == 1 else 's'}: {len(summary['done'])} done, "
                 f"{len(summary['cached'])} cached, {n_fail} failed ({summary['seconds']:.1f} s)"
                 + (f"; results in {out}" if out else ""))
        if not n_fail:
            emit(summary, human=human)
            return
        err = PartialFailure(f"{n_fail} of {summary['total']} files failed; the rest completed",
                             path=folder, fix="see the lines above (or 'failed' in the summary) and fix those files")
        if n_fail == summary["total"]:          # nothing completed: not a partial failure
            from echo_cli.errors import all_failed

            err = all_failed((f.get("exit_code", 1) for f in summary["failed"]),
                             "the file failed" if n_fail == 1 else f"all {n_fail} files failed", path=folder, fix=err.fix)
        print(human, file=sys.stderr)
        print(err.one_line(), file=sys.stderr)
        if st.json:   # exactly one JSON object: the summary with the error
            emit_error(err.to_dict(), summary)
        raise typer.Exit(err.exit_code)
