"""`echo-cli eval`: lip-sync, behaviour, temporal, identity and technical metrics of a video.

Convention (see cli/main.py): `register(app)`; heavy imports inside the command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLE = """\b
Examples:
  echo-cli eval out/dialogue.mp4 --turns dialogue.yaml --out out/eval
  echo-cli eval rendered.mp4 --ref real.mp4 --audio speech.wav
  echo-cli eval --suite talking-heldout --out docs/eval
  echo-cli eval --suite renders/ --chunk-frames 64
  echo-cli eval --train-syncnet"""


def register(app: typer.Typer) -> None:
    @app.command("eval", help="Lip-sync, behaviour, temporal, identity and technical metrics of a video (JSON + Markdown + plots).", epilog=EXAMPLE)
    def eval_cmd(
        video: Annotated[Optional[Path], typer.Argument(help="the video to evaluate (a render or a real clip)")] = None,
        ref: Annotated[Optional[Path], typer.Option("--ref", help="the real clip of the same content (self-reenactment, real listener)")] = None,
        user: Annotated[Optional[Path], typer.Option("--user", help="the conversation partner's video (rPCC, reactions)")] = None,
        audio: Annotated[Optional[Path], typer.Option("--audio", help="the avatar's speech, if not the video's own sound")] = None,
        turns: Annotated[Optional[Path], typer.Option("--turns", help="turns.json or dialogue.yaml (who speaks when)")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", help="output folder for eval.json, eval.md and plots")] = None,
        suite: Annotated[Optional[str], typer.Option("--suite", help="'talking-heldout', a folder of videos, or a manifest (.json/.yaml/.txt)")] = None,
        chunk_frames: Annotated[Optional[int], typer.Option("--chunk-frames", min=2, help="generation chunk length, for seam jitter")] = None,
        no_sync: Annotated[bool, typer.Option("--no-sync", help="skip the learned lip-sync scorer")] = False,
        no_plot: Annotated[bool, typer.Option("--no-plot", help="do not write PNG plots")] = False,
        train_syncnet: Annotated[bool, typer.Option("--train-syncnet", help="retrain the lip-sync scorer on ../shared/data/talking, then exit")] = False,
        steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="training steps for --train-syncnet")] = None,
    ) -> None:
        from echo_cli.cli.common import emit
        from echo_cli.errors import UsageError

        if train_syncnet:
            from echo_cli.eval import syncnet as S
            tc = S.TrainConfig() if steps is None else S.TrainConfig(steps=steps)
            meta = S.train(tcfg=tc)
            v = meta["validation_4s"]
            emit({"checkpoint": str(S.CHECKPOINT_DIR / "syncnet.safetensors"), "validation_4s": v},
                 human=f"trained the sync scorer: held-out 4 s windows, real beats mismatched audio "
                       f"{100 * v['real_beats_mismatched']:.1f}% of {v['windows']}")
            return
        if (video is None) == (suite is None):
            raise UsageError("give either a VIDEO or --suite NAME", fix="echo-cli eval out.mp4, or echo-cli eval --suite talking-heldout")
        from echo_cli.eval.suite import EvalOptions
        opts = EvalOptions(chunk_frames=chunk_frames, sync=not no_sync)
        if suite is not None:
            out_dir = out or Path(f"eval-{Path(suite).stem or 'suite'}")
            doc = _run_suite(suite, opts, out_dir, plots=not no_plot)
            failed = doc.get("summary", {}).get("failed") or []
            if failed:              # the rest were measured and written: a partial failure (8)
                from echo_cli.errors import PartialFailure

                raise PartialFailure(f"{len(failed)} of {len(failed) + len(doc['results'])} videos could not be "
                                     "measured; the rest were", path=suite, fix=f"see {out_dir / 'eval.md'}")
        else:
            out_dir = out or Path(f"{video.stem}_eval")
            doc = _run_one(video, ref, user, audio, turns, opts, out_dir, plots=not no_plot)
        emit({"out": str(out_dir), "json": str(out_dir / "eval.json"), "report": doc},
             human=(out_dir / "eval.md").read_text() + f"\nwrote {out_dir / 'eval.json'}")


def _plot(out_dir: Path, label: str, m, wave, turns=(), lag=None) -> str:
    from echo_cli.eval import measure as ME
    from echo_cli.eval.plots import plot_mouth_envelope
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    p = plot_mouth_envelope(out_dir / f"{safe}.png", ME.mouth_series(m.landmarks),
                            ME.speech_envelope(wave, m.fps, m.n_frames), m.fps,
                            speaking=ME.voice_activity(wave, m.fps, m.n_frames), turns=turns,
                            title=label, lag_frames=lag)
    return p.name


def _run_one(video, ref, user, audio, turns, opts, out_dir: Path, plots: bool) -> dict:
    import sys

    from echo_cli.eval import report as R
    from echo_cli.eval.suite import evaluate_file
    from echo_cli.io_atomic import write_text

    res, m, wave, tl = evaluate_file(video, ref=ref, user=user, audio=audio, turns=turns, opts=opts)
    if plots:
        res["plot"] = _plot(out_dir, Path(video).stem, m, wave, tl, res["lip_sync"]["sync_lag_frames"])
    doc = R.wrap([res], command="echo-cli " + " ".join(sys.argv[1:]))
    R.write_json(doc, out_dir / "eval.json")
    md = f"# echo-cli eval: {Path(video).name}\n\n" + R.markdown_table([res])
    if res.get("notes"):
        md += "\n" + "\n".join(f"- {n}" for n in res["notes"]) + "\n"
    write_text(out_dir / "eval.md", md)
    return doc


def _f(v) -> str:
    return "–" if v is None else f"{v:+.2f}"


def _shift_found(results: list[dict], k: int) -> list[dict]:
    """Per clip: the lag found on the shifted baseline minus the lag of the real clip (whose
    own audio-video offset is unknown), for the sync scorer and the envelope correlation."""
    real = {r["clip"]: r["lip_sync"] for r in results if r.get("condition") == "ceiling"}
    out = []
    for r in results:
        if not str(r.get("condition", "")).startswith("shifted") or r["clip"] not in real:
            continue
        ls, base = r["lip_sync"], real[r["clip"]]
        sf = (ls["sync_lag_frames"] - base["sync_lag_frames"]
              if ls["sync_lag_frames"] is not None and base["sync_lag_frames"] is not None else None)
        ef = (ls["env_lag_frames"] - base["env_lag_frames"]
              if ls["env_lag_frames"] is not None and base["env_lag_frames"] is not None else None)
        out.append({"clip": r["clip"], "injected": k, "sync_lag_shifted": ls["sync_lag_frames"],
                    "sync_lag_real": base["sync_lag_frames"], "sync_found": sf, "env_found": ef,
                    "within_1_frame": sf is not None and abs(sf - k) <= 1.0})
    return out


def _run_suite(name: str, opts, out_dir: Path, plots: bool) -> dict:
    import sys

    from echo_cli.eval import report as R
    from echo_cli.eval.suite import run_suite
    from echo_cli.io_atomic import write_text

    results, kept, failed = run_suite(name, opts)
    if failed and not results:      # nothing measured: the failure itself (one kind) or 8
        from echo_cli.errors import all_failed

        raise all_failed((f["exit_code"] for f in failed), f"no video of the suite could be measured "
                         f"({len(failed)} failed)", path=name, fix="see the lines above and fix those videos")
    summary: dict = {}
    md = f"# echo-cli eval --suite {name}\n\n"
    if any("condition" in r for r in results):
        means = R.mean_by_condition(results)
        sep = R.separation(means)
        summary["means"] = means
        summary["separation"] = sep
        summary["shift_found"] = _shift_found(results, opts.shift_frames)
        if opts.sync and name == "talking-heldout":
            from echo_cli.eval import syncnet as S
            sc = S.load_scorer()
            clips = {f"{c}": S.prepare(m.landmarks, m.fps, m.wave, sc.cfg.n_mels)
                     for (c, cond), (m, _) in ((tuple(k2.split(":")), v) for k2, v in kept.items())
                     if cond == "ceiling"}
            summary["sync_4s_windows"] = S.window_accuracy(sc, clips, 4.0)
        cols = list(means)
        md += "Mean over clips per condition.\n\n" + R.markdown_table([means[c] for c in cols], [means[c]["label"] for c in cols])
        md += "\nCeiling vs floor (still): " + ", ".join(
            f"{k.split('.', 1)[1]} {'✓' if v['separates'] else '✗'}" for k, v in sep.items()) + "\n"
        if "sync_4s_windows" in summary:
            w = summary["sync_4s_windows"]
            md += (f"\nLearned sync score, real vs mismatched audio on {w['windows']} held-out 4 s windows: "
                   f"real wins {100 * w['real_beats_mismatched']:.1f}%; lag within one frame of 0 in "
                   f"{100 * w['lag_within_1_frame']:.1f}%.\n")
        md += (f"\nInjected shift of {opts.shift_frames:+d} frames, found as lag(shifted) - lag(real clip) "
               "(sync scorer / envelope): " + ", ".join(
                   f"{s['clip']} {_f(s['sync_found'])} / {_f(s['env_found'])}" for s in summary["shift_found"])
               + "; absolute sync lags of the real clips: " + ", ".join(
                   f"{s['clip']} {_f(s['sync_lag_real'])}" for s in summary["shift_found"]) + "\n")
        md += "\n## Per clip\n\n" + R.markdown_table(results)
    else:
        md += R.markdown_table(results)
    if plots:
        for r in results:
            if r["label"] in kept:
                m, wave = kept[r["label"]]
                r["plot"] = _plot(out_dir, r["label"], m, wave, (), r["lip_sync"]["sync_lag_frames"])
    if failed:
        summary["failed"] = failed
        md += "\n## Not measured\n\n" + "".join(f"- {f['video']}: {f['message']} (fix: {f['fix']})\n" for f in failed)
    doc = R.wrap(results, command="echo-cli " + " ".join(sys.argv[1:]), summary=summary)
    R.write_json(doc, out_dir / "eval.json")
    write_text(out_dir / "eval.md", md)
    return doc
