"""LCU: LPE (P_usr) + HBCU embeddings (S_usr) + GCA fusion → the user context f_pu.

    forward(user_audio (B,T,Fa), user_motion (B,T,D), behaviour_emb (B,T,384), state=None)
        -> (f_pu (B,T,Dc), state)

The state carries the long-range scans and the fusion history across chunks, so a
conversation processed chunk by chunk gives the same f_pu as one pass (tested). LAU is not
part of this module: its output c_emo (384-d) goes straight to the generator's `emotion`
input. Ablations of the paper are config switches: use_lpe=False zeroes P_usr,
use_hbcu=False feeds a constant "no description" embedding (zeros) to the fusion.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn

from echo_cli.features.text import TEXT_DIM
from echo_cli.lcu.fusion import FusionConfig, GCAFusion
from echo_cli.lcu.lpe import LPE, LPEConfig

LCU_SCHEMA = 1


@dataclass(frozen=True)
class LCUConfig:
    audio_dim: int = 82            # user audio features per frame (see lcu.hbcu.user_audio_features)
    motion_dim: int = 64           # MotionSpace vector size D
    regions: tuple = ()            # ((name, start, stop), ...) of the motion vector; () = equal split
    ctx_dim: int = 64              # Dc: must equal the generator's user_dim (stage 2 sets it from the generator)
    dim: int = 64                  # internal scan width
    depth: int = 2                 # scan blocks per LPE branch
    d_state: int = 8
    chunk: int = 16                # frames evaluated in parallel inside a scan
    mask_ratio: float = 0.25       # masked-encoder ratio for the motion branch (training only)
    window: int = 25               # frames per HBCU behaviour window
    n_past: int = 2                # past behaviour windows visible to the fusion
    heads: int = 4
    use_lpe: bool = True           # ablation "w/o LPE"
    use_hbcu: bool = True          # ablation "w/o HBCU"
    gate_init: float = 0.5         # GCA fusion's initial tanh-gate alpha (lcu.fusion; init only)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["regions"] = [list(r) for r in self.regions]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LCUConfig":
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "regions" in d:
            d["regions"] = tuple(tuple(r) for r in d["regions"])
        return cls(**d)


class LCU(nn.Module):
    def __init__(self, cfg: LCUConfig):
        super().__init__()
        self.cfg = cfg
        self.lpe = LPE(LPEConfig(audio_dim=cfg.audio_dim, motion_dim=cfg.motion_dim,
                                 regions=tuple(tuple(r) for r in cfg.regions), dim=cfg.dim,
                                 ctx_dim=cfg.ctx_dim, depth=cfg.depth, d_state=cfg.d_state,
                                 chunk=cfg.chunk, mask_ratio=cfg.mask_ratio))
        self.fusion = GCAFusion(FusionConfig(text_dim=TEXT_DIM, ctx_dim=cfg.ctx_dim, heads=cfg.heads,
                                             window=cfg.window, n_past=cfg.n_past,
                                             gate_init=cfg.gate_init))
        self.out_norm = nn.LayerNorm(cfg.ctx_dim)

    def forward(self, user_audio: torch.Tensor, user_motion: torch.Tensor,
                behaviour_emb: torch.Tensor, state: dict | None = None,
                motion_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        state = state or {}
        B, T, _ = user_motion.shape
        p_usr, s_lpe = self.lpe(user_audio, user_motion, state.get("lpe"), motion_mask)  # (B, T, Dc)
        if not self.cfg.use_lpe:
            p_usr = torch.zeros_like(p_usr)
        if not self.cfg.use_hbcu:
            behaviour_emb = torch.zeros_like(behaviour_emb)
        f_pu, s_fus = self.fusion(p_usr, behaviour_emb, state.get("fusion"))           # (B, T, Dc)
        return self.out_norm(f_pu), {"lpe": s_lpe, "fusion": s_fus}                     # (B, T, Dc)

    def train_mask(self, B: int, T: int, generator: torch.Generator | None = None):
        """Random region mask for the masked motion encoder (training only)."""
        return self.lpe.motion.random_mask(B, T, generator)


def detach_state(state):
    """Detach a (nested) LCU state, e.g. between truncated-backprop chunks."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(v) for v in state)
    return state


#################################################################################
#                     Inference helpers (render, eval)                          #
#################################################################################

def user_context(lcu: LCU, user_audio, user_motion_norm, behaviour_emb, chunk: int = 256):
    """Whole-timeline f_pu (n, Dc) float32, computed chunk by chunk with the state carried
    (constant memory in the LCU; equals one pass). Inputs are numpy (n, ·) arrays:
    user_audio from lcu.hbcu.user_audio_features, user_motion_norm = the generator's
    `normalize()` of the user's pose-centred motion, behaviour_emb from hbcu."""
    import numpy as np

    n = int(user_motion_norm.shape[0])
    out = np.zeros((n, lcu.cfg.ctx_dim), np.float32)
    state = None
    with torch.inference_mode():
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            a = torch.as_tensor(np.asarray(user_audio[s:e], np.float32))[None]
            m = torch.as_tensor(np.asarray(user_motion_norm[s:e], np.float32))[None]
            b = torch.as_tensor(np.asarray(behaviour_emb[s:e], np.float32))[None]
            y, state = lcu(a, m, b, state)
            out[s:e] = y[0].numpy()
    return out


def prepare_user(track, audio, space, fps: float, n_frames: int | None = None, hbcu_cfg=None,
                 media: str | None = None) -> dict:
    """A user's FaceTrack (+ AudioFeatures or None) → LCU inputs and the behaviour windows.

    Returns {"motion": (n, D) raw pose-centred motion, "audio": (n, 82), "behaviour": (n, 384)
    PiecewiseRows (compact; np.asarray expands it),
    "windows": [BehaviourWindow], "signals": BehaviourSignals}; n = n_frames or the track's.
    """
    import numpy as np

    from echo_cli.lcu import hbcu

    neutral = space.neutral_of(track)
    motion = space.encode(track, neutral=neutral)
    pose = space.regions["pose"]
    motion[:, pose] -= np.median(motion[:, pose], axis=0)
    n = int(n_frames or motion.shape[0])
    motion = _fit_rows(motion, n)                      # hold the last frame past the clip's end
    if audio is not None:
        mel, energy, vad = (_fit_rows(audio.mel, n), _fit_rows(audio.energy[:, None], n)[:, 0],
                            _fit_rows(audio.vad[:, None].astype(np.float32), n)[:, 0] > 0.5)
    else:
        from echo_cli.train.dyadic import silence_features
        _, mel, energy = silence_features(n, "mel")
        vad = np.zeros(n, bool)
    sig = hbcu.signals_from_motion(motion, space, neutral, fps, energy=energy, vad=vad)
    wins = hbcu.describe_behaviour(sig, hbcu_cfg, media=media)
    return {"motion": motion.astype(np.float32), "audio": hbcu.user_audio_features(mel, energy, vad),
            "behaviour": behaviour_track(wins, n), "windows": wins, "signals": sig,
            "neutral": neutral}


def behaviour_track(windows, n_frames: int) -> "PiecewiseRows":
    """hbcu.behaviour_embeddings(windows, n_frames) as a PiecewiseRows (the same rows: the
    window texts are embedded exactly as there), one table row per window instead of 384
    floats per frame."""
    import numpy as np

    from echo_cli.features.text import TEXT_DIM, embed_texts
    from echo_cli.lcu.hbcu import NO_USER_TEXT

    ids = np.zeros(n_frames, np.int32)                   # row 0: zeros (frames no window covers)
    if not windows:
        return PiecewiseRows(np.zeros((1, TEXT_DIM), np.float32), ids)
    emb = np.asarray(embed_texts([w.text for w in windows]), np.float32)
    for k, w in enumerate(windows):
        ids[w.start:min(w.stop, n_frames)] = k + 1
    rows = [np.zeros((1, TEXT_DIM), np.float32), emb]
    last = max(w.stop for w in windows)
    if last < n_frames:                                   # frames past the last window: no user
        rows.append(np.asarray(embed_texts([NO_USER_TEXT]), np.float32)[:1])
        ids[last:] = len(windows) + 1
    return PiecewiseRows(np.concatenate(rows), ids)


def _fit_rows(x, n: int):
    import numpy as np

    x = np.asarray(x)
    if len(x) >= n:
        return x[:n]
    if len(x) == 0:
        return np.zeros((n,) + x.shape[1:], x.dtype)
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), 0)])


def load_lcu(tensors: dict, config: dict, path="<checkpoint>") -> "LCU | None":
    """The LCU of a checkpoint (tensors with `lcu.*` keys, config with an "lcu" section);
    None for a stage-1 checkpoint without one (render then uses the "no user" context)."""
    from echo_cli.model.checkpoint import component, load_state

    if "lcu" not in config:
        return None
    lcu = LCU(LCUConfig.from_dict(config["lcu"]))
    load_state(lcu, component(tensors, "lcu"), path, "lcu")
    return lcu.eval()


class PiecewiseRows:
    """A per-frame (n, d) float32 track that changes only at a few frames (turn starts),
    stored as a (k, d) table plus (n,) int32 row ids: 4 bytes per frame instead of 4·d, so
    an hour of c_emo is 0.4 MB, not 138 MB. Indexing and slicing return what the expanded
    array would (`track[a:b]` -> (b-a, d) rows, `track[i]` -> (d,)); `np.asarray(track)`
    expands it (only for callers that need a real array; the generate engine slices it)."""

    def __init__(self, table, ids):
        import numpy as np

        self.table = np.ascontiguousarray(table, np.float32)
        self.ids = np.asarray(ids, np.int32)
        self.shape = (int(self.ids.shape[0]), int(self.table.shape[1]))
        self.ndim, self.dtype = 2, self.table.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        return self.table[self.ids[key]]

    def __array__(self, dtype=None, copy=None):
        out = self.table[self.ids]
        return out if dtype is None else out.astype(dtype, copy=False)


def emotion_track(turns, n_frames: int, fps: float, lau_cfg=None):
    """LAU over the dialogue → ((n_frames, 384) c_emo per frame as a PiecewiseRows, [TurnEmotion]).

    Frames of an avatar turn get that turn's emotion; frames between avatar turns keep the
    latest one (before the first avatar turn: the first one), so the face does not snap
    back to neutral while listening."""
    import numpy as np

    from echo_cli.lcu.lau import infer_turn_emotions
    from echo_cli.features.text import embed_texts

    emos = infer_turn_emotions(turns, lau_cfg)
    if not emos:
        return None, []
    vecs = embed_texts([e.text for e in emos])
    starts = [int(round(turns[e.turn_index].start * fps)) for e in emos]
    order = np.argsort(starts, kind="stable")
    ids = np.full(n_frames, order[0], np.int32)
    for k in order:
        ids[max(0, starts[k]):] = k
    return PiecewiseRows(np.asarray(vecs, np.float32), ids), emos


def conditioning(gen, lcu, space, fps: float, n_frames: int, turns=(), user_track=None, user_audio=None,
                 lau_cfg=None, hbcu_cfg=None, use_lau: bool = True, media: str | None = None) -> dict:
    """Everything the generator needs from the LCU side, for one render.

    gen: the EchoGenerator (for its motion normalisation); lcu: from `load_lcu` (None → no
    user context); user_track: the user's FaceTrack (None → no user in view).
    Returns {"user_ctx": (n, Dc) | None, "emotion": (n, 384) PiecewiseRows | None, "explanation": dict}.
    """
    from echo_cli.lcu.explain import explain

    emotion, emos = (emotion_track(list(turns), n_frames, fps, lau_cfg) if (use_lau and turns) else (None, []))
    user_ctx, windows = None, None
    if lcu is not None and user_track is not None:
        u = prepare_user(user_track, user_audio, space, fps, n_frames, hbcu_cfg, media)
        with torch.no_grad():
            # the generator may sit on a GPU (render --device cuda); the LCU runs on the CPU
            m = gen.normalize(torch.from_numpy(u["motion"]).to(gen.motion_mean.device)).cpu().numpy()
        user_ctx = user_context(lcu, u["audio"], m, u["behaviour"])
        windows = u["windows"]
    return {"user_ctx": user_ctx, "emotion": emotion, "explanation": explain(list(turns), emos, windows)}
