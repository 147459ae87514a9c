import importlib.metadata
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from notebook_defs import NOTEBOOK, code_cells

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    ("mode", "stories", "shape", "optimisation"),  # shape: seq_len, vocab, d_model, layers, heads, d_ff, T
    [
        ("quick", (50_000, 2_000, 30_000), (256, 8_000, 384, 6, 6, 1536, 64), (2_000, 32, 1, 8e-4, 200)),
        ("budget_100", (1_000_000, 10_000, 150_000), (256, 26_000, 512, 10, 8, 2048, 128),
         (30_000, 64, 1, 6e-4, 1_000)),
    ],
)
def test_the_modes_keep_the_reference_shapes_with_learning_rates_from_the_rule(nb, mode, stories, shape, optimisation):
    cfg = nb.get_config(mode)
    m = cfg.model
    assert (cfg.n_train_stories, cfg.n_val_stories, cfg.n_tokenizer_stories) == stories
    assert (m.seq_len, m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.d_ff, m.diffusion_steps) == shape
    assert (cfg.micro_steps, cfg.batch_size, cfg.grad_accum, cfg.lr, cfg.warmup_steps) == optimisation
    assert cfg.weight_decay == 0.1


@pytest.mark.parametrize(("mode", "times_the_rule"), [("cpu", 2), ("quick", 1), ("budget_100", 1)])
def test_each_modes_learning_rate_follows_the_measured_rule(nb, mode, times_the_rule):
    """The rule benchmarks/lr_rule.py fitted to the optima at widths 64 and 128, 4 layers (benchmarks/RESULTS.md,
    2.2); at the cpu mode's 2 layers, trained with Muon, twice its rate is as good as any measured (2.6)."""
    cfg = nb.get_config(mode)
    assert cfg.lr == pytest.approx(times_the_rule * 0.49 * cfg.model.d_model**-1.07, rel=0.15)


def test_budget_100_trains_on_the_references_updates_and_tokens(nb):
    full = nb.get_config("budget_100")
    assert full.optimizer_steps == 30_000  # the reference's 60k micro-batches of 32 with accumulation 2
    assert full.micro_steps * full.batch_size == 60_000 * 32
    assert full.eval_every == 2_500 and full.checkpoint_every == 1_000  # in updates
    halves = nb.get_config("budget_100", {"batch_size": 32, "grad_accum": 2, "micro_steps": 60_000})
    assert halves.optimizer_steps == full.optimizer_steps and halves.eval_every == full.eval_every


@pytest.mark.parametrize("updates, evals", [(275, 4), (2_000, 12), (450, 4), (3, 12)])
def test_a_run_validates_evals_per_run_times_the_last_at_its_end(nb, updates, evals):
    cfg = nb.get_config("smoke", {"micro_steps": updates, "evals_per_run": evals})
    validated = [u for u in range(1, updates + 1) if u % cfg.eval_every == 0 or u == updates]
    assert len(validated) == min(evals, updates) and validated[-1] == updates


def test_unknown_mode_lists_the_modes(nb):
    with pytest.raises(ValueError, match="Unknown RUN_MODE .fast..*smoke, cpu, quick, budget_100"):
        nb.get_config("fast")


@pytest.mark.parametrize(("overrides", "says"), [
    ({"grad_accum": 0}, r"grad_accum=0 \(at least 1\)"),
    ({"grad_accum": 4, "micro_steps": 3}, r"micro_steps=3 \(at least grad_accum=4, one update\)"),
    ({"baseline_share": 0}, r"baseline_share=0 \(in \(0, 1\]\)"),
    ({"lr": -1e-3, "ema_decay": 1.0}, r"lr=-0.001 \(above 0.*; ema_decay=1.0 \(in \[0, 1\)"),
    ({"evals_per_run": 0, "temperature": -0.5}, r"evals_per_run=0 \(at least 1\); temperature=-0.5 \(0 or more\)"),
    ({"optimizer": "sgd"}, r"optimizer=sgd \('muon' or 'adamw'\)"),
])
def test_settings_out_of_range_are_refused_before_the_run_starts(nb, overrides, says):
    with pytest.raises(ValueError, match=rf"Settings out of range: {says}.*Change them in OVERRIDES"):
        nb.get_config("smoke", overrides)


def test_overrides_change_the_run_and_the_model(nb):
    cfg = nb.get_config("quick", {"micro_steps": 500, "d_model": 256, "n_heads": 4, "prompts": ["A dragon"]})
    assert cfg.micro_steps == 500 and cfg.model.d_model == 256 and cfg.model.n_heads == 4
    assert cfg.prompts == ("A dragon",) and cfg.model.n_layers == 6 and cfg.lr == 8e-4
    with pytest.raises(ValueError, match=r"OVERRIDES: 'd_modle' is not a setting.*ModelConfig's \(.*d_model"):
        nb.get_config("quick", {"d_modle": 256})


def test_a_config_survives_its_json_form(nb):
    cfg = nb.get_config("smoke", {"d_model": 32})
    saved = json.loads(json.dumps({**asdict(cfg), "a_setting_since_removed": 1}))
    assert nb.config_from_dict(saved) == cfg


def test_install_cell_and_requirements_txt_agree(nb):
    lines = (ROOT / "requirements.txt").read_text().split()
    notebook = sorted(nb.REQUIREMENTS.values())
    assert sorted(line for line in lines if line in notebook) == notebook  # the notebook's needs, all listed
    runners = sorted(set(lines) - set(notebook))  # what runs it: JupyterLab (with its widgets), or papermill
    assert [re.split("[<>=]", r)[0] for r in runners] == ["ipywidgets", "jupyterlab", "papermill"]
    for module, requirement in nb.REQUIREMENTS.items():
        assert re.split("[<>=]", requirement)[0].replace("-", "_") == module


def test_the_floors_run_pins_requirements_txt_floors(nb):
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements-floors.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if "==" in line)
    assert pins == dict(requirement.split(">=") for requirement in nb.REQUIREMENTS.values())


def test_the_install_cell_finds_what_is_missing_or_older_than_its_floor(nb):
    assert nb.release("2.4.1+cu121") == (2, 4, 1) and nb.release("2.5.0a0+e000cf0ad9.nv24.10") == (2, 5, 0)
    assert nb.release("0.4.10") > nb.release("0.4.3")  # numbers, not text
    tqdm = importlib.metadata.version("tqdm")
    found = nb.unmet({"numpy": "numpy>=1.0", "tqdm": "tqdm>=999", "no_such_module_here": "no_such_module_here>=1"})
    assert found == {"tqdm": tqdm, "no_such_module_here": None}
    assert nb.unmet(nb.REQUIREMENTS) == {}  # this environment is what requirements.txt asks for


def test_the_install_cell_installs_what_is_unmet_and_goes_on_when_pip_cannot(nb, capsys):
    nb.install_requirements({"numpy": "numpy>=1.0", "no_such_module_here": "no_such_module_here>=1"})
    printed = capsys.readouterr().out
    assert "Installing: no_such_module_here>=1" in printed and "numpy" not in printed
    assert "pip could not install ['no_such_module_here>=1']; continuing with what is installed." in printed


def test_an_old_torch_stops_the_install_cell_with_what_to_do(nb):
    torch = importlib.metadata.version("torch")
    with pytest.raises(RuntimeError, match=re.escape(f"torch {torch} is installed, and this notebook needs torch>=99. "
                                                     "Install a build for this machine's CUDA")):
        nb.install_requirements({"torch": "torch>=99", "no_such_module_here": "no_such_module_here>=1"})


def test_one_cell_holds_the_settings_for_papermill():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    tagged = ["".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    names = ("RUN_MODE", "DATA_PATH", "PROMPT", "OVERRIDES", "BASELINE", "CHECKPOINT", "OUTPUT_DIR", "FRESH_START",
             "HUB_REPO_ID")
    for name in names:
        assert f"{name} = " in tagged[0] and f'os.environ.get("{name}"' in tagged[0]
    assert len([line for line in tagged[0].splitlines() if " = " in line]) == len(names)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU here: Run All picks quick")
def test_without_a_gpu_run_all_trains_the_cpu_mode_and_says_what_quick_would_cost(nb, tmp_path, monkeypatch, capsys):
    cells = {cell_id: source for cell_id, _, source in code_cells()}
    monkeypatch.delenv("RUN_MODE", raising=False)
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    namespace = dict(vars(nb))
    exec(cells["settings"], namespace)  # the Settings cell, then the cell that reads it, as Run All runs them
    exec(cells["resolve"], namespace)
    assert namespace["RUN_MODE"] == "cpu" and namespace["CFG"].mode == "cpu"
    printed = capsys.readouterr().out
    assert "No GPU here, so RUN_MODE is 'cpu'" in printed and "'quick' would train for about 3 hours" in printed
