"""`echo-cli init DIR`: a commented example dialogue.yaml (and, with --sample, media for it).

The sample media come from packaged, freely licensed sources only, so they can be made on
a fresh machine without ../shared: the astronaut portrait from scikit-image (public domain,
NASA) and speech synthesized with espeak-ng. samples/make_sample_media.py calls
`make_sample_media` below.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

EXAMPLE = """Examples:

  echo-cli init my_talk            # writes my_talk/dialogue.yaml (commented)

  echo-cli init my_talk --sample   # also makes my_talk/media/ (sample media)

  echo-cli render my_talk/dialogue.yaml"""

TEMPLATE = """\
# dialogue.yaml: one conversation for `echo-cli render` (reference: docs/dialogue.md)
# Paths are relative to this file.
version: 1                      # schema version (required)

avatar:                         # the person whose head is generated
  image: media/avatar.png       # reference portrait (or `video: clip.mp4`, exactly one)
  audio: media/avatar.wav       # the avatar's speech over the whole conversation

user:                           # the other person (optional; both fields optional)
  audio: media/user.wav         # the user's speech (the avatar listens and reacts)
  # video: media/user.mp4       # the user's face: drives listening reactions

# Who speaks when (optional: derived from voice activity when absent).
# text and emotion are optional per turn.
turns:
  - {speaker: avatar, start: 0.0, end: 4.0, text: "Hello! Thanks for calling today.", emotion: happy}
  - {speaker: user,   start: 4.0, end: 8.0, text: "Hi. I have a question about my order."}
  - {speaker: avatar, start: 8.0, end: 12.0, text: "Of course, let me have a look for you.", emotion: calm and warm}

transcript:
  source: auto                  # auto | whisperx | faster-whisper | none | file (then set path: words.srt);
                                # skipped when every turn has its text, as here

output:
  path: out/dialogue.mp4
  # fps: 25                     # these three override the preset; CLI flags override them
  # size: 512
  # crf: 20
  audio_mix: both               # avatar | both (both voices in the output)
  layout: avatar                # avatar | side-by-side (needs user.video)

preset: default                 # draft | default | quality (`echo-cli presets`)
seed: 0                         # same seed + same inputs = same video
# checkpoint: my_model.safetensors   # default: the bundled checkpoint
"""

# The sample conversation: (speaker, start, end, text). Fixed slots so the YAML's turns hold
# whatever espeak-ng version synthesizes the speech (an utterance is sped up to fit its slot).
SAMPLE_TURNS = [
    ("avatar", 0.0, 4.0, "Hello! Thanks for calling today."),
    ("user", 4.0, 8.0, "Hi. I have a question about my order."),
    ("avatar", 8.0, 12.0, "Of course, let me have a look for you."),
]
VOICES = {"avatar": ("en-us", 45), "user": ("en-us+m3", 30)}   # espeak-ng voice, pitch


def _espeak() -> str:
    from echo_cli.errors import DependencyError

    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if not exe:
        raise DependencyError("espeak-ng not found (needed to synthesize the sample speech)",
                              fix="apt-get install espeak-ng (scripts/setup.sh does it)")
    return exe


def _say(text: str, voice: str, pitch: int, max_seconds: float, tmp: Path):
    from echo_cli.media.audio_io import load_audio
    from echo_cli.schema import SAMPLE_RATE

    speed = 160
    for _ in range(6):
        wav = tmp / "say.wav"
        subprocess.run([_espeak(), "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), text],
                       check=True, capture_output=True)
        wave = load_audio(wav)
        if len(wave) <= (max_seconds - 0.3) * SAMPLE_RATE:
            return wave
        speed += 25
    return wave[: int((max_seconds - 0.3) * SAMPLE_RATE)]


def sample_media_paths(media_dir: Path) -> dict[str, Path]:
    media_dir = Path(media_dir)
    return {"image": media_dir / "avatar.png", "avatar": media_dir / "avatar.wav", "user": media_dir / "user.wav"}


def make_sample_media(media_dir: Path, force: bool = False) -> dict[str, Path]:
    """avatar.png (skimage astronaut), avatar.wav and user.wav (espeak-ng), one timeline."""
    import tempfile

    import numpy as np

    from echo_cli.io_atomic import atomic_path
    from echo_cli.media.audio_io import write_wav
    from echo_cli.schema import SAMPLE_RATE

    paths = sample_media_paths(media_dir)
    if not force and all(p.is_file() for p in paths.values()):
        return paths
    media_dir.mkdir(parents=True, exist_ok=True)

    from PIL import Image
    from skimage import data

    img = data.astronaut()                       # 512x512 RGB, public domain (NASA)
    with atomic_path(paths["image"]) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")

    total = SAMPLE_TURNS[-1][2]
    tracks = {"avatar": np.zeros(int(total * SAMPLE_RATE), np.float32),
              "user": np.zeros(int(total * SAMPLE_RATE), np.float32)}
    with tempfile.TemporaryDirectory() as td:
        for speaker, start, end, text in SAMPLE_TURNS:
            voice, pitch = VOICES[speaker]
            wave = _say(text, voice, pitch, end - start, Path(td))
            i0 = int((start + 0.15) * SAMPLE_RATE)
            tracks[speaker][i0:i0 + len(wave)] = wave[: len(tracks[speaker]) - i0]
    for speaker in ("avatar", "user"):
        write_wav(paths[speaker], tracks[speaker])
    return paths


def register(app: typer.Typer) -> None:
    @app.command("init", epilog=EXAMPLE)
    def init(
        directory: Annotated[str, typer.Argument(help="folder to create or fill", show_default=False)],
        force: Annotated[bool, typer.Option("--force", help="overwrite an existing dialogue.yaml (and, with --sample, media)")] = False,
        sample: Annotated[bool, typer.Option("--sample", help="also synthesize sample media into DIR/media")] = False,
    ) -> None:
        """Write a commented example dialogue.yaml to start from."""
        from echo_cli import io_atomic
        from echo_cli.cli.common import emit
        from echo_cli.errors import OutputError, UsageError

        if not directory.strip():           # Path("") is ".": an empty argument wrote ./dialogue.yaml
            raise UsageError("init needs a folder name", fix="e.g. echo-cli init my_talk (or . for this folder)")
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise OutputError("this is a file, not a folder", path=directory,
                              fix="name a new or existing folder; init writes DIR/dialogue.yaml")
        target = directory / "dialogue.yaml"
        if target.exists() and not force:
            raise OutputError("dialogue.yaml already exists", path=target, fix="pass --force to overwrite it")
        taken = [p for p in sample_media_paths(directory / "media").values() if p.exists()] if sample else []
        if taken and not force:     # they may be the user's own files under the sample's names
            raise OutputError(f"{taken[0].name} already exists", path=taken[0],
                              fix="pass --force to replace the sample media, or init another folder")
        io_atomic.write_text(target, TEMPLATE)
        made = {}
        if sample:
            made = {k: str(v) for k, v in make_sample_media(directory / "media", force=force).items()}
        hint = f"echo-cli render {target}"
        note = (f"\nwith sample media in {directory / 'media'}; render it:" if sample else
                f"\nput your media in {directory / 'media'} (or rerun with --sample), then:")
        emit({"dialogue": str(target), "media": made, "next": hint},
             human=f"wrote {target}{note}\n  {hint}")
