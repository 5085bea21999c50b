"""The `echo-cli` entry point: global options, command registration, error -> exit code.

CONVENTION FOR COMMAND MODULES (cli/<command>.py):
    Each module defines `register(app: typer.Typer) -> None`, which adds its command(s)
    with `@app.command("name", help=..., epilog=EXAMPLE)`. Every --help shows an example
    (put it in the docstring/epilog). Keep module-level imports light (no torch, mediapipe,
    numpy-heavy code): `echo-cli --help` must answer in well under 0.5 s; import heavy
    things inside the command function. Print results through `cli.common.emit(...)`
    (one JSON object under --json), progress through `cli.common.progress(...)`, and raise
    errors from echo_cli.errors: `run()` prints their one line and exits with their code.

Exit codes are errors.EXIT_CODES (README "Exit codes"): 0 ok, 1 internal error, 2 usage,
3 spec, 4 input, 5 model, 6 dependency, 7 output, 8 partial, 130 interrupted.
"""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from echo_cli import __version__
from echo_cli.cli import common

COMMAND_MODULES = ("render", "preprocess", "reenact", "batch", "train", "eval", "bench",
                   "doctor", "presets", "init")

app = typer.Typer(
    name="echo-cli",
    help="Render the avatar's head in a two-person conversation (ECHO), in batch.\n\n"
         "Example:  echo-cli render samples/dialogue.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        if _json_requested(_ARGV):      # eager: runs before the --json option is stored
            import json

            print(json.dumps({"ok": True, "command": "version", "version": __version__}))
        else:
            print(f"echo-cli {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs; tracebacks for internal errors.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout (logs stay on stderr).")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress display.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Show the version and exit.")] = None,
) -> None:
    """Global options go before the command: `echo-cli --json doctor`."""
    from echo_cli import log

    st = common.set_state(quiet=quiet, verbose=verbose, json=json_out, no_progress=no_progress,
                          command=ctx.invoked_subcommand or "")
    log.setup(st.verbosity)
    if ctx.invoked_subcommand not in (None, "doctor"):      # doctor reports it among its checks
        from echo_cli.env import env_threads

        env_threads()           # a bad value fails now, whatever the cache spares the run from reading


def _register_all() -> None:
    """Import each command module; one that fails to import becomes a command that says so
    (so a broken `train` never takes `doctor` or `render` down with it)."""
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"echo_cli.cli.{name}")
        except Exception as e:  # a bug in that module: report it when the command is used
            _register_broken(name, e)
            continue
        module.register(app)


def _register_broken(name: str, exc: Exception) -> None:
    reason = f"{exc.__class__.__name__}: {exc}".replace("\n", " ")

    @app.command(name, help=f"(unavailable: {reason[:80]})",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def _broken(ctx: typer.Context) -> None:
        raise RuntimeError(f"the '{name}' command failed to load: {reason}")


_register_all()


_ARGV: list[str] = []        # this run's arguments (for the eager --version callback)


def _json_requested(argv: list[str]) -> bool:
    # global options precede the command; stop at the first non-option word
    for a in argv:
        if a == "--json":
            return True
        if not a.startswith("-"):
            return False
    return False


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app and turn every outcome into an exit code."""
    from echo_cli.errors import EchoError, Interrupted

    own_process = argv is None          # the console script / python -m, not a caller's process
    argv = list(sys.argv[1:] if argv is None else argv)
    _ARGV[:] = argv
    if not ({"-v", "--verbose"} & set(argv)):
        from echo_cli.log import filter_native_stderr, quiet_third_party

        quiet_third_party()
        if own_process:
            filter_native_stderr()
    _sigterm_unwinds()
    command = typer.main.get_command(app)
    code = 0
    try:
        # standalone_mode=False: errors come back to us instead of being printed by Typer.
        # Typer turns KeyboardInterrupt into Exit(130), which comes back as the return value.
        rv = command.main(args=argv, prog_name="echo-cli", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == Interrupted.exit_code:
            raise KeyboardInterrupt
    except EchoError as e:
        code = e.exit_code
        _report(e.one_line(), e.to_dict(), argv, getattr(e, "details", None))
    except (KeyboardInterrupt, typer.Abort):
        what = "terminated (SIGTERM)" if _TERMINATED else "interrupted"
        saved = getattr(sys.modules.get("echo_cli.train.common"), "STATE_SAVED_AT", None)
        if common.state().command == "train" and saved is not None:     # the loop saved its last step
            err = Interrupted(f"{what} at step {saved}; training state saved",
                              fix="rerun the same command with --resume to continue")
        elif common.state().command == "train":     # stopped while preparing data: nothing to resume
            err = Interrupted(f"{what} before a training step was saved", fix="rerun the same command")
        else:
            err = Interrupted(f"{what}; no partial output was left", fix="rerun the command to finish")
        code = err.exit_code
        _report(err.one_line(), err.to_dict(), argv)
    except typer.TyperException as e:   # Typer's (vendored) click errors: bad option, missing argument
        code = int(getattr(e, "exit_code", 2) or 2)
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":
            print(e.format_message(), file=sys.stderr)
        else:
            if ctx is not None:
                print(ctx.get_usage(), file=sys.stderr)
            msg = f"error: {e.format_message()}".replace("\n", " ")
            _report(msg, {"kind": "usage", "exit_code": code, "path": None, "message": e.format_message(),
                          "fix": "see --help"}, argv)
    except typer.Exit as e:
        code = e.exit_code
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # a bug: one line, traceback only with --verbose
        from echo_cli.errors import from_os_error

        typed = from_os_error(e) if isinstance(e, OSError) else None
        if typed is not None:           # a full disk or an unwritable cache, not a bug
            code = typed.exit_code
            _report(typed.one_line(), typed.to_dict(), argv)
        else:
            code = 1
            if common.state().verbose or "--verbose" in argv or "-v" in argv:
                import traceback
                traceback.print_exc()
            msg = f"internal error: {e.__class__.__name__}: {e} (rerun with --verbose and report it)"
            _report(msg.replace("\n", " "), {"kind": "internal", "exit_code": 1, "path": None,
                                              "message": f"{e.__class__.__name__}: {e}", "fix": "report it"}, argv)
    sys.stdout.flush()
    sys.exit(code)


_TERMINATED = False


def _sigterm_unwinds() -> None:
    """SIGINT and SIGTERM (render farms, `kill`) unwind the same way: KeyboardInterrupt, temp
    files removed, exit 130. The render API's cancel flag is set too, so a library that
    swallows the exception (protobuf's C import does) cannot make us carry on."""
    import signal
    import threading

    def handler(signum, frame):
        global _TERMINATED
        _TERMINATED = _TERMINATED or signum == signal.SIGTERM
        from echo_cli import cancel

        if cancel.is_finishing():       # the output is already whole and in place: finish
            return
        cancel.request()
        raise KeyboardInterrupt

    # A signal that lands inside a callback Python cannot raise from (an at-fork hook while
    # ffmpeg is being spawned, a __del__) is "unraisable": Python would print a traceback
    # and carry on. The cancel flag is already set, so the run still stops with exit 130;
    # only the traceback, which is noise to a user, is dropped.
    default_hook = sys.unraisablehook

    def unraisable(info):
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            return
        default_hook(info)

    sys.unraisablehook = unraisable
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:   # respect `nohup`/background ignores
                signal.signal(sig, handler)


def _report(line: str, err: dict, argv: list[str], details: dict | None = None) -> None:
    print(line, file=sys.stderr)
    if common.state().json or _json_requested(argv):
        common.emit_error(err, details)


if __name__ == "__main__":
    run()
