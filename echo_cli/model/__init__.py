"""The ECHO generator network (imports only L0 and torch; torch is imported by the submodules).

    from echo_cli.model.generator import EchoGenerator, make_config, layout_from_motion_space
    from echo_cli.model.checkpoint import load_generator, save_generator
    from echo_cli.model.attention import set_backend      # "auto" | "xformers" | "sdpa"
"""
