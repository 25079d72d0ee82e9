#!/usr/bin/env bash
# Every benchmark, each figure as a ratio against its reference measured in the same run;
# results in bench/results/*.json. Run after `bash scripts/repro.sh` (they read data/).
#   bash bench/run.sh            # about 20 minutes on 2 CPU cores
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
python bench/xrd_speed.py --n 1000 > /dev/null
python bench/scaling.py --counts 1000 10000 > /dev/null
python bench/train_speed.py --steps 40 > /dev/null
python bench/images_speed.py --n 1000 > /dev/null
python bench/predict_speed.py --model src/xrdsym/shipped_model --n 1000 > /dev/null
python bench/summary.py
