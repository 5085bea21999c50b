"""Chunked, streaming motion generation: pure chunk plans and cross-fade weights, the
flow-matching sampler, and the engine that ties them to a model.

    from echo_cli.generate.engine import generate, generate_all, GenerationInputs
"""
