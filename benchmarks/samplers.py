"""How the sampler's choice of positions shapes the stories: repetition, diversity, fluency and endings, on one model.

    python benchmarks/samplers.py                          # small scale, ../shared/data/tinystories; trains once
    python benchmarks/samplers.py --reveal-temperatures 0 1 --temperatures 0.8 1 --stories 64 --print 2

Trains, with the notebook's own train(), ablate.py's small-scale diffusion model and the autoregressive baseline (the
same network, causal) on the same tokens, once: both are saved in --work and reused by later runs with the same
settings. Then writes stories from "Once upon a time" with the notebook's generate(), T rounds, for each
reveal_temperature of the confidence sampler and for the ancestral sampler, at each token temperature, and scores
them with the notebook's sample_quality and generative_perplexity (the baseline as the judge), beside held-out stories
that open the same way, scored by the same functions.
"""

import argparse
import dataclasses
import textwrap
from pathlib import Path

import torch
from ablate import base_config, prepared_data
from common import DEFAULT_DATA, SHARED, load_definitions, print_row, print_table

HEADER = ("stories", "distinct-2", "repetition", "ended", "length (words)", "gen. perplexity")


def trained(nb, cfg, causal, prepared, data_source, folder, device):
    """The model trained on prepared_data's tokens (causal: the baseline) and its tokenizer, from folder if an earlier
    run saved them there."""
    if not (folder / "model.safetensors").exists():
        tokenizer, stream, val, _ = prepared
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=len(tokenizer), causal=causal))
        torch.manual_seed(cfg.seed)
        model = nb.DiffusionLM(cfg.model).to(device)
        history, ema = nb.train_run(model, cfg, stream, val, tokenizer, folder.parent / f"{folder.name}-run")
        nb.save_checkpoint(folder, nb.pick_final_weights(model, ema, history), tokenizer, cfg, history, data_source)
    model, tokenizer, _, _ = nb.load_checkpoint(folder, device)
    return model, tokenizer


def held_out(nb, tokenizer, stories, opening, seq_len, n):
    """Rows as generate() returns them (chat prefix, story, [EOS], [PAD] after) of n held-out stories that begin with
    opening and fit seq_len."""
    rows = [tokenizer.encode(nb.format_story(story)) for story in stories if story.startswith(opening)]
    rows = [row for row in rows if len(row) <= seq_len][:n]
    tokens = torch.full((len(rows), seq_len), tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    return tokens


def scored(nb, name, tokens, tokenizer, judge, device):
    quality = nb.sample_quality(tokenizer, tokens)
    return (name, f"{quality['distinct-2']:.3f}", f"{quality['repetition']:.3f}", f"{quality['ended']:.0%}",
            f"{quality['length']:.0f}", f"{nb.generative_perplexity(judge, tokenizer, tokens, device):.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="DATA_PATH: local TinyStories, validation file included")
    parser.add_argument("--work", default="checkpoints/benchmarks/samplers", help="where the trained models are kept")
    parser.add_argument("--micro-steps", type=int, default=4_800, help="training of both models")
    parser.add_argument("--reveal-temperatures", type=float, nargs="+", default=[0, 0.5, 1, 2])
    parser.add_argument("--temperatures", type=float, nargs="+", help="the tokens' temperatures (the config's if none)")
    parser.add_argument("--stories", type=int, default=128, help="stories per setting")
    parser.add_argument("--print", type=int, default=0, help="stories to print from each setting")
    args = parser.parse_args()
    if not args.data:
        parser.error(f"no data: pass --data (no {SHARED} here)")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    nb = load_definitions()
    cfg = base_config(nb, "small", args.micro_steps)
    work = Path(args.work) / f"small-{args.micro_steps}"
    prepared = prepared_data(nb, cfg, args.data, work)
    model, tokenizer = trained(nb, cfg, False, prepared, args.data, work / "diffusion", device)
    judge, _ = trained(nb, cfg, True, prepared, args.data, work / "baseline", device)
    opening, T, val_stories = "Once upon a time", model.config.diffusion_steps, prepared[3]
    real = held_out(nb, tokenizer, val_stories, opening, model.config.seq_len, args.stories)
    settings = {}
    for temperature in args.temperatures or [cfg.temperature]:
        for reveal in args.reveal_temperatures:
            settings[f"confidence, reveal_temperature={reveal:g}, temperature={temperature:g}"] = {
                "temperature": temperature, "reveal_temperature": reveal}
        settings[f"ancestral, temperature={temperature:g}"] = {"temperature": temperature, "sampler": "ancestral"}
    print(f"{len(real)} held-out stories and {args.stories} stories per setting from {opening!r}, {T} rounds, "
          f"top-k {cfg.top_k}; the baseline judges", flush=True)
    rows, samples = [scored(nb, "held-out stories", real, tokenizer, judge, device)], {}
    print_row(rows[-1])
    for name, options in settings.items():
        tokens, _ = nb.generate(model, tokenizer, [opening] * args.stories, nb.Sampling(T, top_k=cfg.top_k, **options),
                                device, torch.Generator().manual_seed(0))
        rows.append(scored(nb, name, tokens, tokenizer, judge, device))
        print_row(rows[-1])
        samples[name] = [nb.decode_story(tokenizer, row) for row in tokens[: args.print]]
    print_table(HEADER, rows)
    for name, stories in samples.items():
        print(f"\n{name}:\n" + "\n".join(textwrap.fill(story, 120, initial_indent="- ", subsequent_indent="  ")
                                         for story in stories))


if __name__ == "__main__":
    main()
