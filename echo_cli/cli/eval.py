"""`echo-cli eval` (STUB: the owner of issue 8 replaces this file).

Convention (see cli/main.py): define `register(app)`; keep imports light.
"""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from echo_cli.cli.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("eval", epilog="Example:  echo-cli eval",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def eval(ctx: typer.Context,
              args: Annotated[Optional[list[str]], typer.Argument(help="arguments (not built yet)")] = None) -> None:
        """Not built yet in this version."""
        not_built("eval", "issue 8: evaluation")
