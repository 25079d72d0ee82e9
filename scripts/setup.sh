#!/usr/bin/env bash
# Create or reuse .venv with the pinned requirements and xrdsym installed (editable).
# Sourced by scripts/repro.sh and scripts/test.sh; needs Python 3.11, git and pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null 2>&1; then
  python=python3
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "xrdsym needs Python 3.11 (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
# Reinstall only when requirements.txt or pyproject.toml changed since the last install.
stamp=.venv/.xrdsym-installed
wanted=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing pinned requirements into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$wanted" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
