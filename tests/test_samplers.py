"""benchmarks/samplers.py: it measures every setting of the notebook's runs as the notebook measures its stories."""

import dataclasses
import subprocess
import sys

import torch

from notebook_defs import BENCHMARKS, load_benchmark
from synthetic_stories import write_data_folder

SCRIPT = BENCHMARKS / "samplers.py"


def test_every_setting_is_a_sampling_the_notebook_takes_and_none_repeats_another(nb):
    samplers = load_benchmark("samplers")
    settings = [nb.Sampling(**{**samplers.BASE, **changes}) for changes in samplers.SETTINGS.values()]
    assert len(set(settings)) == len(settings)


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
    settings = ["likeliest, reveal_temperature 1", "ancestral"]
    command = [sys.executable, str(SCRIPT), "--runs", str(tmp_path / "run"), "--data", str(data),
               "--stories", "2", "--seeds", "0", "1", "--settings", *settings]
    for stories_printed in (0, 1):
        printed = subprocess.run([*command, "--print", str(stories_printed)], capture_output=True, text=True,
                                 check=True).stdout
        table = printed[printed.index("| stories |"):].splitlines()
        assert [line.split(" | ")[0].strip("| ") for line in table[2:5]] == ["held-out stories", *settings]
        assert table[2].split(" | ")[1] == "0.000 ± 0.000"  # held-out stories' excess divergence: none, by definition
        assert ("\nancestral:\n- " in printed) == bool(stories_printed)
