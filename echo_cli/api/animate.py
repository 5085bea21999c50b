"""Dialogue -> motion -> frames: the model half of `render()`.

    bundle = load_bundle(checkpoint)                       # generator + LCU + motion space, once
    anim = animate(bundle, spec, settings, pre, n_frames, seed)
    for frame in anim.frames: ...                          # RGB uint8, streaming

Stages (each a named part of the paper's pipeline):
  reference   the avatar's image (or first video frame) -> landmarks -> its neutral face and
              identity codes (motion.retarget.Reference, train.data.identity_vector)
  avatar audio  AudioFeatures -> the generator's audio matrix (Whisper encoder features),
              kept in a temporary row file and read per chunk (generate.rowfile)
  turns       dialogue.yaml turns, else from the two tracks' voice activity + transcripts
  LCU         LAU (turn emotions -> c_emo per frame), LPE + HBCU + GCA fusion (user context
              f_pu per frame) via lcu.model.conditioning; no user -> the "no user" context
  generate    chunked flow-matching generation (generate.engine), streaming
  render      motion -> landmarks in the reference image (retargeted onto its own neutral
              face) -> MeshWarpRenderer frames
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from echo_cli import log
from echo_cli.errors import InputError, ModelError

logger = log.get("echo_cli.api.animate")


@dataclass
class Bundle:
    """Everything a checkpoint holds, built once per process (batch workers reuse it)."""
    generator: Any
    lcu: Any | None
    space: Any
    config: dict
    path: Path


_BUNDLES: dict[str, Bundle] = {}


def load_bundle(path: str | Path) -> Bundle:
    """NAME.safetensors (+ NAME.json) -> Bundle; cached per path for the process."""
    import torch

    from echo_cli.lcu.model import load_lcu
    from echo_cli.model.checkpoint import build_generator, load_checkpoint
    from echo_cli.motion.space import MotionSpace, default_space

    path = Path(path)
    key = str(path.resolve())
    if key in _BUNDLES:
        return _BUNDLES[key]
    # one thread per pool: ffmpeg's encoder runs beside us on the second core, and two
    # threads per pool measured slower everywhere on 2 cores (docs/performance_e2e.md)
    torch.set_num_threads(1)
    tensors, config = load_checkpoint(path)
    gen = build_generator(tensors, config, path)
    lcu = load_lcu(tensors, config, path)
    ms_t = {k[len("motion_space."):]: v.numpy() for k, v in tensors.items() if k.startswith("motion_space.")}
    space = MotionSpace.from_state_dict(ms_t, config["motion_space"]) if ms_t and "motion_space" in config \
        else default_space()
    if space.dim != gen.cfg.motion_dim:
        raise ModelError(f"the checkpoint's generator expects {gen.cfg.motion_dim} motion components but its "
                         f"motion space has {space.dim}", path=path, fix="use a checkpoint made by one recipe run")
    _BUNDLES[key] = Bundle(gen, lcu, space, config, path)
    return _BUNDLES[key]


@dataclass
class Animation:
    frames: Iterator[np.ndarray]
    n_frames: int
    width: int
    height: int
    turns: list = field(default_factory=list)
    explanation: dict = field(default_factory=dict)


def _fit_rows(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or extend (holding the last row) to n rows: the in-memory form of what
    generate.rowfile.RowFile.from_array(x, n) writes (tests/test_rowfile.py compares them)."""
    if len(x) >= n:
        return x[:n]
    if len(x) == 0:
        raise InputError("no audio frames", fix="give non-empty audio")
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), 0)])


def release_features(pre: dict) -> None:
    """Drop pre's per-frame arrays (audio features, face tracks) once animate has used them.

    They scale with the length (log-mel (T, 80) of each track, Whisper (T, 512), a user
    video's (T, 478, 3) landmarks) and render() reads only each entry's notes afterwards;
    keeping them for the frame loop made peak memory grow with the video's length.
    """
    for v in pre.values():
        if isinstance(v, dict):
            for k in ("audio", "face"):
                if k in v:
                    v[k] = None


def spill_avatar_whisper(pre: dict) -> None:
    """Move the avatar's Whisper features ((T, 512) float32, 184 MB an hour) from pre to a
    temporary row file (pre entry key "whisper_rows"; the features keep whisper=None).

    For render() to call right after preprocessing: loading the model and building the
    reference come next, and with the matrix still in memory that phase set the render's
    peak at 60 minutes (docs/performance_e2e.md "## Memory"). animate() reads the same rows
    from the file (same numbers as the in-memory path).
    """
    import dataclasses

    from echo_cli.generate.rowfile import RowFile

    avatar_pre = pre.get("avatar_audio") or pre.get("avatar_ref") or {}
    feats = avatar_pre.get("audio")
    if feats is None or feats.whisper is None or len(feats.whisper) == 0 or "whisper_rows" in avatar_pre:
        return
    rows = feats.whisper
    # preprocessed with whisper_on_disk the rows are a RowFile already: moved, not copied
    avatar_pre["whisper_rows"] = rows if isinstance(rows, RowFile) else RowFile.from_array(np.asarray(rows, np.float32))
    avatar_pre["audio"] = dataclasses.replace(feats, whisper=None)


def _spilled_audio(rows, feats, kind: str):
    """The engine's audio(start, stop) from spilled Whisper rows (+ the in-memory log-mel for
    "whisper+mel"); rows past the end hold the last one, as _fit_rows does."""
    from echo_cli.model.audio_encoder import combine_rows

    if kind in ("whisper", "whisper_mid"):
        return rows
    mel = np.asarray(feats.mel, np.float32)

    def both(a: int, b: int) -> np.ndarray:
        idx = np.clip(np.arange(a, b), 0, mel.shape[0] - 1)
        return combine_rows(kind, rows(a, b), mel[idx])
    return both


def dialogue_turns(spec, avatar_audio, user_audio, avatar_tr=None, user_tr=None) -> list:
    """The dialogue's turns: given in the YAML, or derived from voice activity (+ words)."""
    from echo_cli.preprocess.turns import attach_text, turns_from_features
    from echo_cli.schema import Turn

    if spec.turns:
        turns = [Turn(speaker=t.speaker, start=float(t.start), end=float(t.end), text=t.text, emotion=t.emotion)
                 for t in spec.turns]
    else:
        turns = turns_from_features(avatar_audio, user_audio)
    return attach_text(turns, avatar_tr, user_tr)


def _reference(spec, settings, fps: float):
    from echo_cli.api.reenact import ReenactOptions, load_reference

    if spec.avatar.image:
        return load_reference(spec.avatar.image, None, ReenactOptions(size=settings.size), fps)
    # the portrait is the first frame with a face (a fade-in from black is common)
    return load_reference(None, spec.avatar.video,
                          ReenactOptions(size=settings.size, reference_frame=0, reference_search_s=10.0), fps)


def animate(bundle: Bundle, spec, settings, pre: dict, n_frames: int, seed: int = 0,
            ablate: tuple[str, ...] = ()) -> Animation:
    """Plan one render: everything up to the frame stream (which is lazy).

    Takes pre's per-frame arrays (release_features sets them to None in pre): the
    avatar's once its turns and audio rows are made, the rest once the conditioning is
    built, so the frame loop holds nothing that grows with the length; each entry's other
    keys (notes, transcript) stay.

    ablate: drop paper components at inference for ablations: "lpe"/"hbcu" (no user
    context), "lau" (no emotion conditioning).
    """
    import torch

    from echo_cli.generate.ahead import Ahead
    from echo_cli.generate.engine import GenerationInputs, generate
    from echo_cli.generate.rowfile import RowFile
    from echo_cli.lcu.model import conditioning
    from echo_cli.model.attention import place, set_backend
    from echo_cli.model.audio_encoder import WHISPER_LAYERS_OF, audio_matrix
    from echo_cli.motion.retarget import Reference, retarget, to_reference_landmarks
    from echo_cli.render.warp import MeshWarpRenderer
    from echo_cli.train.data import identity_vector

    fps = float(settings.fps)
    # device and attention are checked before any work, so a wrong --device/--attention
    # fails in a second with the fix; the cached bundle's generator moves there once
    device = place(settings.device, settings.attention)
    set_backend(settings.attention)
    gen, space = bundle.generator.to(device), bundle.space
    ref_rgb, ref_lm = _reference(spec, settings, fps)
    h, w = ref_rgb.shape[:2]
    ref = Reference.from_landmarks(space, ref_lm, w, h)

    avatar_pre = pre.get("avatar_audio") or pre.get("avatar_ref") or {}
    a_feats = avatar_pre.get("audio")
    if a_feats is None:
        raise InputError("the avatar has no audio to speak", path=spec.avatar.audio or spec.avatar.video,
                         fix="set avatar.audio to a speech file")
    user_pre = pre.get("user_video") or {}
    u_track = user_pre.get("face")
    # an explicit user.audio is the user's voice; the video's own sound only stands in for it
    u_feats = (pre.get("user_audio") or {}).get("audio") or user_pre.get("audio")
    transcript_file = pre.get("transcript_file")
    turns = dialogue_turns(spec, a_feats, u_feats,
                           avatar_pre.get("transcript") or transcript_file,
                           (pre.get("user_audio") or user_pre).get("transcript"))

    # The avatar's audio matrix (frames x 512 for Whisper features, 184 MB an hour) goes to a
    # temporary file and the engine reads each chunk's rows from it, so the frame loop holds
    # no array that grows with the length (generate.rowfile; docs/performance_e2e.md "## Memory").
    rowfile = avatar_pre.get("whisper_rows")          # spilled by render() after preprocessing
    if rowfile is not None and gen.cfg.audio_input in ("whisper", "whisper+mel", "whisper_mid") \
            and a_feats.whisper_layers == WHISPER_LAYERS_OF[gen.cfg.audio_input]:
        audio = _spilled_audio(rowfile, a_feats, gen.cfg.audio_input)
    else:
        if rowfile is not None:
            rowfile.close()
        mat = audio_matrix(a_feats, gen.cfg.audio_input)
        if mat.shape[0] == 0:
            raise InputError("no audio frames", fix="give non-empty audio")
        if mat.shape[1] != gen.cfg.audio_dim:
            raise ModelError(f"the avatar audio has {mat.shape[1]} features per frame; this model expects "
                             f"{gen.cfg.audio_dim} ('{gen.cfg.audio_input}')", path=bundle.path,
                             fix="use a checkpoint made by one recipe run")
        rowfile = audio = RowFile.from_array(mat, n_frames)
        del mat
    # digitally silent frames read as silence, for models validated that way (cfg.quiet_gate)
    audio, quiet = gen.gate_audio(audio, a_feats.energy)
    # the avatar's features have given the turns and the rows: free them before the LCU
    # builds the user side, which takes minutes for an hour (measured: the Whisper matrix
    # held through it made that phase the render's peak at 60 minutes)
    del a_feats
    release_features({"avatar": avatar_pre})
    lcu = bundle.lcu
    if lcu is not None and ("lpe" in ablate or "hbcu" in ablate):
        # the same switches train.dyadic.evaluate uses: zero P_usr / feed "no description"
        import dataclasses

        from echo_cli.lcu.model import LCU
        ablated = LCU(dataclasses.replace(lcu.cfg, use_lpe="lpe" not in ablate, use_hbcu="hbcu" not in ablate))
        ablated.load_state_dict(lcu.state_dict())
        lcu = ablated.eval()
    cond = conditioning(gen, lcu, space, fps, n_frames, turns=turns, user_track=u_track, user_audio=u_feats,
                        use_lau="lau" not in ablate, media=str(spec.user.video) if spec.user and spec.user.video else None)
    inputs = GenerationInputs(audio=audio, identity=identity_vector(space, ref.neutral), n_frames=n_frames,
                              user_ctx=cond["user_ctx"], emotion=cond["emotion"], quiet=quiet)
    anchor = np.zeros(space.dim, np.float32)
    # turns and conditioning are built: pre's per-frame arrays are not needed any more
    del u_feats, u_track, avatar_pre, user_pre
    release_features(pre)

    def landmarks() -> Iterator[np.ndarray]:
        for chunk in generate(gen, inputs, settings, seed=int(seed)):
            motion = retarget(space, chunk, (w, h), ref, anchor=anchor)
            yield to_reference_landmarks(space, motion, ref)              # (chunk, 478, 3)

    def frames() -> Iterator[np.ndarray]:
        import cv2

        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        renderer = MeshWarpRenderer()
        renderer.prepare(ref_rgb, ref_lm)
        # generation runs a chunk or two ahead in its own thread while this one renders
        # (generate.ahead: the same chunks in the same order, so the same video)
        chunks = Ahead(landmarks(), depth=2, name="echo-generate")
        try:
            for lms in chunks:
                for lm in lms:
                    yield renderer.render(lm)
        finally:
            chunks.close()
            rowfile.close()

    return Animation(frames=frames(), n_frames=n_frames, width=w, height=h, turns=turns,
                     explanation=cond.get("explanation") or {})
