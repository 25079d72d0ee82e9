#!/usr/bin/env bash
# Set up (or reuse) .venv and run the whole pipeline on the default params with DVC.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
dvc repro "$@"
dvc metrics show
