"""Recipe ablations: train each variant of the notebook's config on the same data and tokens, print one table.

    python benchmarks/ablate.py                       # small scale (CPU-sized), ../shared/data/tinystories
    python benchmarks/ablate.py --scale quick         # the notebook's quick mode, for a GPU
    python benchmarks/ablate.py --variants reference fixed rope
    python benchmarks/ablate.py --on rope --variants SwiGLU "no biases"   # each on top of rope
    python benchmarks/ablate.py --variants fixed defaults --micro-steps 4800 --samples 3   # longer, with stories

Every variant is one set of Config values, so anything here can be reproduced in the notebook by setting the same
values. Validation uses held-out stories (the V2-GPT4 validation file) and the notebook's deterministic `evaluate`:
the reference's pooled masked-token loss and the negative ELBO with its perplexity bound.
"""

import argparse
import dataclasses
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from notebook_defs import load_definitions  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinystories"
REFERENCE_CHOICES = {  # the reference's architecture and objective, whatever the notebook's defaults
    "position": "learned",
    "time_conditioning": "add",
    "mlp": "gelu",
    "bias": True,
    "qk_norm": False,
    "loss_weighting": "masked_mean",
    "t_sampling": "uniform",
    "dropout": 0.1,
    "decay_embeddings": True,
}
VARIANTS = {  # Config values on top of "fixed": the reference's choices with only its init and schedule fixed
    "reference": {"embedding_std": 1.0, "schedule_length": "micro_steps"},  # all of the reference
    "fixed": {},
    "fixed, another seed": {"seed": 7},  # how much of a difference is just the seed
    "defaults": None,  # the notebook's own defaults, read from its Config
    "rope": {"position": "rope"},
    "adaLN time": {"time_conditioning": "adaln"},
    "no time input": {"time_conditioning": "none"},
    "SwiGLU": {"mlp": "swiglu"},
    "no biases": {"bias": False},
    "QK-norm": {"qk_norm": True},
    "ELBO weighting": {"loss_weighting": "elbo"},
    "stratified t": {"t_sampling": "stratified"},
    "lr x3": {"lr_scale": 3.0},
    "lr /3": {"lr_scale": 1 / 3},
    "no dropout": {"dropout": 0.0},
    "dropout 0.1": {"dropout": 0.1},  # the reference's, for --on defaults
    "betas 0.9/0.99": {"adam_betas": (0.9, 0.99)},
    "no weight decay": {"weight_decay": 0.0},
    "no decay on embeddings": {"decay_embeddings": False},
    "another seed": {"seed": 7},
    "a third of the data": {"n_train_stories": 3_300},  # with --on: the same tokens, seen about 3 times
}
SMALL = {  # a shape two CPU cores train in a few minutes
    "n_train_stories": 10_000,
    "n_val_stories": 300,
    "n_tokenizer_stories": 5_000,
    "vocab_size": 2048,
    "seq_len": 128,
    "d_model": 128,
    "n_layers": 4,
    "n_heads": 4,
    "d_ff": 512,
    "diffusion_steps": 64,
    "gen_len": 96,  # the prompt and the story fit in seq_len
    "micro_steps": 1_200,
    "batch_size": 16,
    "grad_accum": 2,
    "lr": 3e-3,  # at 1e-3 whether a run leaves the unigram plateau within its 600 updates depends on the seed
    "warmup_steps": 20,
    "eval_batches": 8,
    "evals_per_run": 4,
    "log_every": 50,
    "checkpoints_per_run": 1,
    "train_baseline": False,
}


def variant_values(nb, name):
    if VARIANTS[name] is None:  # "defaults"
        return {f.name: f.default for f in dataclasses.fields(nb.Config) if f.name in REFERENCE_CHOICES}
    return VARIANTS[name]


def variant_config(nb, scale, overrides):
    base = nb.get_config("quick")
    if scale == "small":
        base = dataclasses.replace(base, **SMALL)
    overrides = {**REFERENCE_CHOICES, **overrides}
    lr_scale = overrides.pop("lr_scale", 1.0)
    return dataclasses.replace(base, mode=f"ablate-{scale}", lr=base.lr * lr_scale, **overrides)


def sample_stories(nb, model, tokenizer, cfg, device, n):
    """n continuations of "Once upon a time", as the notebook samples them, from a fixed seed."""
    generator = torch.Generator(device).manual_seed(0)
    tokens, _ = nb.generate(
        model,
        tokenizer,
        ["Once upon a time"] * n,
        cfg.gen_len,
        cfg.diffusion_steps,
        cfg.temperature,
        cfg.top_k,
        device,
        generator,
    )
    return [nb.decode_story(tokenizer, row).replace("\n", " ") for row in tokens]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small", "quick"], default="small")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--on", nargs="+", choices=list(VARIANTS), default=[], help="variants under every variant")
    parser.add_argument("--micro-steps", type=int, help="train longer or shorter than the scale's default")
    parser.add_argument("--samples", type=int, default=0, help="stories to sample from each variant's final weights")
    default_data = ",".join(str(p) for p in sorted(SHARED.glob("*.txt")) if "_lower_" not in p.name)
    parser.add_argument("--data", default=default_data, help="DATA_PATH: local TinyStories, validation file included")
    args = parser.parse_args()
    if not args.data:
        parser.error(f"no data: pass --data (no {SHARED} here)")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    nb = load_definitions()
    underneath = {k: v for name in args.on for k, v in variant_values(nb, name).items()}
    if args.micro_steps:
        underneath["micro_steps"] = args.micro_steps
    base = variant_config(nb, args.scale, underneath)
    train_stories, val_stories = nb.load_stories(args.data, base.n_train_stories, base.n_val_stories)
    work = Path(tempfile.mkdtemp(prefix="ablate-"))
    tokenizer = nb.cached_tokenizer(train_stories[: base.n_tokenizer_stories], base.vocab_size, work / "cache")
    stream = nb.cached_token_stream(tokenizer, train_stories, work / "cache")
    val = nb.fixed_blocks(
        nb.cached_token_stream(tokenizer, val_stories, work / "cache"),
        base.seq_len,
        base.eval_batches * base.batch_size,
    )
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"{name}; {args.scale} scale; {base.micro_steps * base.batch_size * base.seq_len:,} training tokens per "
        f"variant, from {len(stream):,} tokens of data; {len(val)} validation blocks of {base.seq_len}"
    )

    header = (
        "variant",
        "parameters",
        "initial loss",
        "val loss (reference metric)",
        "NELBO nats/token",
        "perplexity bound",
        "tokens/s (incl. eval)",
    )
    rows, samples = [], {}
    for label in args.variants:
        cfg = variant_config(nb, args.scale, {**underneath, **variant_values(nb, label)})
        label = " + ".join([*args.on, label] if args.on and label not in args.on else [label])
        torch.manual_seed(cfg.seed)
        model = nb.DiffusionLM(**nb.model_kwargs(cfg, len(tokenizer))).to(device)
        nb.compile_blocks(model, cfg.compile and device == "cuda", cfg.batch_size)
        start = time.perf_counter()
        history, ema = nb.train(model, cfg, stream, val, tokenizer, device, work / label.replace(" ", "_"))
        seconds = time.perf_counter() - start
        final_weights = nb.pick_final_weights(model, ema, history)
        final = nb.evaluate(final_weights, val, cfg, tokenizer, device)
        if args.samples:
            samples[label] = sample_stories(nb, final_weights, tokenizer, cfg, device, args.samples)
        rows.append(
            (
                label,
                f"{nb.count_parameters(model) / 1e6:.2f}M",
                f"{history['val'][0][1]:.3f}",
                f"{final['loss']:.4f}",
                f"{final['nelbo']:.4f}",
                f"{math.exp(final['nelbo']):.1f}",
                f"{cfg.micro_steps * cfg.batch_size * cfg.seq_len / seconds:,.0f}",
            )
        )
        print("| " + " | ".join(rows[-1]) + " |", flush=True)  # each row as it comes: long runs show progress
    shutil.rmtree(work)
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for label, stories in samples.items():
        print(f"\n{label}:\n" + "\n".join(f"- {story}" for story in stories))


if __name__ == "__main__":
    main()
