"""The programmatic API (what the CLI and `batch` call). Import the submodules:

    from echo_cli.api.render import render
    result = render("dialogue.yaml", preset="draft", overrides={"fps": 30})

(No re-exports here: `echo_cli.api.render` stays the module, not the function.)
"""
