"""eval.mouth_prior: the measurements behind the quiet gate, on real speech and the shipped model."""
from pathlib import Path

from echo_cli.eval import mouth_prior as MP

DEFAULT = str(Path(__file__).resolve().parents[1] / "echo_cli" / "checkpoints" / "default.safetensors")


def test_quiet_gate_stills_the_shipped_prior_in_digital_silence(shared_data):
    off, on = MP.silence_ratios(DEFAULT, shared_data)
    assert not off["quiet_gate"] and on["quiet_gate"]
    assert off["speech_std"] > 0
    # the gate acts on digital silence only: the prior there moves far less than without it,
    # and the faint noise (not digital silence) is read as before
    assert on["silence_over_speech"] < 0.5 * off["silence_over_speech"]
    assert on["noise_over_speech"] == off["noise_over_speech"]


def test_calibration_slope_is_the_one_the_recipe_packaged(shared_data):
    """The recipe packages prior_gain = stage 1's least-squares slope ("calibrated"); the
    evaluation command recomputes it from the checkpoint alone on the training clips."""
    import json

    cal = MP.calibration(DEFAULT, shared_data)
    cfg = json.loads(Path(DEFAULT).with_suffix(".json").read_text())
    assert cal["training_clips"] >= 10 and cal["frames"] > 5000
    assert abs(cal["slope_mean"] - cfg["generator"]["prior_gain"]) <= 0.02
    assert all(s > 1.0 for s in cal["slope_per_component"])       # the ridge shrinks every component


def test_middle_layers_predict_the_mouth_better_than_the_last(shared_data):
    """eval.audio_layers, the measurement behind audio_input="whisper_mid": on the training
    speakers' leave-one-speaker-out CV (what the choice was made on), blocks 2-3 beat the
    encoder output; on the held-out speakers they beat the band-energy baseline (0.33)."""
    from echo_cli.eval.audio_layers import run

    rows = {r["features"]: r for r in run(sets=("final", "2+3"), ranks=(128,), data=shared_data)}
    assert rows["2+3"]["cv_train_speakers"] > rows["final"]["cv_train_speakers"] + 0.05
    assert rows["2+3"]["held_out"] > 0.4
