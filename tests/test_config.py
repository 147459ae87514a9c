import re
from pathlib import Path

import pytest


def test_reference_recipes_are_exact(nb):
    quick, full = nb.get_config("quick"), nb.get_config("budget_100")
    assert (quick.n_train_stories, quick.n_val_stories, quick.n_tokenizer_stories) == (50_000, 2_000, 30_000)
    assert (quick.seq_len, quick.vocab_size, quick.d_model, quick.n_layers, quick.n_heads) == (256, 8_000, 384, 6, 6)
    assert (quick.d_ff, quick.diffusion_steps, quick.micro_steps, quick.batch_size) == (4 * 384, 64, 2_000, 32)
    assert (quick.grad_accum, quick.lr, quick.weight_decay, quick.warmup_steps) == (1, 3e-4, 0.1, 200)
    assert (full.n_train_stories, full.n_val_stories, full.n_tokenizer_stories) == (1_000_000, 10_000, 150_000)
    assert (full.seq_len, full.vocab_size, full.d_model, full.n_layers, full.n_heads) == (256, 26_000, 512, 10, 8)
    assert (full.d_ff, full.diffusion_steps, full.micro_steps, full.batch_size) == (2048, 128, 60_000, 32)
    assert (full.grad_accum, full.lr, full.weight_decay, full.warmup_steps) == (2, 2e-4, 0.1, 1_000)


def test_budget_100_counts_steps_like_the_reference(nb):
    full = nb.get_config("budget_100")
    assert full.optimizer_steps == 30_000  # 60k micro-batches of 32 = 30k updates of 64
    assert full.eval_every * full.grad_accum == 5_000  # validation every 5k micro-steps, as in the reference table


def test_unknown_mode_lists_the_modes(nb):
    with pytest.raises(ValueError, match="Unknown RUN_MODE 'fast'.*smoke, quick, budget_100"):
        nb.get_config("fast")


def test_install_cell_and_requirements_txt_agree(nb):
    lines = Path(__file__).parent.parent.joinpath("requirements.txt").read_text().split()
    assert sorted(nb.REQUIREMENTS.values()) == sorted(lines)
    for module, requirement in nb.REQUIREMENTS.items():
        assert re.split("[<>=]", requirement)[0].replace("-", "_") == module


def test_papermill_parameters_cell_holds_the_run_settings():
    import json

    from notebook_defs import NOTEBOOK

    cells = json.loads(NOTEBOOK.read_text())["cells"]
    tagged = ["".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    for name in ("RUN_MODE", "DATA_PATH", "OUTPUT_DIR", "CHECKPOINT", "FRESH_START", "HUB_REPO_ID", "BASELINE"):
        assert f"{name} = os.environ.get(" in tagged[0]


def test_unknown_option_in_the_config_is_refused(nb):
    import dataclasses

    with pytest.raises(ValueError, match="loss_weighting must be one of 'masked_mean', 'elbo', not 'elb0'"):
        dataclasses.replace(nb.get_config("smoke"), loss_weighting="elb0")
