"""Renderers: reference image + landmarks -> frames (docs/motion.md, section 3).

    from echo_cli.render.warp import MeshWarpRenderer     # the default renderer
    from echo_cli.render.base import Renderer, load_reference_image
"""
