#!/usr/bin/env bash
# Every GPU check and measurement this project reports, in parts:
#   tests     tests/test_gpu.py: the compiled bf16 model against the fp32 CPU model, training, compiled sampling rounds
#             replayed from CUDA graphs, the sampler's random numbers, evaluation
#   notebook  the notebook itself, top to bottom, as a user's Run All executes it (papermill), in quick mode on the
#             cased TinyStories text in .data; keeps the executed notebook, its log, history, loss plot and GIF
#   samplers  benchmarks/samplers.py on the model and baseline the notebook part just trained (after it, in the same
#             call): every sampler setting at quick's scale, 64 stories per setting and seed (SAMPLERS_ARGS: options)
#   ablation  the reference's recipe against the notebook's at quick scale (benchmarks/ablate.py --scale quick)
#   speed     benchmarks/speed.py: each mode's shape, eager and compiled: the update, the sampler and the whole loop
#             (SPEED_ARGS passes it options, e.g. "--modes budget_100 --loop-updates 60")
#   dataprep  benchmarks/dataprep.py: the tokenizer's training and the tokenising of the stories before a run, on all
#             the machine's cores (DATAPREP_ARGS passes it options)
# DEADLINE_S=N stops the parts N seconds after the script starts (a part still running is cut off, and whatever it
# had written under $OUT stays), so that the whole ends within a time limit.
# On a machine without network or ../shared, prepare with benchmarks/gpu_prepare.sh and bring .whl and .data along:
#   DEADLINE_S=520 benchmarks/gpu_checks.sh tests notebook samplers
# Everything lands in $OUT (/tmp/gpu-checks unless set).
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
python3 -c "import torch; print('torch', torch.__version__)"

PARTS=$(mktemp)  # one line per part; not in $OUT, which brings back at most 8 files
time_left() {  # seconds this part may run: until DEADLINE_S, or a day without one
    echo $((${DEADLINE_S:-86400} - SECONDS))
}

for part in "${@:-notebook}"; do
    if (($(time_left) < 30)); then
        echo "== $part: skipped, DEADLINE_S=$DEADLINE_S reached" | tee -a "$PARTS"
        continue
    fi
    began=$SECONDS
    status=0
    case $part in
    tests)
        timeout "$(time_left)" python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 \
            | tee "$OUT/tests.log" || status=$?
        ;;
    notebook)
        work=$(mktemp -d)
        (cd "$work" && RUN_MODE=${RUN_MODE:-quick} DATA_PATH=$DATA timeout "$(time_left)" python3 -m papermill \
            "$ROOT/Diffusion_LLM_from_Scratch_TinyStories.ipynb" notebook.ipynb --log-output 2>&1) \
            | tee "$OUT/notebook.log" || status=$?
        for file in notebook.ipynb checkpoints/final/history.json checkpoints/loss.png checkpoints/inference.gif; do
            cp "$work/$file" "$OUT/" 2>/dev/null || echo "no $file"
        done
        ;;
    samplers)
        if [[ -z ${work:-} ]]; then
            echo "samplers measures the notebook part's model: run the notebook part first, in the same call" >&2
            status=2
        else
            # shellcheck disable=SC2086  # SAMPLERS_ARGS is a list of options
            timeout "$(time_left)" python3 benchmarks/samplers.py --runs "$work/checkpoints" --data "$DATA" \
                ${SAMPLERS_ARGS:-} 2>&1 | tee "$OUT/samplers.log" || status=$?
        fi
        ;;
    ablation)
        timeout "$(time_left)" python3 benchmarks/ablate.py --scale quick --data "$DATA" \
            --variants ${ABLATION_VARIANTS:-reference defaults} --samples 3 2>&1 \
            | grep -v '^.\?training' | tee "$OUT/ablation.log" || status=$?
        ;;
    speed)
        # shellcheck disable=SC2086  # SPEED_ARGS is a list of options
        timeout "$(time_left)" python3 benchmarks/speed.py ${SPEED_ARGS:-} 2>&1 | tee "$OUT/speed.log" || status=$?
        ;;
    dataprep)
        # shellcheck disable=SC2086  # DATAPREP_ARGS is a list of options
        timeout "$(time_left)" python3 benchmarks/dataprep.py --data "$DATA" \
            ${DATAPREP_ARGS:---threads "$(nproc)"} 2>&1 | tee "$OUT/dataprep.log" || status=$?
        ;;
    *)
        echo "unknown part $part: use tests, notebook, samplers, ablation, speed or dataprep" >&2
        exit 2
        ;;
    esac
    echo "== $part: exit status $status after $((SECONDS - began)) s" | tee -a "$PARTS"
done
cat "$PARTS"  # last, so that the reply's tail holds it
