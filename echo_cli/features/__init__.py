"""Per-frame features at the video frame rate.

    from echo_cli.features.audio import audio_features, read_audio, load_whisper_model
"""
