"""Train a tiny model with the notebook's own `train`, in its own process, so that tests can kill it.

Usage: python train_worker.py WORKDIR [--crash-on-second-checkpoint] [--folder NAME]
Under `torchrun --nproc_per_node=N` it trains data-parallel on the gloo backend.
"""

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the project's root
from notebook_defs import load_definitions  # noqa: E402
from synthetic_stories import make_stories  # noqa: E402

CONFIG = {
    "micro_steps": 600,
    "grad_accum": 2,
    "batch_size": 8,
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


def leave_without_teardown():
    """End a spawned gloo process with exit code 0 once every process is done: the interpreter's teardown of the
    distributed runtime sometimes aborts (SIGABRT), which is not what these tests are about."""
    dist.barrier()
    os._exit(0)


def gradient_worker(rank, world, port, out):
    """One of `world` gloo processes: one micro-batch's gradient through Run.data_parallel, on the rows this process
    draws; every process saves its rows and the gradient it ends with."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    nb = load_definitions()
    cfg = nb.get_config("smoke")
    shape = dataclasses.replace(cfg.model, vocab_size=300)
    torch.manual_seed(0)
    model = nb.DiffusionLM(shape)
    run = nb.Run(out.parent, cfg, None, None, "cpu")
    net = run.data_parallel(model)
    x = nb.random_blocks(torch.arange(10, 300).repeat(20).numpy(), run.rows, shape.seq_len, run.data_rng)
    nb.diffusion_loss(net, x, 4, shape.diffusion_steps).backward()
    torch.save({"x": x, **{n: p.grad for n, p in model.named_parameters()}}, out.with_suffix(f".{rank}.pt"))
    leave_without_teardown()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--crash-on-second-checkpoint", action="store_true")
    parser.add_argument("--folder", default="run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    nb = load_definitions()
    cfg = dataclasses.replace(nb.get_config("smoke"), **CONFIG)
    stories = make_stories(200, seed=7)
    cache = args.workdir / "cache"  # with several processes, a one-process run must have filled it already
    tokenizer = nb.cached_tokenizer(stories, 300, cache)
    stream = nb.cached_token_stream(tokenizer, stories[:180], cache)
    val = nb.fixed_blocks(nb.cached_token_stream(tokenizer, stories[180:], cache), cfg.model.seq_len, 16)
    torch.manual_seed(cfg.seed)
    model = nb.DiffusionLM(dataclasses.replace(cfg.model, vocab_size=len(tokenizer)))
    if args.crash_on_second_checkpoint:
        torch.save = crash_during_second_save(torch.save)
    nb.train_run(model, cfg, stream, val, tokenizer, args.workdir / args.folder, "synthetic")
    if dist.is_initialized():  # every process's weights, to show that they stayed the same
        save_model(model, str(args.workdir / args.folder / f"rank-{dist.get_rank()}.safetensors"))
        sys.stdout.flush()
        leave_without_teardown()


if __name__ == "__main__":
    main()
