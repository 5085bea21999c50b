"""`echo-cli bench` (STUB: the owner of issue 11 replaces this file).

Convention (see cli/main.py): define `register(app)`; keep imports light.
"""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from echo_cli.cli.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("bench", epilog="Example:  echo-cli bench",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def bench(ctx: typer.Context,
              args: Annotated[Optional[list[str]], typer.Argument(help="arguments (not built yet)")] = None) -> None:
        """Not built yet in this version."""
        not_built("bench", "issue 11: performance")
