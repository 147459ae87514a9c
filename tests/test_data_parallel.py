"""Data parallelism: two gloo processes share each micro-batch, average their gradients, and train one model as well
as one process does."""

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
from safetensors.torch import load_file
from train_worker import CONFIG, gradient_worker

from notebook_defs import NOTEBOOK
from synthetic_stories import write_data_folder

WORKER = Path(__file__).parent / "train_worker.py"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_average_the_gradients_of_their_own_rows(nb, tmp_path):
    """Each process draws its own half of the micro-batch, with steps and masks of its own, and both end with the mean
    of the two halves' gradients: the gradient of the whole micro-batch's loss."""
    out = tmp_path / "gradients.pt"
    mp.spawn(gradient_worker, args=(2, free_port(), out), nprocs=2)
    ranks = [torch.load(out.with_suffix(f".{rank}.pt"), weights_only=True) for rank in range(2)]
    assert ranks[0]["x"].shape[0] == nb.get_config("smoke").batch_size // 2
    assert not torch.equal(ranks[0]["x"], ranks[1]["x"])  # each its own windows

    cfg = nb.get_config("smoke")
    shape = replace(cfg.model, vocab_size=300)
    torch.manual_seed(0)
    model = nb.DiffusionLM(shape)
    for rank, saved in enumerate(ranks):
        torch.manual_seed(cfg.seed + rank)  # the process's own steps and masks
        (nb.diffusion_loss(model, saved["x"], 4, shape.diffusion_steps) / 2).backward()
    for name, parameter in model.named_parameters():
        for saved in ranks:
            assert torch.allclose(saved[name], parameter.grad, atol=1e-6, rtol=1e-4), name


def test_torchrun_with_two_processes_trains_one_model_as_well_as_one_process(tmp_path):
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
    other = load_file(tmp_path / "two" / "rank-1.safetensors")
    assert all(torch.equal(other[name], weights) for name, weights in two.items())  # one model, on both processes
    assert any(not torch.equal(two[name], weights) for name, weights in one.items())  # drawn from other numbers
    assert [step for step, _ in two_history["val"]] == [step for step, _ in one_history["val"]]
    first, last = one_history["val"][0][1], one_history["val"][-1][1]
    assert two_history["val"][-1][1] == pytest.approx(last, abs=0.1 * (first - last))  # and as good


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
    one, two = (json.loads((tmp_path / name / "final" / "history.json").read_text())["val"] for name in ("one", "two"))
    first, last = one[0][1], one[-1][1]
    assert two[-1][1] == pytest.approx(last, abs=0.1 * (first - last))  # it learns as much as one process
