#!/usr/bin/env bash
# Set up (or reuse) .venv, check lint and formatting, build the docs strictly, and run the whole
# test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
ruff check src tests
ruff format --check src tests
# The docs site (mkdocs.yml): a broken link, page, anchor or API reference fails the build.
site_dir=$(mktemp -d)
trap 'rm -rf "$site_dir"' EXIT
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$site_dir"
python -m pytest "$@"
