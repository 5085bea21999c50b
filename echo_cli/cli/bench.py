"""`echo-cli bench TARGET`: measure speed and memory; write JSON, docs/performance.md, history.

Convention (see cli/main.py): define `register(app)`; keep imports light.
Each target is a module `echo_cli.bench.<target>` (end-to-end -> end_to_end) with
`run(args: echo_cli.bench.common.BenchArgs) -> dict`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

TARGETS = ("preprocess", "generate", "render", "end-to-end", "batch")
EXAMPLE = ("Examples:  echo-cli bench render\n\n"
           "           echo-cli bench render --sizes 256,512 --frames 60 --out bench.json --no-doc")


def register(app: typer.Typer) -> None:
    @app.command("bench", epilog=EXAMPLE, no_args_is_help=True)
    def bench(
        target: Annotated[str, typer.Argument(help=f"what to measure: {', '.join(TARGETS)}")],
        frames: Annotated[Optional[int], typer.Option(min=1, help="frames per measurement (target default)")] = None,
        sizes: Annotated[Optional[str], typer.Option(help="comma-separated frame sizes, e.g. 256,512,1024")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write the JSON result here")] = None,
        doc: Annotated[Optional[Path], typer.Option(help="Markdown file whose bench section is updated "
                                                     "(default: the project's docs/performance.md)")] = None,
        no_doc: Annotated[bool, typer.Option("--no-doc", help="do not touch the docs")] = False,
        history: Annotated[Optional[Path], typer.Option(help="JSON-lines history file (default: cache dir)")] = None,
        quick: Annotated[bool, typer.Option("--quick", help="smallest meaningful run")] = False,
        long_seconds: Annotated[Optional[float], typer.Option(
            "--long-seconds", min=1.0, help="also measure peak memory of a streamed render this long")] = None,
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="target option key=value (repeatable)")] = None,
    ) -> None:
        """Measure a stage's speed (ms/frame, against a plain H.264 encode) and memory."""
        import importlib

        from echo_cli.cli.common import emit
        from echo_cli.errors import DependencyError, UsageError

        if target not in TARGETS:
            raise UsageError(f"unknown bench target '{target}'", fix=f"use one of: {', '.join(TARGETS)}")
        mod_name = f"echo_cli.bench.{target.replace('-', '_')}"
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name:
                raise
            raise DependencyError(f"bench target '{target}' is not built yet in this version",
                                  fix=f"use one of the built targets (e.g. render) or update echo-cli") from e
        try:
            size_t = tuple(int(s) for s in sizes.split(",")) if sizes else None
        except ValueError as e:
            raise UsageError(f"--sizes '{sizes}' is not a comma-separated list of integers",
                             fix="e.g. --sizes 256,512") from e
        if size_t and not all(64 <= v <= 4096 for v in size_t):
            raise UsageError(f"--sizes must be within 64..4096, got '{sizes}'", fix="e.g. --sizes 256,512")
        extra = {}
        for kv in set_ or []:
            if "=" not in kv:
                raise UsageError(f"--set '{kv}' is not key=value", fix="e.g. --set steps=4")
            k, v = kv.split("=", 1)
            extra[k.strip()] = v.strip()
        from echo_cli.bench.common import DOC_DEFAULT, BenchArgs

        if doc is None:     # the project's own doc (a checkout), never ./docs of wherever this runs
            doc = DOC_DEFAULT if DOC_DEFAULT.is_file() else None

        args = BenchArgs(frames=frames, sizes=size_t, out=out, doc=None if no_doc or doc is None else doc, history=history,
                         quick=quick, long_seconds=long_seconds, extra=extra,
                         command="echo-cli " + " ".join(sys.argv[1:]) if sys.argv[1:] else f"echo-cli bench {target}")
        record = module.run(args)
        rows = record.get("rows", [])
        human = "\n".join(str({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}) for r in rows)
        emit(record, human=human or f"bench {target} done")
