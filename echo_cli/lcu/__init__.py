"""LCU, the paper's long-range contextual understanding: LPE, HBCU, GCA fusion and LAU.

Public API (heavy imports stay inside the submodules; importing this package is cheap):
- lcu.model: `LCU`, `LCUConfig` (user audio + motion + behaviour embeddings → f_pu, with a
  streaming state); `prepare_user(track, audio, space, fps)` (LCU inputs + behaviour windows
  of a user); `user_context(lcu, audio, motion_norm, behaviour)` (whole-timeline f_pu).
- lcu.hbcu: `describe_behaviour`, `behaviour_embeddings`, `HBCUConfig`, describers.
- lcu.lau: `infer_turn_emotions(turns)`, `emotion_embedding(text)` → c_emo, `LAUConfig`.
- lcu.explain: `explain(...)`, `format_explanation(...)` for `echo-cli render --explain`.
"""
from __future__ import annotations

__all__ = ["LCU", "LCUConfig"]


def __getattr__(name):
    if name in ("LCU", "LCUConfig"):
        from echo_cli.lcu import model
        return getattr(model, name)
    raise AttributeError(name)
