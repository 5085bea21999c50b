"""Evaluate one video (`evaluate`) or a suite of them (`run_suite`), same code for all.

`evaluate(m, ref=..., user=..., turns=...)` returns the versioned result dict of
report.py (every key always present; null where a metric does not apply). Suites:
- `talking-heldout`: the talking clips held out from the sync scorer's training, each as
  ceiling, still (floor), mismatched audio and shifted-by-k baselines;
- a folder: every video in it (no reference);
- a manifest (.json/.yaml list of {video, ref?, user?, audio?, turns?} or a .txt list).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from echo_cli import log
from echo_cli.errors import EchoError, InputError, ModelError, SpecError
from echo_cli.eval import baselines as B
from echo_cli.eval import metrics as M
from echo_cli.eval import measure as ME
from echo_cli.eval.report import SCHEMA, SCHEMA_VERSION
from echo_cli.media.kinds import VIDEO_EXTS
from echo_cli.schema import Turn

logger = log.get("echo_cli.eval.suite")



@dataclass(frozen=True)
class EvalOptions:
    max_lag: int = 10                 # envelope-correlation lag search, frames (native fps)
    sid_k_expression: int = 40        # DIM's k for expression clusters
    sid_k_pose: int = 20              # DIM's k for pose clusters
    chunk_frames: int | None = None   # generation chunk length, for seam jitter (None: unknown)
    sync: bool = True                 # run the learned sync scorer
    shift_frames: int = 3             # injected shift of the `shifted` baseline


# ---------------------------------------------------------------------------------------
# Turns
# ---------------------------------------------------------------------------------------

def load_turns(path: str | Path) -> list[Turn]:
    """Turns from a turns.json ([{speaker, start, end}, ...] or {"turns": [...]}) or a
    dialogue.yaml (its `turns:`)."""
    from echo_cli.dialogue import dialogue_file

    path = dialogue_file(path)          # a folder holding dialogue.yaml, as `render DIR` reads it
    if not path.is_file():
        raise InputError("turns file not found", path=path, fix="give a turns.json or a dialogue.yaml")
    if path.suffix.lower() in (".yaml", ".yml"):
        from echo_cli.dialogue import load_dialogue
        spec = load_dialogue(path, check_files=False)
        return [Turn(t.speaker, float(t.start), float(t.end), t.text, t.emotion) for t in spec.turns or []]
    try:
        d = json.loads(path.read_text())
        items = d["turns"] if isinstance(d, dict) else d
        return [Turn(str(t["speaker"]), float(t["start"]), float(t["end"])) for t in items]
    except RecursionError as e:
        raise SpecError("not a turns list: the JSON is nested too deeply", path=path,
                        fix='write [{"speaker": "avatar", "start": 0.0, "end": 2.5}, ...]') from e
    except (ValueError, KeyError, TypeError) as e:
        raise SpecError(f"not a turns list: {e}", path=path,
                        fix='write [{"speaker": "avatar", "start": 0.0, "end": 2.5}, ...]') from e


def turn_mask(turns: Sequence[Turn], speaker: str, fps: float, n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    for t in turns:
        if t.speaker == speaker:
            m[int(round(t.start * fps)):int(round(t.end * fps))] = True
    return m


# ---------------------------------------------------------------------------------------
# One video
# ---------------------------------------------------------------------------------------

def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else round(x, 5)


def _sid(X: np.ndarray, k: int) -> float:
    k = max(2, min(k, len(X) // 4))          # short clips: at least ~4 frames per cluster
    return M.sid(X, k=k)


def evaluate(m: ME.Measurement, *, ref: ME.Measurement | None = None, user: ME.Measurement | None = None,
             wave: np.ndarray | None = None, turns: Sequence[Turn] | None = None,
             opts: EvalOptions = EvalOptions(), label: str | None = None) -> dict:
    """All metrics for one measured video. `wave` overrides the video's own audio (the
    avatar's speech); `ref` is the real clip of the same content (self-reenactment / the
    real listener); `user` is the conversation partner's video."""
    fps, T = m.fps, m.n_frames
    wave = m.wave if wave is None else wave
    turns = list(turns or [])
    notes = list(m.notes)
    mouth = ME.mouth_series(m.landmarks)
    env = ME.speech_envelope(wave, fps, T)
    has_audio = wave is not None and len(wave) > 0

    # -- lip sync ----------------------------------------------------------------------
    r_env, lag_env = M.best_lag_correlation(mouth, env, opts.max_lag) if has_audio else (float("nan"), 0)
    z_env = M.shift_z_score(mouth, env) if has_audio else float("nan")
    if has_audio and np.nanstd(mouth) < 1e-9:
        # a mouth that never moves follows nothing: correlation 0 rather than undefined
        r_env, lag_env, z_env = 0.0, 0, 0.0
        notes.append("the mouth never moves: envelope correlation set to 0")
    # a lag is only a measurement beside a correlation (a silent track gives none: its lag of 0 was noise)
    lip = {"env_corr": _num(r_env), "env_lag_frames": lag_env if has_audio and _num(r_env) is not None else None,
           "env_z": _num(z_env),
           "sync_distance": None, "sync_confidence": None, "sync_lag_frames": None,
           "sync_dist_at_zero": None, "mouth_corr_ref": None, "lve": None}
    if opts.sync and has_audio:
        try:
            from echo_cli.eval.syncnet import FPS as SFPS, load_scorer
            s = load_scorer().score(m.landmarks, fps, wave)
            lip.update(sync_distance=_num(s.distance), sync_confidence=_num(s.confidence),
                       sync_lag_frames=_num(s.lag * fps / SFPS), sync_dist_at_zero=_num(s.dist_at_zero))
        except ModelError as e:
            notes.append(f"sync scorer unavailable: {e.one_line()}")
    if ref is not None:
        n = min(T, ref.n_frames)
        lip["mouth_corr_ref"] = _num(M.pearson(mouth[:n], ME.mouth_series(ref.landmarks[:n])))
        lip["lve"] = _num(M.lip_vertex_error(m.landmarks[:n], ref.landmarks[:n]))

    # -- behaviour ---------------------------------------------------------------------
    expr = ME.expression_features(m.landmarks)
    pose = ME.pose_features(m.landmarks, m.euler)
    beh = {"sid_expression": _num(_sid(expr, opts.sid_k_expression)),
           "sid_pose": _num(_sid(pose, opts.sid_k_pose)),
           "var_expression": _num(M.motion_variance(expr)), "var_pose": _num(M.motion_variance(pose)),
           "pcc_user": None, "pcc_real_user": None, "rpcc": None}
    if user is not None:
        r = M.rpcc(ME.behaviour_features(m), ME.behaviour_features(user),
                   None if ref is None else ME.behaviour_features(ref))
        beh.update(pcc_user=_num(r["pcc"]), pcc_real_user=_num(r["pcc_real"]), rpcc=_num(r["rpcc"]))

    # -- listening vs speaking -----------------------------------------------------------
    if any(t.speaker == "avatar" for t in turns):
        speaking, source = turn_mask(turns, "avatar", fps, T), "turns"
    else:
        speaking, source = ME.voice_activity(wave, fps, T), "voice activity of the audio"
    events = [int(round(t.start * fps)) for t in turns if t.speaker == "user"]
    listening = turn_mask(turns, "user", fps, T) if any(t.speaker == "user" for t in turns) else None
    conv = {"speaking_source": source, "speaking_fraction": _num(speaking.mean()),
            "mouth_ratio": _num(M.mouth_ratio(mouth, speaking)),
            # std while listening / while speaking, 0.2 s after each turn change dropped
            "mouth_std_ratio": _num(M.mouth_std_ratio(mouth, speaking, listening, int(round(0.2 * fps)))),
            "reaction_delay_s": _num(M.reaction_delay(ME.motion_speed(m), events, fps)) if events else None,
            "follow_rate": None, "follow_chance": None, "follow_p": None, "follow_user_events": None}
    if user is not None:
        conv.update(follow_summary(m, user, turns, expr, pose))

    # -- temporal ----------------------------------------------------------------------
    tmp = {"jitter": _num(M.jitter(m.landmarks)), "jitter_lips": _num(M.jitter(m.landmarks, M.LIPS)),
           "jitter_seam": None, "jitter_inside": None, "jitter_seam_ratio": None,
           "frozen_fraction": _num(M.frozen_fraction(m.frame_diffs)),
           "face_lost_fraction": _num(M.face_lost_fraction(m.detected))}
    if opts.chunk_frames:
        bj = M.boundary_jitter(m.landmarks, list(range(opts.chunk_frames, T, opts.chunk_frames)))
        tmp.update(jitter_seam=_num(bj["at"]), jitter_inside=_num(bj["inside"]), jitter_seam_ratio=_num(bj["ratio"]))

    # -- identity and image ----------------------------------------------------------------
    idn = {"shape_vs": "ref" if ref is not None else "own first frame", "shape_drift": None, "ssim": None, "psnr": None}
    if ref is not None:
        det = np.flatnonzero(ref.detected)
        idn["shape_drift"] = _num(M.shape_consistency(m.landmarks, ref.landmarks[int(det[0]) if len(det) else 0]))
        n = min(len(m.thumbs), len(ref.thumbs))
        step = max(1, n // 100)                       # SSIM on up to 100 frames is plenty
        sp = M.ssim_psnr(m.thumbs[:n:step], ref.thumbs[:n:step])
        idn.update(ssim=_num(sp["ssim"]), psnr=_num(sp["psnr"]))
    else:
        idn["shape_drift"] = _num(M.shape_consistency(m.landmarks, m.landmarks[0]))

    # -- technical -----------------------------------------------------------------------
    info = m.info
    a_dur = len(wave) / 16000.0 if has_audio else None
    tech = {"duration_s": _num(m.duration), "fps": _num(fps), "n_frames": T,
            "width": info.get("width"), "height": info.get("height"),
            "video_codec": info.get("video_codec"), "audio_codec": info.get("audio_codec"),
            "pix_fmt": info.get("pix_fmt"), "has_audio": bool(has_audio),
            "audio_duration_s": _num(a_dur),
            "av_duration_diff_s": _num(a_dur - m.duration) if a_dur is not None else None,
            "duration_diff_ref_s": _num(m.duration - ref.duration) if ref is not None else None,
            "tracker": info.get("tracker")}
    if info.get("measured_face"):       # a side-by-side render: which panel the numbers describe
        tech["measured_face"] = info["measured_face"]

    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "label": label or Path(m.path).name,
            "video": m.path, "ref": ref.path if ref is not None else None,
            "user": user.path if user is not None else None,
            "technical": tech, "lip_sync": lip, "behaviour": beh, "conversation": conv,
            "temporal": tmp, "identity": idn, "notes": notes}


def follow_summary(m: ME.Measurement, user: ME.Measurement, turns: Sequence[Turn], expr=None, pose=None) -> dict:
    """Avatar nod/smile onsets 0.2-1.5 s after user smile onsets and pauses (ends of user
    turns; the user video's own voice pauses when it has sound) vs circularly shifted user
    events (eval/events.py)."""
    from echo_cli.eval import events as EV

    fps, T = m.fps, m.n_frames
    expr = ME.expression_features(m.landmarks) if expr is None else expr
    pose = ME.pose_features(m.landmarks, m.euler) if pose is None else pose
    cfg = EV.EventConfig() if m.euler is not None else EV.PROXY_EVENTS
    a_ev = EV.avatar_events(pose[:, 1], expr[:, 2], fps, cfg)
    pauses = [t.end for t in turns if t.speaker == "user"]
    if not pauses and user.wave is not None:
        pauses = EV.pause_times(ME.voice_activity(user.wave, user.fps, user.n_frames), user.fps)
    u_ev = EV.user_events(fps, T, ME.expression_features(user.landmarks)[:, 2], user.fps, pauses, cfg)
    r = EV.follow_test([(u_ev, a_ev, T)], fps, n_shifts=500)
    return {"follow_rate": _num(r["rate"]), "follow_chance": _num(r["chance"]), "follow_p": _num(r["p"]),
            "follow_user_events": r["n_user_events"], "follow_avatar_events_per_s": _num(r["avatar_rate_per_s"])}


def evaluate_file(video: str | Path, *, ref: str | Path | None = None, user: str | Path | None = None,
                  audio: str | Path | None = None, turns: str | Path | None = None,
                  opts: EvalOptions = EvalOptions()) -> tuple[dict, ME.Measurement, np.ndarray | None, list[Turn]]:
    """Measure and evaluate files; returns (result, measurement, wave used, turns)."""
    if Path(video).is_file():
        from echo_cli.media.probe import probe

        if probe(video).is_image:   # one frame: every motion, sync and jitter figure would be empty
            raise InputError("a still image: nothing moves in it to evaluate", path=video,
                             fix="give a video (a render or a real clip)")
    m = ME.measure_video(video)
    r = ME.measure_video(ref) if ref else None
    u = ME.measure_video(user) if user else None
    wave = None
    if audio:
        wave = ME.load_wave(str(audio))
        if wave is None:
            raise InputError("no audio stream", path=audio, fix="give a WAV or a file with sound")
    tl = load_turns(turns) if turns else []
    res = evaluate(m, ref=r, user=u, wave=wave, turns=tl, opts=opts)
    if audio:
        res["audio"] = str(audio)
    return res, m, (wave if wave is not None else m.wave), tl


# ---------------------------------------------------------------------------------------
# Suites
# ---------------------------------------------------------------------------------------

SUITES = {"talking-heldout": "held-out talking clips of ../shared/data: ceiling, still, mismatched, shifted"}


def heldout_files() -> list[Path]:
    from echo_cli.eval.syncnet import HELDOUT, shared_data
    root = shared_data()
    if root is None:
        raise InputError("../shared/data not found", fix="set ECHO_SHARED_DATA to the shared media folder")
    files = [root / "talking" / n for n in HELDOUT]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"held-out clips missing: {', '.join(missing)}", fix="restore ../shared/data/talking")
    return files


def baseline_suite(files: Sequence[Path], opts: EvalOptions = EvalOptions(), seconds: float | None = None
                   ) -> tuple[list[dict], dict]:
    """Each file as ceiling / still / mismatched (next file's audio) / shifted(+k).
    `seconds` trims each clip (tests use short windows). Returns (results, measurements)."""
    ms = [ME.measure_video(f, max_seconds=seconds) for f in files]
    results, kept = [], {}
    for i, m in enumerate(ms):
        other = ms[(i + 1) % len(ms)]
        name = Path(m.path).stem
        if other is m or other.wave is None:
            raise InputError("the mismatched baseline needs two clips with audio", path=m.path,
                             fix="give at least two clips with speech")
        conds = {"ceiling": B.ceiling(m), "still": B.still(m),
                 "mismatched": B.mismatched(m, other.wave, Path(other.path).name),
                 f"shifted{opts.shift_frames:+d}": B.shifted(m, opts.shift_frames)}
        for cond, mm in conds.items():
            res = evaluate(mm, opts=opts, label=f"{name}:{cond}")
            res["condition"] = cond
            res["clip"] = name
            results.append(res)
            kept[(name, cond)] = mm
    return results, kept


def read_manifest(path: Path) -> list[dict]:
    """Items {video, ref?, user?, audio?, turns?} with paths relative to the manifest."""
    what = "a suite manifest is a .json/.yaml list of {video: PATH, ...} or a .txt of video paths"
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise SpecError("not a suite manifest (binary data)", path=path, fix=what) from None
    if path.suffix.lower() == ".txt":
        items = [{"video": ln.strip()} for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    else:
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml
                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as e:  # yaml.YAMLError / json.JSONDecodeError
            raise SpecError(f"cannot parse manifest: {e}", path=path, fix="write a JSON or YAML list") from e
        items = data.get("items", data) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise SpecError("manifest is not a list", path=path, fix="write a list of {video: ..., ref: ...}")
        bad = [it for it in items if not isinstance(it, (str, dict))]
        if bad:
            raise SpecError(f"manifest item {bad[0]!r} is neither a path nor a mapping", path=path, fix=what)
        items = [({"video": it} if isinstance(it, str) else dict(it)) for it in items]
    if not items:
        raise SpecError("the manifest lists no videos", path=path, fix=what)
    for it in items:
        if "video" not in it:
            raise SpecError(f"manifest item without 'video': {it}", path=path, fix="add video: PATH")
        for k in ("video", "ref", "user", "audio", "turns"):
            if it.get(k):
                p = Path(it[k])
                it[k] = str(p if p.is_absolute() else (path.parent / p))
    return items


def run_suite(name: str, opts: EvalOptions = EvalOptions()) -> tuple[list[dict], dict, list[dict]]:
    """Results of a named suite, a folder or a manifest; {label: (measurement, wave)} for
    plots; and the videos that could not be measured (their error as a dict)."""
    if name == "talking-heldout":
        results, kept = baseline_suite(heldout_files(), opts)
        return results, {f"{c}:{k}": (m, m.wave) for (c, k), m in kept.items()}, []
    p = Path(name)
    if p.is_dir():
        items = [{"video": str(f)} for f in sorted(p.iterdir()) if f.suffix.lower() in VIDEO_EXTS]
        if not items:
            raise InputError("no videos in this folder", path=p, fix="give a folder of .mp4 files")
    elif p.is_file():
        items = read_manifest(p)
    else:
        raise InputError(f"unknown suite '{name}'", fix=f"use one of: {', '.join(SUITES)}, a folder or a manifest")
    results, kept = [], {}
    failed = []
    for it in items:
        try:
            res, m, wave, _ = evaluate_file(it["video"], ref=it.get("ref"), user=it.get("user"),
                                            audio=it.get("audio"), turns=it.get("turns"), opts=opts)
        except EchoError as e:      # one bad video never costs the others their measurements
            import sys

            print(e.one_line(), file=sys.stderr, flush=True)     # the tool's error line, as batch and preprocess print theirs
            failed.append({"video": it["video"], **e.to_dict()})
            continue
        results.append(res)
        kept[res["label"]] = (m, wave)
    return results, kept, failed


__all__ = ["EvalOptions", "evaluate", "evaluate_file", "run_suite", "baseline_suite", "load_turns",
           "heldout_files", "SUITES"]
