"""LCU, the paper's long-range contextual understanding: LPE, HBCU, GCA fusion and LAU.

Public API (heavy imports stay inside the submodules; importing this package is cheap):
- `LCU`, `LCUConfig` (lcu.model): user audio + motion + behaviour embeddings → f_pu.
- `describe_behaviour`, `behaviour_embeddings` (lcu.hbcu): per-window behaviour text → S_usr.
- `infer_turn_emotions`, `emotion_embedding` (lcu.lau): dialogue → per-turn emotion → c_emo.
"""
from __future__ import annotations

__all__ = ["LCU", "LCUConfig"]


def __getattr__(name):
    if name in ("LCU", "LCUConfig"):
        from echo_cli.lcu import model
        return getattr(model, name)
    raise AttributeError(name)
