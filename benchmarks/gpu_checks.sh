#!/usr/bin/env bash
# Every GPU measurement this project reports, in one call (about 10 minutes on one H100):
# training and sampling speed per RUN_MODE shape, compiled and eager; then the recipe ablation at quick scale.
# DATA: local TinyStories files for the ablation (default: ../shared/data/tinystories, as ablate.py).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python benchmarks/throughput.py --compile both
python benchmarks/ablate.py --scale quick ${DATA:+--data "$DATA"} --variants reference fixed defaults
