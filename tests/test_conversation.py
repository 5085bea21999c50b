"""eval/conversation.py: the held-out conversation built for rendered-video checks."""
import numpy as np

from echo_cli.eval import conversation as C


def test_plan_alternates_turns():
    t = C.ConversationPlan(turn_s=2.0, n_turns=4).turns()
    assert [x["speaker"] for x in t] == ["avatar", "user", "avatar", "user"]
    assert t[1]["start"] == 2.0 and t[-1]["end"] == 8.0


def test_gated_keeps_only_the_speakers_turns():
    turns = C.ConversationPlan(turn_s=1.0, n_turns=4).turns()
    w = np.ones(16000 * 3, np.float32)                    # shorter than the 4 s conversation
    a = C._gated(w, turns, "avatar", 4.0)
    assert len(a) == 64000
    assert a[:16000].min() == 1.0 and a[16000:32000].max() == 0.0 and a[32000:48000].min() == 1.0
    assert a[48000:].max() == 0.0
    u = C._gated(w, turns, "user", 4.0)
    assert u[:16000].max() == 0.0 and u[16000:32000].min() == 1.0


def test_build_dialogue_on_real_clips(shared_data, tmp_path):
    from echo_cli.dialogue import load_dialogue
    from echo_cli.media.audio_io import load_audio

    av, us = (shared_data / p for p in C.HELDOUT_PAIRS[0])
    plan = C.ConversationPlan(turn_s=1.0, n_turns=4)
    y = C.build_dialogue(av, us, tmp_path / "pair", plan)
    spec = load_dialogue(y)
    assert [t.speaker for t in spec.turns] == ["avatar", "user", "avatar", "user"]
    a = load_audio(tmp_path / "pair" / "avatar.wav")
    u = load_audio(tmp_path / "pair" / "user.wav")
    assert abs(len(a) - 64000) < 100 and abs(len(u) - 64000) < 100
    assert np.abs(a[16000:32000]).max() == 0.0 < np.abs(a[:16000]).max()        # silent while the user talks
    assert np.abs(u[:16000]).max() == 0.0 < np.abs(u[16000:32000]).max()
    assert (tmp_path / "pair" / "avatar.png").is_file()
