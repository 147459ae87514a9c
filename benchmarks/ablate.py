"""Recipe ablations: train variants of the notebook's recipe on the same data and tokens, print one table.

    python benchmarks/ablate.py                                   # small scale (CPU-sized), ../shared/data/tinystories
    python benchmarks/ablate.py --scale quick                     # the notebook's quick mode, for a GPU
    python benchmarks/ablate.py --variants reference defaults --samples 3
    python benchmarks/ablate.py --variants defaults "adaLN-Zero step" --seeds 1337 7

Every variant is a list of changes from benchmarks/recipes.py, applied to a fresh copy of the notebook's definitions:
`defaults` is the notebook as it is, `reference` the reference notebook's recipe. Each is trained by the notebook's
own train(), scored by its deterministic evaluate() on held-out stories (the V2-GPT4 validation file), and asked
where stories end: the median rank of [EOS] at the true end of held-out stories (end_of_story_ranks), and the share
of 32 sampled stories that end.
"""

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import DEFAULT_DATA, SHARED, device_name, load_definitions, print_row, print_table
from recipes import VARIANTS, apply

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
SMALL_MODEL = {"vocab_size": 4096, "seq_len": 256, "d_model": 128, "n_layers": 4, "n_heads": 4, "d_ff": 512,
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
    sampling = nb.Sampling(model.config.diffusion_steps, cfg.temperature, cfg.top_k)
    tokens, _ = nb.generate(model, tokenizer, ["Once upon a time"] * n, sampling, device, generator)
    return tokens


def with_settings(cfg, values):
    """cfg with Config or ModelConfig fields changed, e.g. {"d_model": 256, "lr": 1e-3}."""
    model_fields = {f.name for f in dataclasses.fields(cfg.model)}
    model = dataclasses.replace(cfg.model, **{k: v for k, v in values.items() if k in model_fields})
    return dataclasses.replace(cfg, model=model, **{k: v for k, v in values.items() if k not in model_fields})


def train_and_score(names, scale, data, work, device, micro_steps=None, values=None, samples=0, score_stories=True):
    """Train the variant `names` (with Config/ModelConfig `values` on top) and score its final weights: a dict (with
    `score_stories`, also where stories end, and samples)."""
    nb, cfg = variant(names, scale, micro_steps)
    cfg = with_settings(cfg, values or {})
    tokenizer, stream, val, val_stories = prepared_data(nb, cfg, data, work)
    torch.manual_seed(cfg.seed)
    model = nb.DiffusionLM(dataclasses.replace(cfg.model, vocab_size=len(tokenizer))).to(device)
    nb.compile_model(model, cfg.compile and device == "cuda", cfg.batch_size)
    start = time.perf_counter()
    folder = work / "-".join(n.replace(" ", "_") for n in [*names, *map(str, (values or {}).values())])
    history, ema = nb.train_run(model, cfg, stream, val, tokenizer, folder)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder)
    final_weights = nb.pick_final_weights(model, ema, history)
    final = nb.evaluate(final_weights, val, tokenizer, device)
    scored = {"cfg": cfg, "parameters": nb.count_parameters(model), "initial loss": history["val"][0][1], **final,
              "vocabulary": len(tokenizer), "tokens/s": cfg.micro_steps * cfg.batch_size * cfg.model.seq_len / seconds}
    if not score_stories:
        return scored
    ranks = nb.end_of_story_ranks(final_weights, tokenizer, val_stories[:256], device)
    stories = sample_stories(nb, final_weights, tokenizer, cfg, device, 32)
    return {**scored, "eos rank": statistics.median(ranks), "ranked": len(ranks),
            "ended": (stories == tokenizer.eos_token_id).any(1).float().mean().item(),
            "samples": [nb.decode_story(tokenizer, row).replace("\n", " ") for row in stories[:samples]]}


def spread(values, digits=4):
    """The mean, and ± half the range when there are several values."""
    mean = statistics.mean(values)
    return f"{mean:.{digits}f}" + (f" ± {(max(values) - min(values)) / 2:.{digits}f}" if len(values) > 1 else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small", "quick"], default="small")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--on", nargs="+", choices=list(VARIANTS), default=[], help="variants under every variant")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337], help="train every variant from each seed")
    parser.add_argument("--micro-steps", type=int, help="train longer or shorter than the scale's default")
    parser.add_argument("--samples", type=int, default=0, help="stories to print from each variant's final weights")
    parser.add_argument("--data", default=DEFAULT_DATA, help="DATA_PATH: local TinyStories, validation file included")
    args = parser.parse_args()
    if not args.data:
        parser.error(f"no data: pass --data (no {SHARED} here)")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="ablate-"))
    name = device_name(torch)
    header = ("variant", "seed", "parameters", "initial loss", "val loss", "NELBO nats/token", "NELBO bits/byte",
              "[EOS] rank at ends (median)", "stories that end", "tokens/s (incl. eval)")
    rows, summary, samples = [], [], {}
    for label in args.variants:
        runs = []
        for seed in args.seeds:
            r = train_and_score([*args.on, label], args.scale, args.data, work, device, args.micro_steps,
                                {"seed": seed}, args.samples)
            if not rows:
                cfg = r["cfg"]
                print(f"{name}; {args.scale} scale; {cfg.micro_steps * cfg.batch_size * cfg.model.seq_len:,} "
                      f"training tokens per run; {r['tokens']:,} validation tokens scored", flush=True)
            runs.append(r)
            rows.append((" + ".join([*args.on, label]), str(seed), f"{r['parameters'] / 1e6:.2f}M",
                         f"{r['initial loss']:.3f}", f"{r['loss']:.4f}", f"{r['nelbo']:.4f}", f"{r['bpb']:.4f}",
                         f"{r['eos rank']:.0f} of {r['vocabulary']:,} ({r['ranked']} stories)", f"{r['ended']:.0%}",
                         f"{r['tokens/s']:,.0f}"))
            print_row(rows[-1])
            samples[f"{rows[-1][0]}, seed {seed}"] = r["samples"]
        summary.append((rows[-1][0], str(len(runs)), spread([r["loss"] for r in runs]),
                        spread([r["nelbo"] for r in runs]), spread([r["bpb"] for r in runs])))
    shutil.rmtree(work)
    print_table(header, rows)
    if len(args.seeds) > 1:
        print_table(("variant", "seeds", "val loss", "NELBO nats/token", "NELBO bits/byte (mean ± half-range)"),
                    summary)
    for label, stories in samples.items():
        if stories:
            print(f"\n{label}:\n" + "\n".join(f"- {story}" for story in stories))


if __name__ == "__main__":
    main()
