"""benchmarks/speed.py: it times the notebook's own update, sampler and loop, and counts FLOPs from the shapes."""

import subprocess
import sys

import pytest

from notebook_defs import BENCHMARKS, load_benchmark

pytestmark = pytest.mark.benchmarks  # developers' tools: CI runs these on requirements-dev.txt, not the floors


def test_flops_per_token_are_counted_from_the_shapes(nb):
    speed = load_benchmark("speed")
    shape = nb.ModelConfig(vocab_size=100, seq_len=8, d_model=16, n_layers=2, n_heads=2, d_ff=64, diffusion_steps=4)
    blocks = 2 * (16 * 48 + 16 * 16 + 16 * 64 * 2)  # per block: QKV, the output projection, the MLP's two matrices
    forward = 2 * blocks + 4 * 2 * 8 * 16 + 2 * 16 * 100  # the matrices, attention, the output layer
    assert speed.train_flops_per_token(nb.DiffusionLM(shape)) == 3 * forward


def test_the_script_prints_the_update_and_the_whole_run_for_each_mode():
    command = [sys.executable, str(BENCHMARKS / "speed.py"), "--modes", "smoke", "--steps", "1", "--warmup", "1",
               "--loop-updates", "5"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = [line.split(" | ") for line in printed.splitlines() if line.startswith("| smoke | eager |")]
    update, whole = rows[-2:]  # each row is printed as it comes, then again in its table
    assert len(rows) == 4 and update[3] == "1,024" and float(update[5].replace(",", "")) > 0
    assert whole[4].startswith("4 × ") and whole[5].startswith("3 × ")  # smoke's validations (3 + 1), checkpoints
