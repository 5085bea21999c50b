"""Stage-1 training: run folder, resumability (bitwise), torchrun DDP with 2 CPU processes, real data."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from echo_cli.model.checkpoint import load_checkpoint, load_generator
from echo_cli.train import common, stage1
from echo_cli.train.data import HELD_OUT, SPEECH_CLIPS, shared_data_dir

REPO = Path(__file__).resolve().parents[1]
CFG = stage1.Stage1Config(preset="micro", batch=4, window=16, t_prev=4)


def _loop(steps, **kw):
    return common.LoopConfig(steps=steps, log_every=1, ckpt_every=2, warmup=2, **kw)


@pytest.fixture(scope="module")
def clips():
    return stage1.synthetic_clips(n_clips=3, frames=120)


def test_run_folder_contents_and_loss_goes_down(tmp_path, clips):
    s = stage1.run(out=tmp_path / "run", config=CFG, clips=clips, audio_only=[], loop=_loop(30, lr=3e-3))
    run = tmp_path / "run"
    for f in ("model.safetensors", "model.json", "state.safetensors", "state.json", "losses.jsonl", "loss.png",
              "summary.json"):
        assert (run / f).is_file(), f
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0)
    os.umask(umask)
    for f in ("model.safetensors", "model.json", "state.safetensors"):   # shared files, not mkstemp's 0600
        assert (run / f).stat().st_mode & 0o777 == 0o666 & ~umask, f
    rows = [json.loads(l) for l in (run / "losses.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    first, last = np.mean([r["fm"] for r in rows[:5]]), np.mean([r["fm"] for r in rows[-5:]])
    assert last < first
    model, conf = load_generator(run / "model.safetensors")
    assert conf["training"]["stage"] == 1 and conf["generator"]["dim"] == model.cfg.dim
    assert s["steps"] == 30
    # the preset's frozen ridge mouth prior was fitted (closed form, LOSO-CV penalty) and saved
    rp = conf["training"]["ridge_prior"]
    assert model.cfg.mouth_prior_kind == "ridge" and rp["lambda"] in [float(k) for k in rp["loso_cv"]]
    assert torch.count_nonzero(model.audio_enc.prior_weight) > 0
    assert not any("prior" in n for n, _ in model.named_parameters() if n.startswith("audio_enc"))


def test_resume_is_bitwise_identical_to_uninterrupted(tmp_path, clips):
    stage1.run(out=tmp_path / "full", config=CFG, clips=clips, audio_only=[], loop=_loop(6))
    stage1.run(out=tmp_path / "cut", config=CFG, clips=clips, audio_only=[], loop=_loop(6, stop_after=4))
    _, st = load_checkpoint(tmp_path / "cut" / "state")
    assert st["step"] == 4
    stage1.run(out=tmp_path / "cut", config=CFG, clips=clips, audio_only=[], loop=_loop(6), resume=True)
    a, _ = load_checkpoint(tmp_path / "full" / "model")
    b, _ = load_checkpoint(tmp_path / "cut" / "model")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    _, st = load_checkpoint(tmp_path / "cut" / "state")
    assert st["step"] == 6


def test_interrupt_saves_state_and_resume_goes_on(tmp_path, clips, monkeypatch):
    """SIGINT/SIGTERM (KeyboardInterrupt) at step 5 of 8 with checkpoints only every 500 steps:
    the state of step 5 is saved, and --resume ends bitwise where an unbroken run ends (it had
    lost everything since the last checkpoint); a half-written loss line is skipped."""
    loop = common.LoopConfig(steps=8, log_every=1, ckpt_every=500, warmup=2)
    stage1.run(out=tmp_path / "full", config=CFG, clips=clips, audio_only=[], loop=loop)
    make = stage1.make_loss_fn

    def interrupted_at_5(*a, **kw):
        fn = make(*a, **kw)

        def loss(net, step, tg, rng):
            if step == 5:
                raise KeyboardInterrupt
            return fn(net, step, tg, rng)
        return loss

    monkeypatch.setattr(stage1, "make_loss_fn", interrupted_at_5)
    monkeypatch.setattr(common, "STATE_SAVED_AT", None)
    with pytest.raises(KeyboardInterrupt):
        stage1.run(out=tmp_path / "cut", config=CFG, clips=clips, audio_only=[], loop=loop)
    assert common.STATE_SAVED_AT == 5          # what the CLI's last line reports ("at step 5; ... saved")
    monkeypatch.undo()
    _, st = load_checkpoint(tmp_path / "cut" / "state")
    assert st["step"] == 5
    with open(tmp_path / "cut" / "losses.jsonl", "a") as f:
        f.write('{"step": 6, "fm": 2.3')                      # cut off by a kill
    stage1.run(out=tmp_path / "cut", config=CFG, clips=clips, audio_only=[], loop=loop, resume=True)
    a, _ = load_checkpoint(tmp_path / "full" / "model")
    b, _ = load_checkpoint(tmp_path / "cut" / "model")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(l)["step"] for l in (tmp_path / "cut" / "losses.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_a_second_run_into_a_run_folder_needs_resume_or_force(tmp_path, clips):
    """The second run replaced the first's model, state and losses without a word."""
    from echo_cli.errors import OutputError

    stage1.run(out=tmp_path / "run", config=CFG, clips=clips, audio_only=[], loop=_loop(2))
    first = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(OutputError, match="holds a training run already") as e:
        stage1.run(out=tmp_path / "run", config=CFG, clips=clips, audio_only=[], loop=_loop(2), seed=1)
    assert e.value.exit_code == 7 and "--force" in e.value.fix
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == first and (tmp_path / "run").is_dir()
    stage1.run(out=tmp_path / "run", config=CFG, clips=clips, audio_only=[], loop=_loop(2), seed=1, force=True)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() != first


def test_same_seed_same_weights_different_seed_differs(tmp_path, clips):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        stage1.run(out=tmp_path / name, config=CFG, clips=clips, audio_only=[], loop=_loop(2), seed=seed)
    a, b, c = (load_checkpoint(tmp_path / n / "model")[0] for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_ddp_two_cpu_processes_with_torchrun(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "echo_cli.train.stage1", "--synthetic", "--preset", "micro", "--steps", "2",
           "--out", str(tmp_path / "ddp")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = (tmp_path / "ddp" / "losses.jsonl").read_text().splitlines()
    assert len(rows) == 2                                   # only rank 0 logs
    model, _ = load_generator(tmp_path / "ddp" / "model.safetensors")
    # DDP keeps the replicas identical: the saved model is finite and trained (moved from init)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent (set ECHO_SHARED_DATA)")
def test_an_interrupt_before_training_says_nothing_was_saved(tmp_path):
    """Stopped while its clips were being prepared, `train` said "training state saved" and
    pointed at --resume: nothing had been saved."""
    import os
    import signal
    import subprocess
    import sys

    own = tmp_path / "own"
    own.mkdir()
    (own / "bob.mp4").symlink_to(shared_data_dir() / "talking" / "grid_pwij3p.mp4")
    p = subprocess.Popen([sys.executable, "-m", "echo_cli", "train", "--stage", "1", str(own),
                          "--out", str(tmp_path / "run"), "--steps", "2"], stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "ECHO_CACHE_DIR": str(tmp_path / "cache")})   # a cold cache: slow
    for line in p.stderr:
        if "preparing" in line:
            p.send_signal(signal.SIGINT)
            break
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130, err
    assert "before a training step was saved" in err and "--resume" not in err, err


def test_cli_requires_out_and_a_stage():
    from typer.testing import CliRunner

    from echo_cli.cli.main import app
    r = CliRunner().invoke(app, ["train", "--stage", "1"])
    assert r.exit_code != 0
    r = CliRunner().invoke(app, ["train", "--stage", "3", "--out", "x"])
    assert r.exit_code != 0
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "echo_cli", "train", "--stage", "3", "--out", "x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "there is no stage 3" in r.stderr, r.stderr     # said "choose what to train"


def test_no_training_clips_and_a_full_disk_are_typed_errors(tmp_path, monkeypatch):
    """A data folder without the talking clips: exit 4 and no empty run folder (it was an
    internal error from numpy); a checkpoint write that runs out of space is an OSError the
    CLI turns into exit 7 (safetensors reported it as its own error type: internal error)."""
    import safetensors.torch

    from echo_cli.errors import OutputError
    from echo_cli.model.checkpoint import save_checkpoint

    (tmp_path / "data").mkdir()
    r = subprocess.run([sys.executable, "-m", "echo_cli", "train", "--stage", "1", str(tmp_path / "data"),
                        "--out", str(tmp_path / "run"), "--steps", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 4 and "no training clips found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
    r = subprocess.run([sys.executable, "-m", "echo_cli", "train", "--stage", "2", str(tmp_path / "data"),
                        "--out", str(tmp_path / "run2"), "--steps", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 4 and "listening clips" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run2").exists()

    def full(*a, **kw):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OutputError, match="disk full") as e:
        save_checkpoint(tmp_path / "ck", {"w": torch.zeros(2)}, {})
    assert e.value.exit_code == 7
    assert not list(tmp_path.glob("*ck*"))                    # nothing half-written


def test_held_out_speakers_are_not_trained_on():
    train_speakers = {s for s in SPEECH_CLIPS.values() if s not in HELD_OUT}
    assert set(HELD_OUT) and not set(HELD_OUT) & train_speakers
    assert set(HELD_OUT) <= set(SPEECH_CLIPS.values())


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent (set ECHO_SHARED_DATA)")
def test_real_clip_builds_aligned_tensors_and_trains(tmp_path):
    from echo_cli.motion.space import default_space
    from echo_cli.train.data import load_clips

    (clip,) = load_clips(names=["grid_lrwp9a"])             # 3 s GRID sentence, cached after the first run
    space = default_space()
    T = clip.n_frames
    assert clip.motion.shape == (T, space.dim) and clip.mel.shape == (T, 80)
    assert clip.whisper is not None and clip.whisper.shape == (T, 512)
    assert clip.whisper_mid is not None and clip.whisper_mid.shape == (T, 1024)   # the default input
    assert clip.audio("whisper_mid") is clip.whisper_mid and clip.audio("whisper+mel").shape == (T, 592)
    assert (clip.visemes >= 0).mean() > 0.9                  # word timings -> visemes on real speech
    mouth = clip.motion[:, space.regions["mouth"]]
    assert mouth.std(0).max() > 0                            # the mouth moves
    s = stage1.run(out=tmp_path / "real", config=stage1.Stage1Config(preset="micro", batch=2, window=32),
                   clips=None if False else [clip], audio_only=[], loop=_loop(2))
    assert Path(s["model"]).is_file()


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent (set ECHO_SHARED_DATA)")
def test_own_folder_of_talking_videos_trains(tmp_path):
    """`echo-cli train --stage 1 MY_CLIPS`: any folder of talking-head videos, one speaker per
    sub-folder (or per top-level file); videos without sound are skipped, not trained on."""
    from echo_cli.train.data import speech_clips

    data = shared_data_dir()
    own = tmp_path / "own"
    (own / "alice").mkdir(parents=True)
    (own / "alice" / "take1.mp4").symlink_to(data / "talking" / "grid_lrwp9a.mp4")
    (own / "bob.mp4").symlink_to(data / "talking" / "grid_pwij3p.mp4")
    (own / "mute.mp4").symlink_to(data / "clips" / "d13.mp4")          # no audio track
    assert speech_clips(own) == {"alice/take1.mp4": "alice", "bob.mp4": "bob"}
    assert speech_clips(data) is SPEECH_CLIPS
    s = stage1.run(data=own, out=tmp_path / "run", config=stage1.Stage1Config(preset="micro", batch=2, window=32),
                   loop=_loop(2))
    meta = json.loads(Path(s["model"]).with_suffix(".json").read_text())["training"]
    assert meta["data"]["train"] == ["bob", "take1"] and meta["data"]["source"] == str(own.resolve())


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent (set ECHO_SHARED_DATA)")
def test_training_and_preprocess_find_the_same_videos(tmp_path):
    """One list of video suffixes (media/kinds.py): an MPEG-PS talking clip that
    `echo-cli preprocess` picks up is a training clip too (training kept a shorter list)."""
    import subprocess

    from echo_cli.api.preprocess import find_media
    from echo_cli.media.ffmpeg import ffmpeg_exe
    from echo_cli.train.data import speech_clips

    own = tmp_path / "own"
    own.mkdir()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(shared_data_dir() / "talking" / "grid_pwij3p.mp4"),
                    "-c:v", "mpeg2video", "-c:a", "mp2", str(own / "carol.mpg")], check=True)
    assert [p.name for p in find_media(own)] == ["carol.mpg"]
    assert speech_clips(own) == {"carol.mpg": "carol"}


def test_shift_clip_re_pairs_audio_and_video():
    from echo_cli.train.data import shift_clip

    import dataclasses

    c = stage1.synthetic_clips(n_clips=1, frames=50)[0]
    c = dataclasses.replace(c, whisper_mid=np.arange(50 * 2, dtype=np.float32).reshape(50, 2))
    for lag in (3, -2):
        s = shift_clip(c, lag)
        n = 50 - abs(lag)
        assert s.n_frames == n and s.motion.shape[0] == n and s.whisper.shape[0] == n
        assert np.array_equal(s.whisper_mid, c.whisper_mid[max(lag, 0):max(lag, 0) + n])
        a0, v0 = (lag, 0) if lag > 0 else (0, -lag)      # audio[t + lag] pairs with motion[t]
        assert np.array_equal(s.mel[0], c.mel[a0]) and np.array_equal(s.motion[0], c.motion[v0])
        assert np.array_equal(s.visemes, c.visemes[a0:a0 + n])
    assert shift_clip(c, 0) is c


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent (set ECHO_SHARED_DATA)")
def test_prior_offset_reads_the_lag_that_shift_clip_undoes():
    """On a real clip's landmarks: a prediction that runs L frames behind the mouth (the
    audio is L frames late) reads as L, and shift_clip(c, L) lines the two up."""
    from echo_cli.eval.metrics import best_lag_correlation
    from echo_cli.motion.space import default_space
    from echo_cli.train.data import load_clips, prior_offset, shift_clip
    from echo_cli.train.lipsync_eval import mouth_from_motion

    (clip,) = load_clips(names=["grid_lrwp9a"])
    space = default_space()
    for lag in (2, -3):
        idx = np.clip(np.arange(clip.n_frames) - lag, 0, clip.n_frames - 1)
        late = clip.motion[idx]                                  # pred[t] = mouth[t - lag]
        assert prior_offset(clip, late, space) == lag
        s = shift_clip(clip, lag)                                # the prediction follows the audio side
        pred = late[max(lag, 0):max(lag, 0) + s.n_frames]
        r, l2 = best_lag_correlation(mouth_from_motion(space, pred, clip.neutral),
                                     mouth_from_motion(space, s.motion, clip.neutral), 4)
        assert l2 == 0 and r > 0.95
    assert prior_offset(clip, clip.motion, space) == 0


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent (set ECHO_SHARED_DATA)")
def test_ridge_prior_realigns_a_clip_whose_video_runs_late(tmp_path):
    """Three "speakers" of one real GRID sentence, the third with its video 3 frames late:
    the out-of-speaker prediction finds the offset, the clip is re-paired and the prior
    refitted; the offset is recorded for eval.mouth_prior."""
    import dataclasses

    from echo_cli.model.generator import EchoGenerator, layout_from_motion_space, make_config
    from echo_cli.motion.space import default_space
    from echo_cli.train.data import load_clips

    (clip,) = load_clips(names=["grid_lrwp9a"])
    space = default_space()
    n = clip.n_frames
    idx = np.clip(np.arange(n) - 3, 0, n - 1)
    train = [dataclasses.replace(clip, name="a", speaker="a"), dataclasses.replace(clip, name="b", speaker="b"),
             dataclasses.replace(clip, name="late", speaker="c", motion=clip.motion[idx])]
    cfg = stage1.Stage1Config(preset="micro")
    model = EchoGenerator(make_config("micro", layout_from_motion_space(space), audio_input=cfg.audio_input))
    stats = stage1.fit_stats(train, cfg.audio_input)
    stage1.apply_stats(model, stats)
    mouth = slice(*model.cfg.regions["mouth"])
    priors, info, out = stage1.fit_ridge_prior(model, train, [], cfg, stats, mouth, space=space)
    assert info["realigned"].get("late") == -3
    late = next(c for c in out if c.name == "late")
    assert late.n_frames == n - 3 and priors["late"].shape[0] == n - 3
    assert "loso_cv_before_realign" in info
    _, info0, out0 = stage1.fit_ridge_prior(model, train, [], dataclasses.replace(cfg, realign_prior=False),
                                            stats, mouth, space=space)
    assert info0["realigned"] == {} and [c.n_frames for c in out0] == [n] * 3
