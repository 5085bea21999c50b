"""`echo-cli reenact`: drive a portrait with the facial motion of a real video.

Convention (see cli/main.py): define `register(app)`; keep imports light.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLE = ("Examples:  echo-cli reenact portrait.jpg driving.mp4 -o out.mp4 --size 512\n\n"
           "           echo-cli reenact --reference-frame 0 driving.mp4 -o self.mp4   (self-reenactment)")


def register(app: typer.Typer) -> None:
    @app.command("reenact", epilog=EXAMPLE, no_args_is_help=True)
    def reenact(
        args: Annotated[list[str], typer.Argument(
            help="REFERENCE DRIVING.mp4, or just DRIVING.mp4 with --reference-frame",
            metavar="[REFERENCE] DRIVING")],
        output: Annotated[Path, typer.Option("--output", "-o", help="output MP4 (H.264 + the driving audio)")],
        size: Annotated[Optional[int], typer.Option(min=64, max=4096, help="output height in pixels (default: the reference's, at most 1024)")] = None,
        fps: Annotated[Optional[float], typer.Option(min=0.1, max=120, help="output frame rate (default: the driving video's)")] = None,
        reference_frame: Annotated[Optional[int], typer.Option(
            "--reference-frame", help="use this frame of the driving video as the reference (self-reenactment)")] = None,
        face_index: Annotated[Optional[int], typer.Option(
            "--face-index", min=0, help="several faces in the reference: animate the n-th from the left")] = None,
        expression_scale: Annotated[float, typer.Option(min=0.0, max=5.0, help="scale of the driving expressions")] = 1.0,
        no_pose: Annotated[bool, typer.Option("--no-pose", help="keep the head still; expressions only")] = False,
        max_frames: Annotated[Optional[int], typer.Option(min=1, help="render only the first N frames (preview)")] = None,
        crf: Annotated[int, typer.Option(min=0, max=51, help="H.264 quality (lower = better)")] = 20,
        no_audio: Annotated[bool, typer.Option("--no-audio", help="do not mux the driving audio")] = False,
    ) -> None:
        """Drive a portrait with the head and face motion of a real video, with its audio."""
        from echo_cli.cli.common import emit, progress
        from echo_cli.errors import UsageError

        if reference_frame is None and len(args) != 2:
            raise UsageError("expected REFERENCE and DRIVING", fix="echo-cli reenact portrait.jpg driving.mp4 -o out.mp4")
        if reference_frame is not None and len(args) not in (1, 2):
            raise UsageError("expected DRIVING (and no REFERENCE) with --reference-frame",
                             fix="echo-cli reenact --reference-frame 0 driving.mp4 -o out.mp4")
        if size is not None and not 64 <= size <= 4096:
            raise UsageError(f"--size {size} is out of range", fix="use 64..4096")
        if fps is not None and not 0 < fps <= 120:
            raise UsageError(f"--fps {fps} is out of range", fix="use 1..120")
        if output.suffix.lower() != ".mp4":
            raise UsageError(f"output must be an .mp4 file, got '{output.name}'", fix="use -o out.mp4")
        from echo_cli.api.reenact import ReenactOptions, reenact as run_reenact

        reference = None if reference_frame is not None and len(args) == 1 else Path(args[0])
        driving = Path(args[-1])
        opts = ReenactOptions(size=size, fps=fps, reference_frame=reference_frame, face_index=face_index,
                              expression_scale=expression_scale, pose=not no_pose, max_frames=max_frames,
                              crf=crf, audio=not no_audio)
        with progress(total=None, desc="reenact") as bar:
            res = run_reenact(reference, driving, output, opts, progress=bar)
        emit(res.summary(), human=f"wrote {res.output} ({res.frames} frames, {res.width}x{res.height}, "
                                  f"{res.fps:g} fps{', audio' if res.audio else ''})")
