"""Training and sampling speed of the notebook's own code, for each RUN_MODE's shape. Prints two tables.

    python benchmarks/speed.py                                   # smoke and cpu; on a GPU quick and budget_100 too
    python benchmarks/speed.py --modes budget_100 --execution eager compiled --loop-updates 60

The update: the notebook's diffusion_loss, backward and optimizer step (Muon and AdamW) on random tokens already on
the device, after warm-up updates. FLOPs per trained token are counted from the shapes (a multiply-add is 2 FLOPs,
backward twice the forward):

    forward = 2 * (the blocks' matrix parameters) + 4 * n_layers * seq_len * d_model + 2 * d_model * vocab_size

and MFU divides the FLOP/s achieved by a matmul peak measured on the same device (bf16 8192^3 on a GPU, fp32 2048^3 on
the CPU). Sampling: generate() on a canvas of 128 new positions (fewer where seq_len is shorter) in 128 rounds, at
batch 1 (the time per story) and 64 (stories per second), eagerly and with each round compiled; every round reads the
whole canvas, so the time does not depend on where the stories' ends are drawn.

The whole run: the notebook's train() loop itself (data memory-mapped from disk, the progress bar, the loss kept on the
device, EMA), timed per update from AdamW's step hook (an update's last step) after its first fifth; one validation
(raw and EMA weights) and one training checkpoint timed on their own. The mode's run is projected as

    optimizer_steps * loop per update + (evals_per_run + 1) * validation + checkpoints_per_run * checkpoint
"""

import argparse
import contextlib
import copy
import dataclasses
import io
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import device_name, load_definitions, make_stories, print_row, print_table
from torch.optim.optimizer import register_optimizer_step_post_hook


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(function, device):
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def matmul_peak(device):
    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (2048, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    return 2 * n**3 * 10 / timed(lambda: [a @ b for _ in range(10)], device)


def train_flops_per_token(model):
    shape = model.config
    matrices = sum(p.numel() for n, p in model.blocks.named_parameters() if p.dim() == 2 and "modulation" not in n)
    attention, head = 4 * shape.n_layers * shape.seq_len * shape.d_model, 2 * shape.d_model * shape.vocab_size
    return 3 * (2 * matrices + attention + head)


def fresh_model(nb, cfg, device, execution):
    """(the mode's model, seeded, on the device and run as `execution` says; how it runs)."""
    torch.manual_seed(0)
    model = nb.DiffusionLM(cfg.model).to(device)
    return model, nb.compile_model(model, execution == "compiled", cfg.batch_size)


def time_update(nb, cfg, model, device, steps, warmup, mask_id):
    """Seconds per optimizer update: grad_accum micro-batches of random tokens, clipping, the optimizer's step."""
    optimizer = nb.make_optimizer(model, cfg, device)
    batches = torch.randint(10, cfg.model.vocab_size, (cfg.grad_accum, cfg.batch_size, cfg.model.seq_len),
                            device=device)

    def update():
        for x in batches:
            with nb.autocast(device):
                (nb.diffusion_loss(model, x, mask_id, cfg.model.diffusion_steps) / cfg.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        update()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return timed(lambda: [update() for _ in range(steps)], device) / steps, optimizer


def loop_seconds_per_update(nb, cfg, stream, val, tokenizer, device, execution, updates, folder):
    """Seconds per update of the notebook's train() loop, from the end of update updates // 5 to the end of the last."""
    short = dataclasses.replace(cfg, micro_steps=updates * cfg.grad_accum, evals_per_run=1, checkpoints_per_run=1)
    model, _ = fresh_model(nb, cfg, device, execution)
    ends = []

    def update_ended(optimizer, args, kwargs):
        if not isinstance(optimizer, torch.optim.AdamW):  # Muon steps first; AdamW's step ends every update
            return
        if len(ends) == updates - 1:
            synchronize(device)  # the last update: until the GPU has run every update queued before it
        ends.append(time.perf_counter())

    hook = register_optimizer_step_post_hook(update_ended)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            nb.train_run(model, short, stream, val, tokenizer, folder)
    finally:
        hook.remove()
    first = updates // 5
    return (ends[-1] - ends[first]) / (len(ends) - 1 - first)


def time_whole_run(nb, cfg, model, optimizer, tokenizer, device, execution, loop_updates, work):
    """(seconds per update of train(), per validation, per training checkpoint)."""
    tokens = np.random.default_rng(0).integers(10, len(tokenizer), size=2_000_000, dtype=np.uint16)  # its ids
    np.save(work / "tokens.npy", tokens)
    stream = np.load(work / "tokens.npy", mmap_mode="r")  # read from disk, as the notebook's token cache is
    val = nb.fixed_blocks(stream, cfg.model.seq_len, cfg.eval_batches * cfg.batch_size)
    per_update = loop_seconds_per_update(nb, cfg, stream, val, tokenizer, device, execution, loop_updates, work / "run")
    nb.evaluate(model, val, tokenizer, device)  # first-call costs: compiling the evaluation's shapes
    validation = 2 * timed(lambda: nb.evaluate(model, val, tokenizer, device), device)  # raw and EMA weights
    run = nb.Run(work / "checkpoints", cfg, tokenizer, val, device)
    run.model, run.ema, run.optimizer = model, copy.deepcopy(model), optimizer
    checkpoint = timed(lambda: nb.save_training_checkpoint(run, 1), device)
    return per_update, validation, checkpoint


def time_sampling(nb, model, tokenizer, cfg, device, batch, compiled):
    prompts = ["Once upon a time"] * batch
    gen_len = min(128, cfg.model.seq_len - len(tokenizer.encode(nb.format_story(prompts[0], finished=False))))
    sampling = nb.Sampling(temperature=cfg.temperature, top_k=cfg.top_k, gen_len=gen_len, compiled=compiled)
    for _ in range(2):  # warm-up: compiles, and (compiled rounds on a GPU) records then replays the graphs
        nb.generate(model, tokenizer, prompts, dataclasses.replace(sampling, steps=2), device)
    return timed(lambda: nb.generate(model, tokenizer, prompts, dataclasses.replace(sampling, steps=128), device),
                 device)


def measure(nb, mode, execution, tokenizer, device, peak, args, work):
    """One row of each table: the update and the sampler, and the whole run."""
    cfg = nb.get_config(mode)
    torch._dynamo.reset()  # each row compiles afresh
    model, execution = fresh_model(nb, cfg, device, execution)
    seconds, optimizer = time_update(nb, cfg, model, device, args.steps, args.warmup, tokenizer.mask_token_id)
    tokens, flops = cfg.grad_accum * cfg.batch_size * cfg.model.seq_len, train_flops_per_token(model)
    memory = (torch.cuda.max_memory_allocated() if device == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    sampling = [time_sampling(nb, model, tokenizer, cfg, device, batch, compiled)
                for compiled in (False, True) for batch in (1, 64)]
    step = (mode, execution, f"{nb.count_parameters(model) / 1e6:.2f}M", f"{tokens:,}", f"{seconds * 1e3:.0f}",
            f"{tokens / seconds:,.0f}", f"{tokens / seconds * flops / peak:.1%}",
            f"{memory / 2**30:.2f} GiB" + ("" if device == "cuda" else " (host RSS)"),
            f"{sampling[0]:.2f} / {sampling[2]:.2f}", f"{64 / sampling[1]:.1f} / {64 / sampling[3]:.1f}")
    print_row(step)
    (work / mode).mkdir()
    per_update, validation, checkpoint = time_whole_run(nb, cfg, model, optimizer, tokenizer, device, execution,
                                                        args.loop_updates, work / mode)
    evaluations, checkpoints = cfg.evals_per_run + 1, cfg.checkpoints_per_run
    run_seconds = cfg.optimizer_steps * per_update + evaluations * validation + checkpoints * checkpoint
    whole = (mode, execution, f"{per_update * 1e3:.0f}", f"{seconds / per_update:.0%}",
             f"{evaluations} × {validation:.2f}", f"{checkpoints} × {checkpoint:.2f}",
             f"{run_seconds / 60:,.1f} min" if run_seconds > 120 else f"{run_seconds:.1f} s",
             f"{cfg.micro_steps * cfg.batch_size * cfg.model.seq_len / run_seconds:,.0f}")
    print_row(whole)
    return step, whole


def main():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["quick", "budget_100"] if device == "cuda" else ["smoke", "cpu"])
    parser.add_argument("--execution", nargs="+", choices=["eager", "compiled"],
                        default=["eager", "compiled"] if device == "cuda" else ["eager"])
    parser.add_argument("--steps", type=int, default=20 if device == "cuda" else 3, help="timed optimizer updates")
    parser.add_argument("--warmup", type=int, default=25 if device == "cuda" else 1,
                        help="untimed updates first (after 5, a compiled budget_100 update still took 1.4 times its "
                             "steady time on an H200)")
    parser.add_argument("--loop-updates", type=int, default=60 if device == "cuda" else 10,
                        help="updates of the short train() run that times the loop (the first fifth are not timed)")
    args = parser.parse_args()

    nb = load_definitions()
    tokenizer = nb.train_tokenizer(make_stories(300), 400)  # for the prompts and the special tokens' ids
    peak = matmul_peak(device)
    print(f"{device_name(torch)}; measured matmul peak {peak / 1e12:.2f} TFLOP/s; torch {torch.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for mode in args.modes:
            for execution in args.execution:
                (Path(work) / execution).mkdir(exist_ok=True)
                rows.append(measure(nb, mode, execution, tokenizer, device, peak, args, Path(work) / execution))
    print_table(("mode", "model", "params", "tokens/update", "ms/update", "tokens/s", "MFU", "peak memory",
                 "s per story b=1, eager / compiled", "stories/s b=64, eager / compiled"), [r[0] for r in rows])
    print("\nThe whole run, projected from the notebook's train() loop:")
    print_table(("mode", "model", "loop ms/update", "bare update / loop", "validations × s", "checkpoints × s",
                 "whole run", "tokens/s over the run"), [r[1] for r in rows])


if __name__ == "__main__":
    main()
