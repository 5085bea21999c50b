"""Media I/O (L1): everything that touches ffmpeg. Import the submodules:

    from echo_cli.media.probe import probe                    # -> schema.MediaInfo (PyAV)
    from echo_cli.media.video_io import iter_frames, read_image, VideoWriter
    from echo_cli.media.audio_io import load_audio, write_wav, mix   # 16 kHz mono float32
    from echo_cli.media.mux import mux, read_metadata, side_by_side
    from echo_cli.media.ffmpeg import ffmpeg_exe, run, popen, base_args

ffmpeg: $ECHO_FFMPEG, else `ffmpeg` on PATH, else imageio-ffmpeg's binary; always argument
lists, graphs built with ffmpeg-python, stderr tail quoted in errors (InputError for bad
inputs, OutputError for failed writes). Decoding streams frame by frame; outputs are
written to temp siblings and renamed (a killed process leaves nothing at the output path).
"""
