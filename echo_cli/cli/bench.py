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
           "           echo-cli bench render --sizes 256,512 --frames 60 --out bench.json --no-doc\n\n"
           "           echo-cli bench history end-to-end --last 5      # past runs, headline figures")


def register(app: typer.Typer) -> None:
    @app.command("bench", epilog=EXAMPLE, no_args_is_help=True)
    def bench(
        target: Annotated[str, typer.Argument(help=f"what to measure: {', '.join(TARGETS)}; or `history` "
                                                   "to list past runs")],
        of: Annotated[Optional[str], typer.Argument(help="with `history`: only this target's runs",
                                                    show_default=False)] = None,
        last: Annotated[int, typer.Option(min=1, help="with `history`: how many runs to list")] = 20,
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

        if target == "history":
            if of is not None and of not in TARGETS:
                raise UsageError(f"unknown bench target '{of}'", fix=f"use one of: {', '.join(TARGETS)}")
            _show_history(history, of, last)
            return
        if of is not None:
            raise UsageError(f"unexpected argument '{of}' after the target", fix=f"echo-cli bench {target} [OPTIONS]")
        if target not in TARGETS:
            raise UsageError(f"unknown bench target '{target}'", fix=f"use one of: {', '.join(TARGETS)}, history")
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
        extra = _set_options(target, getattr(module, "SET_OPTIONS", None), set_ or [])
        from echo_cli.bench.common import DOC_DEFAULT, BenchArgs

        if doc is None:     # the project's own doc (a checkout), never ./docs of wherever this runs
            doc = DOC_DEFAULT if DOC_DEFAULT.is_file() else None
        elif not no_doc and not doc.parent.is_dir():
            from echo_cli.errors import OutputError

            raise OutputError("--doc names a file in a folder that does not exist", path=doc,
                              fix="give an existing Markdown file's path, or --no-doc")

        from echo_cli.bench.common import append_history

        append_history(None, history)   # a history that cannot be written fails now, not after the bench
        args = BenchArgs(frames=frames, sizes=size_t, out=out, doc=None if no_doc or doc is None else doc, history=history,
                         quick=quick, long_seconds=long_seconds, extra=extra,
                         command="echo-cli " + " ".join(sys.argv[1:]) if sys.argv[1:] else f"echo-cli bench {target}")
        record = module.run(args)
        rows = record.get("rows", [])
        human = "\n".join(str({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}) for r in rows)
        # "command" of a --json payload is the command's name, as for every other command; the
        # record's full command line (the history file's "command") goes out as "command_line"
        payload = {k: v for k, v in record.items() if k != "command"}
        from echo_cli.bench import history as H

        before = H.previous(record, H.read(Path(record["history"])))
        changes = H.compare(record, before)
        payload["previous_run"] = None if before is None else {"time": before.get("time"), "figures": changes}
        human = (human or f"bench {target} done") + "\n" + H.describe(record, before, changes)
        emit({**payload, "command_line": record.get("command")}, human=human)


def _show_history(path: Path | None, target: str | None, last: int) -> None:
    from echo_cli.bench import history as H
    from echo_cli.bench.common import default_history
    from echo_cli.cli.common import emit

    path = path or default_history()
    records = [r for r in H.read(path) if target is None or r.get("target") == target][-last:]
    runs = [{"time": r.get("time"), "target": r.get("target"), "git": (r.get("machine") or {}).get("git"),
             "load_1min": (r.get("machine") or {}).get("load_1min"),
             "figures": {k: v for k, (v, _) in H.headline(r).items()}} for r in records]
    emit({"history": str(path), "runs": runs},
         human=H.table(records) if records else f"no bench runs{' of ' + target if target else ''} in {path}")


def _set_options(target: str, known: dict | None, pairs: list[str]) -> dict:
    """--set key=value pairs, typed and range-checked against the target's SET_OPTIONS
    {key: (type,) | (type, lo, hi) | (str, choices)}; an unknown key or a bad value is a usage
    error (they crashed inside the target or were silently ignored)."""
    from echo_cli.errors import UsageError

    out: dict = {}
    for kv in pairs:
        if "=" not in kv:
            raise UsageError(f"--set '{kv}' is not key=value", fix="e.g. --set seconds=60")
        k, v = (x.strip() for x in kv.split("=", 1))
        if known is None:           # a target without declarations takes strings as they are
            out[k] = v
            continue
        if k not in known:
            names = ", ".join(sorted(known)) or "none"
            raise UsageError(f"bench {target} has no option '{k}'", fix=f"its --set options: {names}")
        kind, *rule = known[k]
        if kind is str:
            if rule and v not in rule[0]:
                raise UsageError(f"--set {k}={v!r}: use one of {', '.join(rule[0])}", fix=f"e.g. --set {k}={rule[0][0]}")
            out[k] = v
            continue
        try:
            val = kind(v)
        except ValueError:
            raise UsageError(f"--set {k}={v!r} is not {'an integer' if kind is int else 'a number'}",
                             fix=f"e.g. --set {k}={rule[0] if rule else 1}") from None
        if rule and not rule[0] <= val <= rule[1]:
            raise UsageError(f"--set {k}={v} is out of range {rule[0]:g}..{rule[1]:g}", fix=f"e.g. --set {k}={rule[0]:g}")
        out[k] = val
    return out
