#!/usr/bin/env bash
# Run here before benchmarks/gpu_checks.sh goes to a GPU machine (device tool), which reaches no package index and no
# ../shared: wheels of what its image lacks (Jupyter's kernel machinery, papermill, `datasets`) into .whl, and the
# cased TinyStories text of ../shared/data/tinystories into .data. Both folders are git-ignored; carry them.
set -euo pipefail
cd "$(dirname "$0")/.."
for folder in /.whl/ /.data/; do
    grep -qx "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
done
PACKAGES=(
    papermill entrypoints tenacity nbclient nbformat fastjsonschema jsonschema jsonschema-specifications referencing
    rpds-py jupyter-core platformdirs traitlets jupyter-client pyzmq tornado ipykernel comm debugpy nest-asyncio2
    ipython ipython-pygments-lexers matplotlib-inline decorator jedi parso pexpect ptyprocess prompt-toolkit wcwidth
    stack-data executing asttokens pure-eval datasets dill multiprocess
)
rm -rf .whl .data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${PACKAGES[@]}"
mkdir .data
find ../shared/data/tinystories -name '*.txt' ! -name '*_lower_*' -exec cp {} .data/ \;
du -sh .whl .data
