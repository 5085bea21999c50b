#!/usr/bin/env bash
# Set up echo-cli in ./.venv on a fresh Debian/Ubuntu machine with Python 3.10+ (3.11 tested).
#
#   bash scripts/setup.sh         # runtime: system packages, venv, locked deps, sample media
#   bash scripts/setup.sh --dev   # + test tools (pytest, hypothesis)
#
# Idempotent: a stamp (hash of requirements.lock.txt + pyproject.toml) skips the pip step
# when nothing changed, so a second run takes about a second.
# Env: PYTHON=python3.11 to pick the interpreter; ECHO_SKIP_APT=1 to skip apt-get.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (use --dev)" >&2; exit 2 ;;
  esac
done
say() { echo "setup: $*" >&2; }

# 1. system packages: espeak-ng synthesizes the sample speech (optional for real media).
if ! command -v espeak-ng >/dev/null 2>&1 && [ "${ECHO_SKIP_APT:-0}" != 1 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
      if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
    fi
    if [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; then
      say "installing espeak-ng (apt-get)"
      if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null; }; then
        say "warning: apt-get could not install espeak-ng; sample speech will be missing (fix: apt-get install espeak-ng)"
      fi
    else
      say "warning: espeak-ng missing and no root/sudo for apt-get (fix: sudo apt-get install espeak-ng)"
    fi
  else
    say "warning: no apt-get on this system; install espeak-ng with your package manager for the sample speech"
  fi
fi

# 2. virtual environment
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
  say "error: $PY not found (fix: install Python 3.11, or set PYTHON=/path/to/python3)"; exit 6
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  say "error: Python 3.10+ needed, $PY is $("$PY" -V 2>&1) (fix: PYTHON=python3.11 bash scripts/setup.sh)"; exit 6
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PY" -V 2>&1)"
  "$PY" -m venv .venv || { say "error: venv failed (fix: apt-get install python3-venv)"; exit 6; }
fi

# 3. locked dependencies + the package itself (editable), skipped when the stamp matches
HASH=$(cat requirements.lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)
STAMP=.venv/.echo-cli-setup
have=$(cat "$STAMP" 2>/dev/null || true)
NEED=1
if [ "$have" = "$HASH dev=1" ] || { [ "$DEV" = 0 ] && [ "$have" = "$HASH dev=0" ]; }; then NEED=0; fi
[ -x .venv/bin/echo-cli ] || NEED=1
if [ "$NEED" = 0 ]; then
  say "dependencies up to date (stamp matches)"
else
  say "installing locked dependencies (requirements.lock.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock.txt
  if [ "$DEV" = 1 ]; then EXTRA=".[dev]"; else EXTRA="."; fi
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e "$EXTRA"
  echo "$HASH dev=$DEV" > "$STAMP"
fi

# 4. sample media for samples/dialogue.yaml (packaged portrait + espeak-ng speech)
if [ ! -f samples/media/avatar.wav ] || [ ! -f samples/media/user.wav ] || [ ! -f samples/media/avatar.png ]; then
  if command -v espeak-ng >/dev/null 2>&1 || command -v espeak >/dev/null 2>&1; then
    say "making sample media (samples/media/)"
    .venv/bin/python samples/make_sample_media.py >/dev/null
  else
    say "warning: espeak-ng missing: samples/media not made (fix: apt-get install espeak-ng, rerun setup)"
  fi
fi
say "ready: $ROOT/.venv/bin/echo-cli ($(.venv/bin/echo-cli --version))"
