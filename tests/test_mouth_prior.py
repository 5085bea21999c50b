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
