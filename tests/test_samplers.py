"""benchmarks/samplers.py: it measures every setting of the notebook's runs as the notebook measures its stories."""

import dataclasses
import itertools
import math
import subprocess
import sys

import pytest
import torch

from notebook_defs import BENCHMARKS, load_benchmark, load_definitions
from synthetic_stories import write_data_folder

pytestmark = pytest.mark.benchmarks  # developers' tools: CI runs these on requirements-dev.txt, not the floors

SCRIPT = BENCHMARKS / "samplers.py"


def remasking_definitions():
    """The notebook's definitions, taught to remask: a copy of their own, since install() changes generate()."""
    nb = load_definitions()
    return nb, load_benchmark("remasking").install(nb)


def test_every_setting_is_a_sampling_the_notebook_takes_and_none_repeats_another():
    samplers, (_, sampling) = load_benchmark("samplers"), remasking_definitions()
    settings = [sampling(**{**samplers.BASE, **changes}) for changes in samplers.SETTINGS.values()]
    assert len(set(settings)) == len(settings)


def test_remasking_hides_earlier_tokens_again_on_the_notebooks_schedule(model, tokenizer):
    """Each round leaves as many positions hidden as the notebook's sampler would; from halfway, some tokens revealed
    in earlier rounds are hidden again, never the prompt; the last round leaves nothing hidden."""
    nb, sampling = remasking_definitions()
    rounds, gen_len, mask = 16, 32, tokenizer.mask_token_id
    remasking = sampling(rounds, gen_len=gen_len, remask_share=2 / gen_len, remask_from=0.5)
    torch.manual_seed(0)
    tokens, trajectory = nb.generate(model, tokenizer, ["Once upon a time"], remasking)
    prompt = nb.encode_prompts(tokenizer, ["Once upon a time"], model.config.seq_len, gen_len)[0] != mask
    assert torch.equal(tokens[0, prompt], trajectory[0][0, prompt]) and not (tokens == mask).any()
    hidden_again, n = [], int((trajectory[0][0] == mask).sum())  # the positions up to the story's drawn end
    for k, (before, after) in enumerate(itertools.pairwise(trajectory)):
        assert int((after[0] == mask).sum()) == math.ceil(n * (rounds - k - 1) / rounds)
        hidden_again.append(int(((before[0] != mask) & (after[0] == mask)).sum()))
    assert hidden_again[: rounds // 2] == [0] * (rounds // 2) and sum(hidden_again[rounds // 2 :]) > 0
    assert hidden_again[-1] == 0


def test_the_script_measures_each_setting_of_each_run(nb, cfg, tmp_path):
    """A run folder as the notebook leaves it (final/ and baseline/), from two tiny trained models."""
    data = write_data_folder(tmp_path / "data", 200, seed=2, n_valid=20)
    train, val = nb.load_stories(str(data), 180, 20)
    tokenizer = nb.train_tokenizer(train, 300)
    stream = nb.tokenize_stories(tokenizer, train)
    blocks = nb.fixed_blocks(nb.tokenize_stories(tokenizer, val), cfg.model.seq_len, 4)
    for causal, folder in ((False, "final"), (True, "baseline")):
        short = dataclasses.replace(cfg, micro_steps=4, model=dataclasses.replace(
            cfg.model, vocab_size=len(tokenizer), causal=causal))
        torch.manual_seed(0)
        model = nb.DiffusionLM(short.model)
        history, _ = nb.train_run(model, short, stream, blocks, tokenizer, tmp_path / f"{folder}-run")
        nb.save_checkpoint(tmp_path / "run" / folder, model, tokenizer, short, history, str(data))
    settings = ["likeliest, reveal_temperature 1", "ancestral",
                "likeliest, reveal_temperature 1, remasking 2/64 a round from halfway"]
    run = str(tmp_path / "run")  # twice: the script measures each run in turn
    command = [sys.executable, str(SCRIPT), "--runs", run, run, "--data", str(data),
               "--stories", "2", "--seeds", "0", "1", "--settings", *settings]
    for stories_printed in (0, 1):
        printed = subprocess.run([*command, "--print", str(stories_printed)], capture_output=True, text=True,
                                 check=True).stdout
        table = printed[printed.index("| stories |"):].splitlines()
        assert [line.split(" | ")[0].strip("| ") for line in table[2:6]] == ["held-out stories", *settings]
        assert table[2].split(" | ")[1] == "0.000 ± 0.000"  # held-out stories' excess divergence: none, by definition
        assert ("\nancestral:\n- " in printed) == bool(stories_printed)
