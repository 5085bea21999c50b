"""Facial motion: landmarks + pose <-> a compact per-frame vector, and retargeting.

    from echo_cli.motion.space import MotionSpace, default_space   # encode / decode, masks
    from echo_cli.motion.retarget import Reference, retarget, to_reference_landmarks
    from echo_cli.motion import measures, regions                  # mouth_opening, index sets

See docs/motion.md. (No re-exports: importing echo_cli.motion stays cheap.)
"""
