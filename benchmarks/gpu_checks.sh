#!/usr/bin/env bash
# Every GPU measurement this project reports, in parts that fit a device call of 10 minutes:
#   notebook  the notebook itself, top to bottom, as a user's Run All executes it (papermill), in quick mode on the
#             cased TinyStories text in .data; keeps the executed notebook, its log, history, loss plot and GIF
#   ablation  the reference's recipe against the notebook's at quick scale (benchmarks/ablate.py --scale quick)
#   speed     benchmarks/throughput.py: every mode's shape, compiled and eager, bare step, whole loop and sampler
# Prepare with benchmarks/gpu_prepare.sh, then, e.g.:
#   run(command="benchmarks/gpu_checks.sh notebook ablation", carry=[".whl", ".data"], timeout_s=590)
#   run(command="benchmarks/gpu_checks.sh speed", carry=[".whl", ".data"], timeout_s=590)
# Everything lands in $OUT (the device tool's folder; /tmp/gpu-checks elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if ! python3 -c "import papermill" 2>/dev/null; then  # the GPU machine: the carried wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
if [[ ! -d .data ]]; then
    echo "no .data here: run benchmarks/gpu_prepare.sh first, and carry .whl and .data" >&2
    exit 2
fi
DATA=$(find "$ROOT/.data" -name '*.txt' | sort | paste -sd, -)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
for part in "${@:-notebook}"; do
    case $part in
    notebook)
        work=$(mktemp -d)
        (cd "$work" && RUN_MODE=${RUN_MODE:-quick} DATA_PATH=$DATA python3 -m papermill \
            "$ROOT/Diffusion_LLM_from_Scratch_TinyStories.ipynb" notebook.ipynb --log-output 2>&1) | tee "$OUT/notebook.log"
        cp "$work/notebook.ipynb" "$work/checkpoints/final/history.json" "$work/checkpoints/loss.png" \
            "$work/checkpoints/inference.gif" "$OUT/"
        ;;
    ablation)
        python3 benchmarks/ablate.py --scale quick --data "$DATA" --variants reference defaults --samples 3 2>&1 \
            | grep -v '^training' | tee "$OUT/ablation.log"
        ;;
    speed)
        python3 benchmarks/throughput.py --compile both 2>&1 | grep -v '^training' | tee "$OUT/speed.log"
        ;;
    *)
        echo "unknown part $part: use notebook, ablation or speed" >&2
        exit 2
        ;;
    esac
done
