"""Recipe ablations: train variants of the notebook's recipe on the same data and tokens, print one table.

    python benchmarks/ablate.py                                   # small scale (CPU-sized), ../shared/data/tinystories
    python benchmarks/ablate.py --scale quick                     # the notebook's quick mode, for a GPU
    python benchmarks/ablate.py --variants reference defaults --samples 3
    python benchmarks/ablate.py --on "another seed" --variants defaults "sinusoidal step"

Every variant is a list of changes from benchmarks/recipes.py, applied to a fresh copy of the notebook's definitions:
`defaults` is the notebook as it is, `reference` the reference notebook's recipe. Each is trained by the notebook's
own train(), scored by its deterministic evaluate() on held-out stories (the V2-GPT4 validation file), and asked
where stories end: the median rank of [EOS] at the true end of held-out stories (end_of_story_ranks), and the share
of 32 sampled stories that end.
"""

import argparse
import dataclasses
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_defs import load_definitions  # noqa: E402
from recipes import VARIANTS, apply  # noqa: E402
from throughput import print_row, print_table  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinystories"
DEFAULT_DATA = ",".join(str(p) for p in sorted(SHARED.glob("*.txt")) if "_lower_" not in p.name)  # the cased files
SMALL = {  # a shape two CPU cores train in a few minutes; seq_len 256 holds most stories whole, so they can end
    "n_train_stories": 10_000,
    "n_val_stories": 300,
    "n_tokenizer_stories": 5_000,
    "micro_steps": 1_200,
    "batch_size": 8,
    "grad_accum": 2,
    "lr": 3e-3,  # at 1e-3 whether a run leaves the unigram plateau within its 600 updates depends on the seed
    "warmup_steps": 20,
    "eval_batches": 8,
    "evals_per_run": 4,
    "checkpoints_per_run": 1,
    "train_baseline": False,
}
SMALL_MODEL = {"vocab_size": 2048, "seq_len": 256, "d_model": 128, "n_layers": 4, "n_heads": 4, "d_ff": 512,
               "diffusion_steps": 64}


def base_config(nb, scale, micro_steps=None):
    cfg = nb.get_config("quick", {**SMALL, **SMALL_MODEL} if scale == "small" else {})
    return dataclasses.replace(cfg, mode=f"ablate-{scale}", micro_steps=micro_steps or cfg.micro_steps)


def variant(names, scale, micro_steps=None):
    """(a fresh copy of the notebook's definitions with the variants' changes, the Config to train with)."""
    nb = load_definitions()
    return nb, apply(nb, base_config(nb, scale, micro_steps), names)


def prepared_data(nb, cfg, data, work):
    """(tokenizer, training tokens, validation blocks, validation stories) of cfg's stories, cached in work."""
    train_stories, val_stories = nb.load_stories(data, cfg.n_train_stories, cfg.n_val_stories)
    tokenizer = nb.cached_tokenizer(train_stories[: cfg.n_tokenizer_stories], cfg.model.vocab_size, work)
    stream = nb.cached_token_stream(tokenizer, train_stories, work)
    val = nb.fixed_blocks(nb.cached_token_stream(tokenizer, val_stories, work), cfg.model.seq_len,
                          cfg.eval_batches * cfg.batch_size)
    return tokenizer, stream, val, val_stories


def sample_stories(nb, model, tokenizer, cfg, device, n):
    """n stories from "Once upon a time", as the notebook samples them, from a fixed seed."""
    generator = torch.Generator(device).manual_seed(0)
    tokens, _ = nb.generate(model, tokenizer, ["Once upon a time"] * n, model.config.diffusion_steps,
                            cfg.temperature, cfg.top_k, device, generator)
    return tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small", "quick"], default="small")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--on", nargs="+", choices=list(VARIANTS), default=[], help="variants under every variant")
    parser.add_argument("--micro-steps", type=int, help="train longer or shorter than the scale's default")
    parser.add_argument("--samples", type=int, default=0, help="stories to print from each variant's final weights")
    parser.add_argument("--data", default=DEFAULT_DATA, help="DATA_PATH: local TinyStories, validation file included")
    args = parser.parse_args()
    if not args.data:
        parser.error(f"no data: pass --data (no {SHARED} here)")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="ablate-"))
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    header = ("variant", "parameters", "initial loss", "val loss", "NELBO nats/token", "perplexity bound",
              "[EOS] rank at ends (median)", "stories that end", "tokens/s (incl. eval)")
    rows, samples = [], {}
    for label in args.variants:
        nb, cfg = variant([*args.on, label], args.scale, args.micro_steps)
        tokenizer, stream, val, val_stories = prepared_data(nb, cfg, args.data, work)
        if not rows:
            print(f"{name}; {args.scale} scale; {cfg.micro_steps * cfg.batch_size * cfg.model.seq_len:,} training "
                  f"tokens per variant, from {len(stream):,} tokens of data; {len(val)} validation blocks of "
                  f"{cfg.model.seq_len}", flush=True)
        torch.manual_seed(cfg.seed)
        model = nb.DiffusionLM(dataclasses.replace(cfg.model, vocab_size=len(tokenizer))).to(device)
        nb.compile_model(model, cfg.compile and device == "cuda", cfg.batch_size)
        start = time.perf_counter()
        history, ema = nb.train(model, cfg, stream, val, tokenizer, device, work / label.replace(" ", "_"))
        seconds = time.perf_counter() - start
        final_weights = nb.pick_final_weights(model, ema, history)
        final = nb.evaluate(final_weights, val, tokenizer, device)
        ranks = nb.end_of_story_ranks(final_weights, tokenizer, val_stories[:256], device)
        stories = sample_stories(nb, final_weights, tokenizer, cfg, device, 32)
        if args.samples:
            samples[label] = [nb.decode_story(tokenizer, row).replace("\n", " ") for row in stories[: args.samples]]
        label = " + ".join([*args.on, label])
        rows.append((
            label,
            f"{nb.count_parameters(model) / 1e6:.2f}M",
            f"{history['val'][0][1]:.3f}",
            f"{final['loss']:.4f}",
            f"{final['nelbo']:.4f}",
            f"{math.exp(final['nelbo']):.1f}",
            f"{statistics.median(ranks):.0f} of {len(tokenizer):,} ({len(ranks)} stories)",
            f"{nb.sample_quality(tokenizer, stories)['ended']:.0%}",
            f"{cfg.micro_steps * cfg.batch_size * cfg.model.seq_len / seconds:,.0f}",
        ))
        print_row(rows[-1])
    shutil.rmtree(work)
    print_table(header, rows)
    for label, stories in samples.items():
        print(f"\n{label}:\n" + "\n".join(f"- {story}" for story in stories))


if __name__ == "__main__":
    main()
