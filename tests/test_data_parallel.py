"""Data parallelism: two gloo processes compute the gradients, and train the model, of one process with the same
global batch."""

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from notebook_defs import NOTEBOOK
from safetensors.torch import load_file
from synthetic_stories import write_data_folder
from train_worker import CONFIG, gradient_worker

WORKER = Path(__file__).parent / "train_worker.py"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("causal", [False, True])
def test_the_parts_of_a_micro_batch_loss_add_up_to_the_whole(nb, tokenizer, shape, causal):
    shape = replace(shape, causal=causal)
    torch.manual_seed(0)
    model = nb.DiffusionLM(shape)
    x = torch.randint(10, len(tokenizer), (6, shape.seq_len))
    torch.manual_seed(3)
    whole = nb.training_loss(model, x, shape, tokenizer.mask_token_id)
    parts = []
    for rows in (slice(0, 2), slice(2, 4), slice(4, 6)):
        torch.manual_seed(3)  # every process draws the same steps and masks
        parts.append(nb.training_loss(model, x, shape, tokenizer.mask_token_id, rows))
    assert torch.allclose(sum(parts), whole, atol=1e-6)
    assert not torch.allclose(parts[0], whole, atol=1e-3)


def test_two_processes_compute_the_one_process_gradient(nb, tmp_path):
    out = tmp_path / "gradients.pt"
    mp.spawn(gradient_worker, args=(2, free_port(), out), nprocs=2)
    two = torch.load(out, weights_only=True)

    cfg = replace(nb.get_config("smoke"), grad_accum=2)
    shape = replace(cfg.model, vocab_size=300)
    torch.manual_seed(0)
    model = nb.DiffusionLM(shape)
    x = torch.randint(10, 300, (cfg.batch_size, shape.seq_len), generator=torch.Generator().manual_seed(1))
    loss = sum(nb.micro_batch_backward(model, x, shape, 4, slice(None), cfg.grad_accum) for _ in range(2))
    assert torch.allclose(two.pop("loss"), loss, atol=1e-6)
    for name, parameter in model.named_parameters():
        assert torch.allclose(two[name], parameter.grad, atol=1e-6, rtol=1e-4), name


def test_torchrun_with_two_processes_trains_like_one(tmp_path):
    def run(*command, name):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(
            [*command, str(WORKER), str(tmp_path), "--folder", name],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        folder = tmp_path / name / f"step-{CONFIG['micro_steps']:08d}"
        return result.stdout, load_file(folder / "model.safetensors"), json.loads((folder / "history.json").read_text())

    _, one, one_history = run(sys.executable, name="one")  # also fills the data cache the two processes read
    printed, two, two_history = run(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", name="two"
    )
    assert "Training data-parallel on 2 processes, 4 of each micro-batch's 8 blocks each." in printed
    for name, weights in one.items():
        assert torch.allclose(two[name], weights, atol=1e-4), name
    for key, values in one_history.items():
        assert [step for step, _ in two_history[key]] == [step for step, _ in values]
        assert [loss for _, loss in two_history[key]] == pytest.approx([loss for _, loss in values], rel=1e-4), key


def test_the_notebook_as_a_script_under_torchrun(tmp_path):
    """What the notebook tells users to do for several GPUs, on two CPU processes: the same model as one process."""
    data = write_data_folder(tmp_path / "data", 400, seed=5, n_valid=40)
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "script", str(NOTEBOOK), "--output-dir", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    script = tmp_path / (NOTEBOOK.stem + ".py")
    env = {
        **os.environ,
        "RUN_MODE": "smoke",
        "DATA_PATH": str(data),
        "BASELINE": "0",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }

    def run(*command, output):
        result = subprocess.run(
            [*command, str(script)],
            cwd=tmp_path,
            env={**env, "OUTPUT_DIR": output},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    printed = run(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", output="two")
    assert "Training data-parallel on 2 processes" in printed
    assert printed.count("reloads to the same config and bit-identical weights") == 1  # process 0 alone saves
    assert (tmp_path / "two" / "inference.gif").is_file()
    run(sys.executable, output="one")
    one = load_file(tmp_path / "one" / "final" / "model.safetensors")
    two = load_file(tmp_path / "two" / "final" / "model.safetensors")
    for name, weights in one.items():
        assert torch.allclose(two[name], weights, atol=1e-4), name
