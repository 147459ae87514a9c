"""Where a training update's and a sampling round's time goes, and what each candidate fix buys. Prints tables.

    python benchmarks/overhead.py                 # budget_100's shape on a GPU; smoke's on the CPU (a rehearsal)
    python benchmarks/overhead.py --mode quick --updates 20

1. Dispatch: microseconds per small eager operation (1,000 adds on a one-element tensor, back to back), and per
   operation replayed from a CUDA graph.
2. Training, every variant on the same micro-batches (tokens, steps and masks drawn from seeded generators):
     compiled          the notebook's loss (every position predicted, the hidden ones counted), each block and the
                       output layer with its cross-entropy compiled (compile_model): the notebook's default
     blocks            the same, the blocks compiled and the output layer eager (the notebook before it compiled the
                       output layer: the float32 log-softmax written out, forward and backward)
     eager             the same, not compiled
     whole             the whole model compiled as one graph (longer to compile: every layer anew)
     whole-graphs      the same, replayed from CUDA graphs (torch.compile's "reduce-overhead"): the host launches
                       two graphs per micro-batch, the forward and the backward, instead of each of their kernels
     blocks-before     what the notebook ran before: each block compiled, the output layer and the loss at the
                       hidden positions only (a shape that depends on the mask, and a host sync to learn it)
   each at the mode's micro-batch × accumulation and as one micro-batch of the same tokens (--accumulation). Columns:
   the first update's time (with compile_model's probe: the compilation; no graph comes from the compiler's cache,
   but a kernel compiled for an earlier variant may), time per update, tokens/s, MFU against a measured bf16 matmul
   peak, the operations the host dispatches per update (top-level profiler events: one per eager operation, one per
   compiled graph called), kernels per update and the share of the update's wall time in which the GPU runs one
   (torch.profiler), the loss on the first micro-batch, and the cosine between the variant's weight change and the
   first variant's after the first update (the same weights, the same batch: 1.0 is the same update) and after all of
   them (a graph that overwrote a gradient it should have added to would show here).
3. Sampling "Once upon a time", 128 new tokens in 128 rounds, at batch 1 and 64: the notebook's generate with the model
   eager, compiled, and with each whole round compiled (compiled=True; on a GPU replayed from a CUDA graph).
4. The notebook's own train() loop (data, loss meter, EMA, clipping, optimizer): host operations per update, the
   model compiled, for each notebook given (--notebooks old.ipynb new.ipynb compares two versions).
5. The sampler's own bookkeeping, with a stand-in network that returns zeros at once: operations dispatched and time
   per round at batch 1, for each notebook given (--notebooks old.ipynb new.ipynb compares two versions).
6. A training checkpoint (weights, EMA, optimizer state) by the notebook's own save_training_checkpoint: how long
   the loop stops for it, how much longer the next --updates eager updates take than without a write under way
   (the background write's share of the host), when it is on disk, and how fast a pure-Python loop runs while the
   write is under way, against the same loop beside an idle thread (how much of Python's lock the writer leaves to
   a loop that launches kernels), for each notebook given (--notebooks old.ipynb new.ipynb compares two versions).
"""

import os

os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")  # every variant compiles its graphs, as on a fresh machine
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import argparse
import collections
import contextlib
import dataclasses
import inspect
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_defs import NOTEBOOK, load_definitions  # noqa: E402
from synthetic_stories import make_stories  # noqa: E402
from throughput import (  # noqa: E402
    checkpoint_cost,
    checkpoint_run,
    fresh_model,
    matmul_peak,
    print_row,
    print_table,
    synchronize,
    time_sampling,
    timed,
    train_flops_per_token,
)


def seconds_per_operation(device, n=1_000):
    """(eager, replayed from a CUDA graph or None): wall seconds per tiny operation."""
    x = torch.zeros(1, device=device)

    def chain():
        y = x
        for _ in range(n):
            y = y + 1
        return y

    chain()
    eager = timed(chain, device) / n
    if device != "cuda":
        return eager, None
    try:
        graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            chain()
            with torch.cuda.graph(graph, stream=stream):
                chain()
        torch.cuda.current_stream().wait_stream(stream)
        graph.replay()
        return eager, timed(graph.replay, device) / n
    except RuntimeError as error:  # the rest of the run matters more than this one number
        print(f"no CUDA graph here ({error})")
        return eager, None


def micro_batches(nb, shape, batch_size, count, mask_id, device):
    """count micro-batches (x, t, noisy, hidden), the same for every variant and every call."""
    batches = []
    for i in range(count):
        generator = torch.Generator(device).manual_seed(i)
        x = torch.randint(10, shape.vocab_size, (batch_size, shape.seq_len), device=device, generator=generator)
        t = torch.randint(1, shape.diffusion_steps + 1, (batch_size,), device=device, generator=generator)
        batches.append((x, t, *nb.corrupt(x, t, shape.diffusion_steps, mask_id, generator)))
    return batches


def notebook_loss(nb):
    def loss(model, x, t, noisy, hidden):  # training_loss's last line, on steps and masks drawn beforehand
        return torch.where(hidden, nb.token_losses(model, noisy, t, x), 0.0).sum() / hidden.sum().clamp(min=1)

    return loss


def hidden_only_loss(model, x, t, noisy, hidden):
    """The loss as the notebook computed it before: the output layer and the cross-entropy at hidden positions only."""
    logits = model.head(model.hidden_states(noisy, t)[hidden])
    return F.cross_entropy(logits.float(), x[hidden], reduction="sum") / hidden.sum().clamp(min=1)


def compiled_model(nb, model, batch_size):
    nb.compile_model(model, True, batch_size)
    return notebook_loss(nb)


def whole_model(nb, model, batch_size):
    model.compile(fullgraph=True)
    return notebook_loss(nb)


def whole_model_graphs(nb, model, batch_size):
    model.compile(fullgraph=True, mode="reduce-overhead")
    return notebook_loss(nb)


def blocks_only(nb, model, batch_size):
    for block in model.blocks:
        block.compile(fullgraph=True)
    return notebook_loss(nb)


def blocks_before(nb, model, batch_size):
    blocks_only(nb, model, batch_size)
    return hidden_only_loss


TRAINING_VARIANTS = {  # name -> (nb, model, micro-batch size) -> the loss function to train with
    "compiled": compiled_model,
    "blocks": blocks_only,
    "eager": lambda nb, model, batch_size: notebook_loss(nb),
    "whole": whole_model,
    "whole-graphs": whole_model_graphs,
    "blocks-before": blocks_before,
}


def train_variant(nb, cfg, name, batch_size, grad_accum, batches, device, updates, warmup):
    torch._dynamo.reset()  # each variant compiles afresh: no earlier variant's code, no recompilation limit reached
    torch.manual_seed(0)
    model = nb.DiffusionLM(cfg.model).to(device)
    start = time.perf_counter()
    loss_of = TRAINING_VARIANTS[name](nb, model, batch_size)
    optimizer = nb.make_optimizer(model, cfg, device)
    groups = [batches[i : i + grad_accum] for i in range(0, len(batches), grad_accum)]

    def update(group):
        for x, t, noisy, hidden in group:
            with nb.autocast(device):
                loss = loss_of(model, x, t, noisy, hidden) / grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def weights():
        return torch.cat([p.detach().flatten().float() for p in model.parameters()])

    before = weights()
    first_loss = update(groups[0]).item() * grad_accum
    compiling = time.perf_counter() - start  # compile_model's probe and the first update: the compilation
    first_step = weights() - before
    for i in range(warmup):
        update(groups[(1 + i) % len(groups)])
    seconds = timed(lambda: [update(group) for group in groups[:updates]], device) / updates
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])) as prof:
        for group in groups[:3]:
            update(group)
        synchronize(device)
    all_steps = weights() - before
    operations = len([e for e in prof.events() if e.cpu_parent is None and e.device_type == DeviceType.CPU]) / 3
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in kernels) * 1e-6 / (3 * seconds) if kernels else None
    if name == "compiled":  # where the notebook's time goes: the operations costing the most host and device time
        for key in ["self_cpu_time_total"] + (["self_device_time_total"] if device == "cuda" else []):
            print(f"\n{name}, {batch_size} × {grad_accum}, 3 updates, by {key}:")
            try:
                print(prof.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=60))
            except Exception as error:  # a profiler that names its columns otherwise: keep the timings
                print(f"no table ({type(error).__name__}: {error})")
    return model, seconds, compiling, first_loss, (first_step, all_steps), operations, len(kernels) / 3, busy


SAMPLING_VARIANTS = {  # name -> (compile_model's options, generate's `compiled`)
    "eager": ({"enabled": False}, False),
    "compiled": ({"enabled": True}, False),
    "compiled rounds (CUDA graphs on a GPU)": ({"enabled": False}, True),
}


class NoNetwork(torch.nn.Module):
    """Zero logits at once: what a sampling round costs besides the network."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def forward(self, idx, t, at=None):  # `at`: notebooks whose sampler asked for the hidden positions' logits only
        logits = torch.zeros(*idx.shape, self.config.vocab_size, device=idx.device)
        return logits if at is None else logits[at]


def sampler_bookkeeping(nb, tokenizer, cfg, device, steps=128, **options):
    """(operations dispatched per round, seconds per round) of generate at batch 1, the network left out."""
    stand_in = NoNetwork(dataclasses.replace(cfg.model, vocab_size=len(tokenizer)))
    rounds = []  # a story can end early (uniform guesses propose [EOS] too): count the rounds run

    def sample():
        rounds.clear()
        nb.generate(stand_in, tokenizer, ["Once upon a time"], steps, device=device,
                    generator=torch.Generator(device).manual_seed(0), on_step=rounds.append, **options)

    sample()
    seconds = timed(sample, device)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        sample()
    return len([e for e in prof.events() if e.cpu_parent is None]) / len(rounds), seconds / len(rounds)


def loop_operations(nb, cfg, tokenizer, device, updates=(2, 6)):
    """{operation: how many the host dispatches per update} in the notebook's own train() loop, the model compiled:
    the difference between two runs of different lengths, so that validations and checkpoints cancel."""
    stream = np.random.default_rng(0).integers(10, cfg.model.vocab_size, 200_000).astype(np.uint16)
    val = nb.fixed_blocks(stream, cfg.model.seq_len, cfg.batch_size)
    compile_model = getattr(nb, "compile_model", None) or nb.compile_blocks  # compile_blocks: earlier notebooks
    counts = []
    for n in updates:
        short = dataclasses.replace(cfg, micro_steps=n * cfg.grad_accum, warmup_steps=1, evals_per_run=1,
                                    checkpoints_per_run=1, log_every=10**9)
        torch.manual_seed(0)
        model = nb.DiffusionLM(cfg.model).to(device)
        compile_model(model, True, cfg.batch_size)
        with tempfile.TemporaryDirectory() as work, contextlib.redirect_stdout(io.StringIO()):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                nb.train(model, short, stream, val, tokenizer, device, work)
        counts.append(collections.Counter(e.name for e in prof.events() if e.cpu_parent is None))
    return {name: (counts[1][name] - counts[0][name]) / (updates[1] - updates[0]) for name in counts[1]}


def compare_loops(notebooks, cfg, tokenizer, device):
    rows = []
    for path in notebooks:
        per_update = loop_operations(load_definitions(path), cfg, tokenizer, device)
        most = sorted(per_update.items(), key=lambda item: -item[1])[:3]
        rows.append((path.name, f"{sum(per_update.values()):.0f}", "; ".join(f"{n:.0f} {name}" for name, n in most)))
        print_row(rows[-1])
    print(f"\nThe notebook's train() loop at {cfg.mode}'s shape, the model compiled, host operations per update:")
    print_table(("notebook", "operations per update", "the most frequent"), rows)


def python_speed_while_writing(nb, cfg, tokenizer, model, optimizer, device):
    """How fast a pure-Python loop runs while a training checkpoint is written in the background, as a share of its
    speed beside an idle thread; None for a notebook that wrote in the loop."""
    def loops_per_second(until):
        count, start = 0, time.perf_counter()
        while not until():
            count += 1
        return count / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as work:
        run = checkpoint_run(nb, cfg, tokenizer, model, optimizer, device, work)
        if not hasattr(run, "writer"):
            return None
        resting = run.writer.thread.submit(time.sleep, 1)  # the same check, on a thread that takes nothing from it
        alone = loops_per_second(resting.done)
        nb.save_training_checkpoint(run, 1)
        writing = run.writer.queued[-1][1]
        during = loops_per_second(writing.done)
        run.writer.wait()
    return during / alone


def compare_checkpoints(notebooks, cfg, tokenizer, device, updates):
    rows = []
    for path in notebooks:
        nb = load_definitions(path)
        model, _ = fresh_model(nb, cfg, device, enabled=False)
        optimizer = nb.make_optimizer(model, cfg, device)
        stall, slower, on_disk, noise = checkpoint_cost(nb, cfg, tokenizer, model, optimizer, device, updates)
        python = python_speed_while_writing(nb, cfg, tokenizer, model, optimizer, device)
        rows.append((path.name, f"{stall:.2f}", f"{slower:.2f} (± {noise:.2f})", f"{stall + slower:.2f}",
                     f"{on_disk:.2f}", "n/a" if python is None else f"{python:.0%}"))
        print_row(rows[-1])
    print(f"\nA training checkpoint at {cfg.mode}'s shape (micro-batch {cfg.batch_size}), in seconds:")
    print_table(("notebook", "the loop stops", f"{updates} updates after it slow down", "the loop loses",
                 "on disk after", "Python's speed while it is written"), rows)


PARTS = ("training", "loop", "sampling", "bookkeeping", "checkpoints")


def main():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="budget_100" if device == "cuda" else "smoke")
    parser.add_argument("--updates", type=int, default=20 if device == "cuda" else 3, help="timed optimizer updates")
    parser.add_argument("--warmup", type=int, default=5 if device == "cuda" else 1)
    parser.add_argument("--batch-size", type=int, help="micro-batch size instead of the mode's (operation counts on a "
                        "CPU at a large mode's shape)")
    parser.add_argument("--variants", nargs="+", choices=list(TRAINING_VARIANTS), default=list(TRAINING_VARIANTS))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    parser.add_argument("--accumulation", choices=["mode", "one", "both"], default="both",
                        help="train at the mode's micro-batch × accumulation, as one micro-batch of the same tokens, "
                        "or both")
    parser.add_argument("--notebooks", nargs="+", type=Path, default=[NOTEBOOK],
                        help="for the loop's and the sampler's operation counts and the checkpoints' cost "
                        "(old.ipynb new.ipynb compares them)")
    args = parser.parse_args()

    nb = load_definitions()
    tokenizer = nb.train_tokenizer(make_stories(300), 400)  # only for prompts and special-token ids
    cfg = nb.get_config(args.mode, {"batch_size": args.batch_size} if args.batch_size else None)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    eager, replayed = seconds_per_operation(device)
    peak = matmul_peak(device)
    print(f"device: {name}; torch {torch.__version__}; matmul peak {peak / 1e12:.1f} TFLOP/s; {eager * 1e6:.1f} µs "
          f"per eager operation" + (f", {replayed * 1e6:.2f} µs replayed from a CUDA graph" if replayed else ""))
    parts = {  # run in the order asked: on a device with a deadline, the most important first
        "training": lambda: compare_training(nb, cfg, tokenizer, device, peak, args),
        "loop": lambda: compare_loops(args.notebooks, cfg, tokenizer, device),
        "sampling": lambda: compare_sampling(nb, cfg, tokenizer, device),
        "bookkeeping": lambda: compare_bookkeeping(args.notebooks, cfg, tokenizer, device),
        "checkpoints": lambda: compare_checkpoints(args.notebooks, cfg, tokenizer, device, args.updates),
    }
    for part in args.parts:
        parts[part]()


def compare_training(nb, cfg, tokenizer, device, peak, args):
    tokens_per_update = cfg.batch_size * cfg.grad_accum
    shapes = {"mode": {(cfg.batch_size, cfg.grad_accum)}, "one": {(tokens_per_update, 1)}}
    shapes = shapes.get(args.accumulation, shapes["mode"] | shapes["one"])
    rows, reference_steps = [], {}
    for (batch_size, grad_accum), variant in [(s, v) for s in sorted(shapes, reverse=True) for v in args.variants]:
        batches = micro_batches(nb, cfg.model, batch_size, grad_accum * (args.updates + 1), tokenizer.mask_token_id,
                                device)
        try:
            model, seconds, compiling, first_loss, steps, operations, kernels, busy = train_variant(
                nb, cfg, variant, batch_size, grad_accum, batches, device, args.updates, args.warmup)
        except Exception as error:  # a variant that fails on this device is a finding, not the end of the run
            rows.append((variant, f"{batch_size} × {grad_accum}", f"failed: {type(error).__name__}: {error}"[:300],
                         *[""] * 9))
            print_row(rows[-1])
            continue
        reference = reference_steps.setdefault((batch_size, grad_accum), steps)
        first, every = (F.cosine_similarity(a.double(), b.double(), dim=0).item()  # fp32 sums drift at 46M
                        for a, b in zip(steps, reference, strict=True))
        tokens = tokens_per_update * cfg.model.seq_len
        rows.append((variant, f"{batch_size} × {grad_accum}", f"{compiling:.1f}", f"{seconds * 1e3:.1f}",
                     f"{tokens / seconds:,.0f}",
                     f"{tokens / seconds * train_flops_per_token(model) / peak:.1%}", f"{operations:.0f}",
                     f"{kernels:.0f}", f"{busy:.0%}" if busy is not None else "n/a", f"{first_loss:.4f}",
                     f"{first:.4f}", f"{every:.4f}"))
        print_row(rows[-1])
    print(f"\nTraining at {args.mode}'s shape, {tokens_per_update * cfg.model.seq_len:,} tokens per update:")
    print_table(("variant", "micro-batch × accumulation", "first update (s)", "ms/update", "tokens/s", "MFU",
                 "host operations/update", "kernels/update", "GPU busy", "first loss",
                 "first update vs the first variant's (cosine)", "all updates vs the first variant's"), rows)


def compare_sampling(nb, cfg, tokenizer, device):
    sampling = []
    for variant, (options, compiled) in SAMPLING_VARIANTS.items():
        torch._dynamo.reset()
        try:
            model, _ = fresh_model(nb, cfg, device, **options)  # untrained: it seldom ends a story, every round runs
            one = time_sampling(nb, model, tokenizer, cfg, device, 1, compiled=compiled)
            many = time_sampling(nb, model, tokenizer, cfg, device, 64, compiled=compiled)
            sampling.append((variant, f"{one:.3f}", f"{64 / many:.1f}"))
        except Exception as error:
            sampling.append((variant, f"failed: {type(error).__name__}: {error}"[:300], ""))
        print_row(sampling[-1])
    print(f"\nSampling at {cfg.mode}'s shape, 128 rounds:")
    print_table(("variant", "seconds for one story", "stories/s at batch 64"), sampling)


def compare_bookkeeping(notebooks, cfg, tokenizer, device):
    bookkeeping = []
    for path in notebooks:
        nb = load_definitions(path)
        rounds = ["eager"] + (["compiled"] if "compiled" in inspect.signature(nb.generate).parameters else [])
        for kind in rounds:
            options = {"compiled": True} if kind == "compiled" else {}  # older notebooks have no such option
            operations, seconds = sampler_bookkeeping(nb, tokenizer, cfg, device, **options)
            bookkeeping.append((path.name, kind, f"{operations:.0f}", f"{seconds * 1e3:.2f}"))
            print_row(bookkeeping[-1])
    print("\nThe sampler's bookkeeping per round at batch 1, the network left out:")
    print_table(("notebook", "rounds", "operations per round", "ms per round"), bookkeeping)


if __name__ == "__main__":
    main()
