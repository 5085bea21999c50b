"""Make the media of samples/dialogue.yaml from packaged sources (no ../shared needed).

  .venv/bin/python samples/make_sample_media.py [--force]

avatar.png: scikit-image's astronaut portrait (public domain, NASA). avatar.wav and
user.wav: one 12 s conversation synthesized with espeak-ng (two voices, three turns; the
slots match the `turns:` of samples/dialogue.yaml). Same code as `echo-cli init --sample`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from echo_cli.cli.init import make_sample_media
from echo_cli.errors import EchoError


def main() -> int:
    here = Path(__file__).resolve().parent
    try:
        paths = make_sample_media(here / "media", force="--force" in sys.argv[1:])
    except EchoError as e:
        print(e.one_line(), file=sys.stderr)
        return e.exit_code
    for p in paths.values():
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
