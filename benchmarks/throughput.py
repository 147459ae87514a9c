"""Training and sampling speed of the notebook's own code, for each RUN_MODE's shape. Prints one table.

    python benchmarks/throughput.py                      # smoke and quick shapes; budget_100 too on a GPU
    python benchmarks/throughput.py --modes budget_100 --steps 3 --execution eager compiled
    python benchmarks/throughput.py --modes budget_100 --notebooks old.ipynb new.ipynb    # a row each, before and after

Training: the notebook's `micro_batch_backward` + AdamW update on random tokens already on the device (no data loading),
`grad_accum` micro-batches per update, after warm-up updates. FLOPs per trained token are counted from the shapes:
a forward pass costs 2 FLOPs per multiply-add; backward twice the forward.

    forward = 2 * (blocks' matrix parameters)                 # QKV, output projection, MLP (not adaLN's)
            + 4 * n_layers * seq_len * d_model                # attention scores and weighted sum
            + 2 * d_model * vocab                             # output layer, at every position
    train   = 3 * forward

MFU divides achieved FLOP/s by a measured matmul peak on the same device (bf16 8192^3 on a GPU, fp32 2048^3 on the
CPU), not by a datasheet figure. Sampling: `generate` filling 128 new tokens (fewer where seq_len is shorter) in 128
rounds, batch 1 (latency) and batch 64 (throughput, stories/s); the untrained model seldom ends a story, so every
round runs.

Whole run: the notebook's own `train()` loop, on tokens memory-mapped from disk like its token cache, with its
logging, non-finite checks and EMA. Its cost per update is read off the optimizer's step hook in one short run: from
the end of an update after the first fifth (first-call costs) to the end of the last, the GPU drained, so that the
validations and the checkpoint at the run's end, whose time varies with the disk, stay out of it. One validation
(raw and EMA weights, `eval_batches` batches each) is timed on its own after one untimed, and one
training checkpoint (weights, EMA, optimizer state) by what the loop loses to it: the time it stops for the
checkpoint, plus how much longer the updates that follow take while it is written in the background than the same
updates timed before and after it (their difference, the timing's noise, is printed beside it). The mode's whole run
is then projected as

    optimizer_steps * loop per update + (evals_per_run + 1) * validation + checkpoints_per_run * checkpoint

(the saves of the best weights, at most one per validation, are not counted).
"""

import argparse
import contextlib
import copy
import dataclasses
import io
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from notebook_defs import NOTEBOOK, load_definitions  # noqa: E402
from synthetic_stories import make_stories  # noqa: E402


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device):
    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (2048, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    start, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ b
    synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def train_flops_per_token(model):
    # the adaLN modulation runs once per block of tokens, not per token: not counted
    matrices = sum(
        p.numel() for name, p in model.blocks.named_parameters() if p.dim() == 2 and "modulation" not in name
    )
    shape = model.config
    attention = 4 * shape.n_layers * shape.seq_len * shape.d_model
    head = 2 * shape.d_model * shape.vocab_size
    return 3 * (2 * matrices + attention + head)


EXECUTIONS = {  # how the model runs: compile_model's options
    "eager": {"enabled": False},
    "compiled": {"enabled": True},
}


def random_micro_batches(cfg, device):
    """One update's micro-batches of random tokens, already on the device: (grad_accum, batch_size, seq_len)."""
    shape = cfg.model
    return torch.randint(10, shape.vocab_size, (cfg.grad_accum, cfg.batch_size, shape.seq_len), device=device)


def training_update(nb, cfg, model, optimizer, batches, mask_id):
    """The notebook's update without its data loading: accumulate the micro-batches, clip, step."""
    for x in batches:
        nb.micro_batch_backward(model, x, cfg.model, mask_id, slice(None), cfg.grad_accum)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def fresh_model(nb, cfg, device, **options):
    """(the mode's model, seeded and on the device, run as compile_model's options say; how it runs)."""
    torch.manual_seed(0)
    model = nb.DiffusionLM(cfg.model).to(device)
    return model, nb.compile_model(model, batch_size=cfg.batch_size, **options)


def time_training(nb, cfg, tokenizer, device, steps, warmup, execution):
    model, execution = fresh_model(nb, cfg, device, **EXECUTIONS[execution])
    optimizer = nb.make_optimizer(model, cfg, device)
    batches = random_micro_batches(cfg, device)

    def update():
        training_update(nb, cfg, model, optimizer, batches, tokenizer.mask_token_id)

    for _ in range(warmup):
        update()
    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        update()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    return model, optimizer, seconds, execution


def timed(function, device):
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def checkpoint_run(nb, cfg, tokenizer, model, optimizer, device, folder):
    """A notebook Run around model and optimizer that saves its training checkpoints in folder."""
    ema = copy.deepcopy(model).requires_grad_(False)
    return nb.Run(Path(folder), cfg, tokenizer, "benchmark", model, optimizer, ema, torch.Generator(),
                  nb.LossMeter(device))


def checkpoint_cost(nb, cfg, tokenizer, model, optimizer, device, updates):
    """(seconds save_training_checkpoint holds the loop, seconds the `updates` updates right after it take beyond the
    same updates with no write under way, seconds until the checkpoint is on disk, the timing's noise). The updates with
    no write are timed before and after, and their mean is the baseline; the two differ by the noise."""
    batches = random_micro_batches(cfg, device)

    def train_updates():
        for _ in range(updates):
            training_update(nb, cfg, model, optimizer, batches, tokenizer.mask_token_id)

    train_updates()  # warm-up, and the optimizer's state
    before = timed(train_updates, device)
    with tempfile.TemporaryDirectory() as work:
        run = checkpoint_run(nb, cfg, tokenizer, model, optimizer, device, work)
        began = time.perf_counter()
        stall = timed(lambda: nb.save_training_checkpoint(run, 1), device)
        during = timed(train_updates, device)
        in_background = hasattr(run, "writer")  # earlier notebooks wrote in the loop: on disk when the stop ended
        if in_background:
            run.writer.wait()
        on_disk = time.perf_counter() - began if in_background else stall
    after = timed(train_updates, device)
    return stall, during - (before + after) / 2, on_disk, abs(after - before)


def loop_seconds_per_update(nb, cfg, stream, val, tokenizer, device, execution, updates, run_dir):
    """Seconds per update of the notebook's train() loop, from the end of update updates // 5 to the end of the last."""
    short = dataclasses.replace(cfg, micro_steps=updates * cfg.grad_accum, evals_per_run=1, checkpoints_per_run=1)
    model, _ = fresh_model(nb, cfg, device, **EXECUTIONS[execution])
    ends = []

    def update_ended(optimizer, args, kwargs):
        if len(ends) == updates - 1:
            synchronize(device)  # the last update: until the GPU has run every update queued before it
        ends.append(time.perf_counter())

    hook = register_optimizer_step_post_hook(update_ended)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the loop's validation reports
            nb.train(model, short, stream, val[: cfg.batch_size], tokenizer, device, run_dir)
    finally:
        hook.remove()
    first = updates // 5
    return (ends[-1] - ends[first]) / (len(ends) - 1 - first)


def time_whole_run(nb, cfg, model, optimizer, tokenizer, device, execution, loop_updates, work):
    """(seconds per update of train(), seconds per validation, seconds per training checkpoint, that figure's noise)."""
    work.mkdir(parents=True)
    tokens = np.random.default_rng(0).integers(10, cfg.model.vocab_size, size=4_000_000, dtype=np.uint16)
    np.save(work / "tokens.npy", tokens)
    stream = np.load(work / "tokens.npy", mmap_mode="r")  # read from disk, as the notebook's token cache is
    val = nb.fixed_blocks(stream, cfg.model.seq_len, cfg.eval_batches * cfg.batch_size)
    per_update = loop_seconds_per_update(nb, cfg, stream, val, tokenizer, device, execution, loop_updates, work / "run")
    nb.evaluate(model, val, tokenizer, device)  # first-call costs: compiling the evaluation's shapes
    validation = 2 * timed(lambda: nb.evaluate(model, val, tokenizer, device), device)  # raw and EMA weights
    enough = min(100, math.ceil(3 / per_update))  # updates that outlast a write of a few seconds
    stall, slower, _, noise = checkpoint_cost(nb, cfg, tokenizer, model, optimizer, device, enough)
    return per_update, validation, stall + slower, noise


def time_sampling(nb, model, tokenizer, cfg, device, batch, **options):
    prompts = ["Once upon a time"] * batch
    gen_len = min(128, cfg.model.seq_len - len(tokenizer.encode(nb.format_story(prompts[0], finished=False))))

    def sample(steps):
        return nb.generate(model, tokenizer, prompts, steps, cfg.temperature, cfg.top_k, device, gen_len=gen_len,
                           **options)

    for _ in range(2):  # warm-up: compiles, and (compiled rounds on a GPU) records then replays the graphs
        sample(2)
    return timed(lambda: sample(128), device)


def main():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["smoke", "quick"] + (["budget_100"] if device == "cuda" else []))
    parser.add_argument("--steps", type=int, default=20 if device == "cuda" else 3, help="timed optimizer updates")
    parser.add_argument("--warmup", type=int, default=5 if device == "cuda" else 1)
    parser.add_argument(
        "--execution",
        nargs="+",
        choices=list(EXECUTIONS),
        default=list(EXECUTIONS) if device == "cuda" else ["eager"],
        help="how the model runs, a row each: eagerly or compiled",
    )
    parser.add_argument(
        "--loop-updates",
        type=int,
        default=60 if device == "cuda" else 10,
        help="updates of the short train() run that times the loop (the first fifth are not timed)",
    )
    parser.add_argument("--notebooks", nargs="+", type=Path, default=[NOTEBOOK],
                        help="a row each, each with its own modes' settings (old.ipynb new.ipynb compares them)")
    args = parser.parse_args()

    notebooks = {path: load_definitions(path) for path in args.notebooks}
    tokenizer = notebooks[args.notebooks[-1]].train_tokenizer(make_stories(300), 400)  # for prompts, special ids
    peak = matmul_peak(device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; measured matmul peak {peak / 1e12:.1f} TFLOP/s; torch {torch.__version__}")
    header = (
        "notebook",
        "mode",
        "model",
        "params",
        "tokens/update",
        "ms/update",
        "tokens/s",
        "GFLOP/token",
        "MFU",
        "peak memory",
        "sample b=1 (s)",
        "stories/s b=64",
    )
    rows, run_rows = [], []
    work = Path(tempfile.mkdtemp(prefix="throughput-"))
    for path, mode, asked in [(p, m, a) for m in args.modes for a in args.execution for p in args.notebooks]:
        nb = notebooks[path]
        cfg = nb.get_config(mode)
        torch._dynamo.reset()  # each row compiles afresh
        model, optimizer, seconds, execution = time_training(nb, cfg, tokenizer, device, args.steps, args.warmup, asked)
        tokens = cfg.grad_accum * cfg.batch_size * cfg.model.seq_len
        flops = train_flops_per_token(model)
        memory = (
            torch.cuda.max_memory_allocated()
            if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        )
        latency = time_sampling(nb, model, tokenizer, cfg, device, 1)
        throughput = 64 / time_sampling(nb, model, tokenizer, cfg, device, 64)
        rows.append(
            (
                path.name,
                mode,
                execution,
                f"{nb.count_parameters(model) / 1e6:.2f}M",
                f"{tokens:,}",
                f"{seconds * 1e3:.0f}",
                f"{tokens / seconds:,.0f}",
                f"{flops / 1e9:.3f}",
                f"{tokens / seconds * flops / peak:.1%}",
                f"{memory / 2**30:.2f} GiB" + ("" if device == "cuda" else " (host RSS)"),
                f"{latency:.2f}",
                f"{throughput:.1f}",
            )
        )
        print_row(rows[-1])
        per_update, validation, checkpoint, noise = time_whole_run(
            nb, cfg, model, optimizer, tokenizer, device, asked, args.loop_updates, work / f"{path.stem}-{mode}-{asked}"
        )
        evaluations, checkpoints = cfg.evals_per_run + 1, cfg.checkpoints_per_run
        run_seconds = cfg.optimizer_steps * per_update + evaluations * validation + checkpoints * checkpoint
        run_rows.append(
            (
                path.name,
                mode,
                execution,
                f"{per_update * 1e3:.0f}",
                f"{seconds / per_update:.0%}",
                f"{evaluations} × {validation:.2f}",
                f"{checkpoints} × {checkpoint:.2f} (± {noise:.2f})",
                f"{run_seconds / 60:,.1f} min" if run_seconds > 120 else f"{run_seconds:.1f} s",
                f"{cfg.micro_steps * cfg.batch_size * cfg.model.seq_len / run_seconds:,.0f}",
            )
        )
        print_row(run_rows[-1])
        del model, optimizer
    shutil.rmtree(work)
    print_table(header, rows)
    print("\nWhole run, projected from the notebook's train() loop:")
    run_header = (
        "notebook",
        "mode",
        "model",
        "loop ms/update",
        "bare step / loop",
        "validations × s",
        "checkpoints × s",
        "whole run",
        "tokens/s over the run",
    )
    print_table(run_header, run_rows)


def print_row(row):
    print("| " + " | ".join(row) + " |", flush=True)  # each row as it comes: a cut-off run keeps its rows


def print_table(header, rows):
    print_row(header)
    print("|" + "---|" * len(header))
    for row in rows:
        print_row(row)


if __name__ == "__main__":
    main()
