"""How the sampler's settings shape the stories, measured as the notebook measures them. Prints one table.

    RUN_MODE=cpu OUTPUT_DIR=runs/a papermill Diffusion_LLM_from_Scratch_TinyStories.ipynb a.ipynb   # a model, a judge
    python benchmarks/samplers.py --runs runs/a runs/b --seeds 0 1 --print 2

Each --runs folder is the OUTPUT_DIR of a notebook run that trained the diffusion model (final/) and the
autoregressive baseline (baseline/). For every setting below, each model writes --stories stories from "Once upon a
time" in T rounds (temperature 0.8 and top-k 50 unless the setting says otherwise), once per seed, and the notebook's
compare_samplers measures them against held-out stories that open the same way (its excess n-gram divergence,
repetition, distinct-2, the baseline's perplexity as a ratio to its perplexity on held-out stories, the share of
8-grams copied from the training text, length, endings). The table shows each measure's mean over models and seeds,
± half its range.
"""

import argparse
import dataclasses
import statistics
import textwrap
from pathlib import Path

import remasking
import torch
from common import DEFAULT_DATA, SHARED, device_name, load_definitions, print_row, print_table

BASE = {"temperature": 0.8, "top_k": 50}  # the default tokens; rows that change them show what that does
SETTINGS = {  # name: changes to BASE and the notebook's Sampling
    "drawn token's probability, most confident first": {"confidence": "drawn", "reveal_temperature": 0},
    "drawn token's probability, reveal_temperature 1": {"confidence": "drawn", "reveal_temperature": 1},
    "likeliest, most confident first": {"reveal_temperature": 0},
    "likeliest, reveal_temperature 0.5": {"reveal_temperature": 0.5},
    "likeliest, reveal_temperature 1": {"reveal_temperature": 1},
    "likeliest, reveal_temperature 2": {"reveal_temperature": 2},
    "margin, reveal_temperature 1": {"confidence": "margin", "reveal_temperature": 1},
    "likeliest, reveal_temperature 1, temperature 0.6": {"reveal_temperature": 1, "temperature": 0.6},
    "likeliest, reveal_temperature 1, temperature 0.7": {"reveal_temperature": 1, "temperature": 0.7},
    "likeliest, reveal_temperature 1, temperature 1": {"reveal_temperature": 1, "temperature": 1.0},
    "likeliest, reveal_temperature 1, top-k 0 (all)": {"reveal_temperature": 1, "top_k": 0},
    "likeliest, reveal_temperature 1, top-p 0.9": {"reveal_temperature": 1, "top_p": 0.9},
    "likeliest, reveal_temperature 1, temperature 1, top-k 0, top-p 0.8": {"reveal_temperature": 1, "temperature": 1.0,
                                                                          "top_k": 0, "top_p": 0.8},
    "ancestral": {"sampler": "ancestral"},
    "likeliest, reveal_temperature 1, remasking 1/64 a round from a quarter": {"remask_share": 1 / 64,
                                                                             "remask_from": 0.25},
    "likeliest, reveal_temperature 1, remasking 1/64 a round from halfway": {"remask_share": 1 / 64},
    "likeliest, reveal_temperature 1, remasking 2/64 a round from halfway": {"remask_share": 2 / 64},
}
MEASURES = ("excess divergence", "repetition", "distinct-2", "judge / held-out", "copied 8-grams", "length", "ended")


def spread(values, digits):
    mean = statistics.mean(values)
    return f"{mean:.{digits}f}" + (f" ± {(max(values) - min(values)) / 2:.{digits}f}" if len(values) > 1 else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="OUTPUT_DIRs of notebook runs")
    parser.add_argument("--data", default=DEFAULT_DATA, help="the runs' DATA_PATH: held-out and training stories")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--stories", type=int, default=64, help="stories per setting, model and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--print", type=int, default=0, help="stories to print from each setting (first run, seed)")
    args = parser.parse_args()
    if not args.data:
        parser.error(f"no data: pass --data (no {SHARED} here)")

    nb, device = load_definitions(), "cuda" if torch.cuda.is_available() else "cpu"
    sampling = remasking.install(nb)  # the notebook's Sampling, and remasking (benchmarks/remasking.py)
    measured, samples = {}, {}
    for run in args.runs:
        model, tokenizer, cfg, _ = nb.load_checkpoint(run / "final", device)
        judge, *_ = nb.load_checkpoint(run / "baseline", device)
        train, held_out = nb.load_stories(args.data, cfg.n_train_stories, cfg.n_val_stories)
        base = sampling(model.config.diffusion_steps, **BASE)
        settings = {(name, base.steps): dataclasses.replace(base, **SETTINGS[name]) for name in args.settings}
        print(f"{run}: {cfg.mode} model, {nb.count_parameters(model) / 1e6:.2f}M parameters, {base}", flush=True)
        for seed in args.seeds:
            torch.manual_seed(seed)
            rows = nb.compare_samplers(model, tokenizer, settings, args.stories, held_out, train, device, judge)
            for row in rows:
                measured.setdefault(row["stories"], []).append(row)
                print_row([row["stories"], run.name, seed, *(f"{row[m]:.3f}" for m in MEASURES)])
            if args.print and not samples:
                torch.manual_seed(seed)
                for name, setting in settings.items():
                    tokens, _ = nb.generate(model, tokenizer, ["Once upon a time"] * args.print, setting, device)
                    samples[name[0]] = [nb.decode_story(tokenizer, row) for row in tokens]
    print(f"\n{device_name(torch)}; {len(args.runs)} models × {len(args.seeds)} seeds, {args.stories} stories each:")
    print_table(("stories", *MEASURES), [(name, *(spread([r[m] for r in rows], 3) for m in MEASURES))
                                         for name, rows in measured.items()])
    for name, stories in samples.items():
        print(f"\n{name}:\n" + "\n".join(textwrap.fill(story, 120, initial_indent="- ", subsequent_indent="  ")
                                         for story in stories))


if __name__ == "__main__":
    main()
