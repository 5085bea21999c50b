"""`echo-cli presets [NAME]`: list the presets, or show one."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

EXAMPLE = """Examples:

  echo-cli presets              # list

  echo-cli presets quality      # show every value of one preset

  echo-cli --json presets draft

Precedence: CLI flag > dialogue.yaml (output: / settings:) > preset > built-in default."""


def register(app: typer.Typer) -> None:
    @app.command("presets", epilog=EXAMPLE)
    def presets(name: Annotated[Optional[str], typer.Argument(help="a preset to show")] = None) -> None:
        """List the render presets, or show the full settings of one."""
        from echo_cli.cli.common import emit
        from echo_cli.config import load_preset, preset_description, preset_names, resolve_settings

        if name is None:
            rows = {n: preset_description(n) for n in preset_names()}
            width = max(map(len, rows)) if rows else 0
            emit({"presets": rows}, human="\n".join(f"{n:<{width}}  {d}" for n, d in rows.items()))
            return
        values = resolve_settings(name).model_dump()
        set_by_preset = set(load_preset(name))
        lines = [f"{name}: {preset_description(name)}"]
        for k, v in values.items():
            lines.append(f"  {k:<15} {v}" + ("" if k in set_by_preset else "   (built-in default)"))
        emit({"preset": name, "description": preset_description(name), "settings": values,
              "set_by_preset": sorted(set_by_preset)}, human="\n".join(lines))
