"""Train a tiny model with the notebook's own `train`, in its own process, so that tests can kill it.

Usage: python train_worker.py WORKDIR [crash-on-second-checkpoint]
"""

import dataclasses
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from notebook_defs import load_definitions  # noqa: E402
from synthetic_stories import make_stories  # noqa: E402

CONFIG = {
    "micro_steps": 600,
    "grad_accum": 2,
    "batch_size": 8,
    "dropout": 0.1,
    "warmup_steps": 20,
    "checkpoints_per_run": 10,
    "evals_per_run": 3,
    "log_every": 10,
    "keep_checkpoints": 20,
}


def crash_during_second_save(real_save):
    """torch.save that dies (SIGKILL) half-way through writing the second training checkpoint's state."""
    calls = []

    def save(obj, path):
        calls.append(path)
        if len(calls) < 2:
            return real_save(obj, path)
        real_save(obj, path)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        os.kill(os.getpid(), signal.SIGKILL)

    return save


def main(workdir, crash=False):
    torch.set_num_threads(1)
    nb = load_definitions()
    cfg = dataclasses.replace(nb.get_config("smoke"), **CONFIG)
    stories = make_stories(200, seed=7)
    tokenizer = nb.cached_tokenizer(stories, 300, workdir / "cache")
    stream = nb.cached_token_stream(tokenizer, stories[:180], workdir / "cache")
    val = nb.fixed_blocks(nb.cached_token_stream(tokenizer, stories[180:], workdir / "cache"), cfg.seq_len, 16)
    torch.manual_seed(cfg.seed)
    model = nb.DiffusionLM(**nb.model_kwargs(cfg, len(tokenizer)))
    if crash:
        torch.save = crash_during_second_save(torch.save)
    nb.train(model, cfg, stream, val, tokenizer, "cpu", workdir / "run", "synthetic")


if __name__ == "__main__":
    main(Path(sys.argv[1]), crash=sys.argv[2:] == ["crash-on-second-checkpoint"])
