"""Media kinds by file suffix: one list for every command that scans a folder.

Why one list: preprocess, training and eval each walk folders of the user's files; when
each kept its own suffixes, a .mpg clip was preprocessed but never trained on. ffmpeg
decodes all of these; the suffix only decides what a folder scan picks up.
"""
from __future__ import annotations

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
AUDIO_EXTS = frozenset({".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".opus"})
VIDEO_EXTS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"})
MEDIA_EXTS = AUDIO_EXTS | VIDEO_EXTS | IMAGE_EXTS
