#!/usr/bin/env bash
# Set up (or reuse) .venv, check lint and formatting, and run the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
ruff check src tests
ruff format --check src tests
python -m pytest "$@"
