#!/usr/bin/env bash
# Every GPU measurement this project reports: training and sampling speed per RUN_MODE shape, compiled and eager,
# with the whole-run projection from the notebook's train() loop ("speed", a few minutes on one H100); then the
# recipe ablation at quick scale ("ablation", a few minutes more). With no argument, both, in one call; under a
# 10-minute limit per call, run `gpu_checks.sh speed` and `gpu_checks.sh ablation` as two calls.
# DATA: local TinyStories files for the ablation (default: ../shared/data/tinystories, as ablate.py).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [[ $what == all || $what == speed ]]; then
    python benchmarks/throughput.py --compile both
fi
if [[ $what == all || $what == ablation ]]; then
    python benchmarks/ablate.py --scale quick ${DATA:+--data "$DATA"} --variants reference fixed defaults --samples 3
    python benchmarks/ablate.py --scale quick ${DATA:+--data "$DATA"} --on defaults --variants "dropout 0.1"
fi
