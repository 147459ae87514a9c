"""Checkpoints during training: exact resume after kill -9, crashes while saving, a full disk, NaN, and settings
mismatches."""

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_worker import CONFIG

WORKER = Path(__file__).parent / "train_worker.py"
LAST = f"step-{CONFIG['micro_steps']:08d}"


def start_worker(workdir, *args):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(workdir), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_worker(workdir, *args):
    out, err = start_worker(workdir, *args).communicate(timeout=600)
    return out + err


def final_state(workdir):
    folder = workdir / "run" / LAST
    return (folder / "model.safetensors").read_bytes(), json.loads((folder / "history.json").read_text())


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    output = finish_worker(workdir)
    assert (workdir / "run" / LAST).is_dir(), output[-3000:]
    return final_state(workdir)


def test_kill_9_then_resume_is_bit_identical(straight_run, tmp_path):
    worker = start_worker(tmp_path)
    deadline = time.time() + 300
    while not list((tmp_path / "run").glob("step-*[0-9]")) and time.time() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()  # reaps it and closes its pipes
    saved = sorted((tmp_path / "run").glob("step-*[0-9]"))
    assert saved and saved[-1].name < LAST, "the worker finished before it could be killed"

    output = finish_worker(tmp_path)
    assert f"Resuming from {saved[-1]}" in output
    weights, history = final_state(tmp_path)
    assert weights == straight_run[0]
    assert history == straight_run[1]


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(nb, straight_run, tmp_path):
    worker = start_worker(tmp_path, "--crash-on-second-checkpoint")
    worker.communicate(timeout=600)
    assert worker.returncode == -signal.SIGKILL
    run = tmp_path / "run"
    complete = sorted(p.name for p in run.glob("step-*[0-9]"))
    assert complete == ["step-00000060"]
    assert len(list(run.glob("step-00000120.*.tmp"))) == 1  # the interrupted write, never renamed into place

    model, tokenizer, cfg, _ = nb.load_checkpoint(run / "step-00000060")
    assert all(torch.isfinite(p).all() for p in model.parameters())

    output = finish_worker(tmp_path)
    assert f"Resuming from {run / 'step-00000060'}" in output
    assert final_state(tmp_path) == straight_run


def test_a_checkpoint_that_cannot_be_written_stops_training_and_the_earlier_one_stays(
    nb, cfg, model, tokenizer, tiny_data, tmp_path, monkeypatch
):
    cfg = dataclasses.replace(cfg, micro_steps=60, checkpoints_per_run=3, evals_per_run=1)
    stream, val = tiny_data(cfg.model.seq_len)
    calls, real_save = [], torch.save

    def full_disk(obj, path):  # the second training checkpoint finds the disk full
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_save(obj, path)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RuntimeError, match=r"checkpoint .*step-00000040 failed \(OSError: .*No space left.*intact"):
        nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run")
    complete = [folder.name for folder in nb.completed_checkpoints(tmp_path / "run")]
    assert complete[0] == "step-00000020" and "step-00000040" not in complete
    good, *_ = nb.load_checkpoint(tmp_path / "run" / "step-00000020")
    assert all(torch.isfinite(p).all() for p in good.parameters())


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(nb, cfg, model, tokenizer, tiny_data, tmp_path):
    cfg = dataclasses.replace(cfg, micro_steps=60, log_every=10, checkpoints_per_run=3, evals_per_run=1)
    stream, val = tiny_data(cfg.model.seq_len)
    calls = []

    def poison(module, inputs, output):  # from the 26th training forward on, the model outputs NaN
        if module.training:
            calls.append(1)
            return output * float("nan") if len(calls) >= 26 else output

    model.ln_f.register_forward_hook(poison)
    with pytest.raises(FloatingPointError, match=r"NaN or infinite at optimizer update 26.*step-00000020"):
        nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").glob("step-*")) == ["step-00000020"]
    good, *_ = nb.load_checkpoint(tmp_path / "run" / "step-00000020")
    assert all(torch.isfinite(p).all() for p in good.parameters())


def test_other_settings_are_refused_or_moved_aside(nb, cfg, model, tokenizer, tiny_data, tmp_path):
    cfg = dataclasses.replace(cfg, micro_steps=20, checkpoints_per_run=1, evals_per_run=1)
    stream, val = tiny_data(cfg.model.seq_len)
    nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run", "data-a")
    assert (tmp_path / "run" / "step-00000020").is_dir() and (tmp_path / "run" / "best").is_dir()

    other = dataclasses.replace(cfg, lr=5e-4)
    with pytest.raises(ValueError, match=r"other settings \(lr, data \(data-a -> data-b\)\).*FRESH_START=1"):
        nb.train_run(model, other, stream, val, tokenizer, tmp_path / "run", "data-b")
    assert (tmp_path / "run" / "step-00000020").is_dir()  # nothing was touched

    history, _ = nb.train_run(model, other, stream, val, tokenizer, tmp_path / "run", "data-b", fresh_start=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run-")]
    assert len(aside) == 1 and (aside[0] / "step-00000020" / "model.safetensors").is_file()
    assert history["val"][0][0] == 0  # started over
    saved = json.loads((tmp_path / "run" / "step-00000020" / "training_config.json").read_text())
    assert saved["config"]["lr"] == 5e-4 and saved["data"] == "data-b"


def test_a_run_saved_by_the_other_optimizer_is_refused(nb, cfg, model, tokenizer, tiny_data, tmp_path):
    cfg = dataclasses.replace(cfg, micro_steps=10, checkpoints_per_run=1, evals_per_run=1)
    stream, val = tiny_data(cfg.model.seq_len)
    nb.train_run(model, dataclasses.replace(cfg, optimizer="adamw"), stream, val, tokenizer, tmp_path / "run")
    with pytest.raises(ValueError, match=r"other settings \(optimizer\).*FRESH_START=1"):
        nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run")  # AdamW's moments are not Muon's


def test_a_finished_run_is_not_trained_again(nb, cfg, model, tokenizer, tiny_data, tmp_path, capsys):
    cfg = dataclasses.replace(cfg, micro_steps=10, checkpoints_per_run=1, evals_per_run=1)
    stream, val = tiny_data(cfg.model.seq_len)
    first, first_ema = nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run")
    again, again_ema = nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run")
    assert json.loads(json.dumps(first)) == again
    assert all(torch.equal(a, b) for a, b in zip(first_ema.parameters(), again_ema.parameters(), strict=True))
    assert "10 of 10 optimizer updates already done" in capsys.readouterr().out


def test_only_the_latest_checkpoints_are_kept(nb, cfg, model, tokenizer, tiny_data, tmp_path):
    cfg = dataclasses.replace(cfg, micro_steps=50, checkpoints_per_run=5, keep_checkpoints=2, evals_per_run=5)
    stream, val = tiny_data(cfg.model.seq_len)
    history, _ = nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best", "step-00000040", "step-00000050"]
    best_step, best_loss = min(history["val"][1:], key=lambda entry: entry[1])
    best_history = json.loads((tmp_path / "run" / "best" / "history.json").read_text())
    assert best_history["val"][-1] == [best_step, best_loss]


def test_every_random_generator_training_draws_from_is_restored(nb):
    data_rng = torch.Generator().manual_seed(3)
    saved = nb.rng_states(data_rng)
    expected = (torch.rand(1), torch.rand(1, generator=data_rng))
    nb.set_rng_states(saved, data_rng)
    assert (torch.rand(1), torch.rand(1, generator=data_rng)) == expected


def test_a_training_state_that_would_run_code_is_refused(nb, cfg, model, tokenizer, tiny_data, tmp_path):
    cfg = dataclasses.replace(cfg, micro_steps=10, checkpoints_per_run=1, evals_per_run=1)
    stream, val = tiny_data(cfg.model.seq_len)
    nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run")
    state_file = tmp_path / "run" / "step-00000010" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=True)
    state["payload"] = Exploit()
    torch.save(state, state_file)
    with pytest.raises(
        ValueError, match=r"Cannot resume from .*step-00000010: trainer_state.pt holds objects.*could run code"
    ):
        nb.train_run(model, cfg, stream, val, tokenizer, tmp_path / "run")
    assert not Exploit.ran


class Exploit:
    ran = False

    def __reduce__(self):
        return (setattr, (Exploit, "ran", True))
