#!/usr/bin/env bash
# The README's results table: each configuration run with `dvc exp run` (the default data,
# structure-type split), scored on the measured dev sets, one row each appended to
# bench/results/table.md (see bench/results_row.py).
#   bash bench/results_table.sh MEASURED_DIR NAME -S key=value ...   # one row
# MEASURED_DIR holds folders with a labels.csv (bench/measured_accuracy.py --sets).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
measured=$1
name=$2
shift 2
git checkout -q -- params.yaml
dvc exp run "$@"
slug=$(echo "$name" | tr -c 'A-Za-z0-9\n' '_')
mkdir -p bench/results/measured
python bench/measured_accuracy.py --model models --sets "$measured" \
  --out "bench/results/measured/$slug.json" > /dev/null
# The command as it was typed: an argument with characters the shell reads ([, ], spaces)
# in single quotes, so that the row's command can be pasted back.
command="dvc exp run"
for arg in "$@"; do
  if [[ $arg =~ [^A-Za-z0-9_./=:,-] ]]; then command+=" '$arg'"; else command+=" $arg"; fi
done
python bench/results_row.py --name "$name" --command "$command" \
  --measured "bench/results/measured/$slug.json" | tee -a bench/results/table.md
git checkout -q -- params.yaml
