"""Preprocessing: face track (MediaPipe), head pose, crop, transcripts, turns, cache.

Import the submodules (heavy dependencies load inside their functions):

    from echo_cli.preprocess.face import track_face, load_track, save_track
    from echo_cli.preprocess.pose import fit_pose, canonical_face, euler_to_matrix
    from echo_cli.preprocess.crop import crop_image, square_boxes, to_crop, from_crop
    from echo_cli.preprocess.transcript import transcribe, read_transcript
    from echo_cli.preprocess.turns import turns_from_vad, turns_from_features
    from echo_cli.preprocess.pipeline import preprocess_media      # cached, one file

See docs/preprocessing.md and docs/formats.md.
"""
