"""Run the whole notebook with nbmake in smoke mode, as a user's "Run all" would, and check what it leaves behind."""

import json
import math
import os
import shutil
import subprocess
import sys

import imageio.v3 as iio
import pytest
from notebook_defs import NOTEBOOK
from synthetic_stories import write_data_folder

SHARED_DATA = NOTEBOOK.parent.parent / "shared" / "data" / "tinystories"


def run_notebook(workdir, **env):
    shutil.copy(NOTEBOOK, workdir)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=600", "--overwrite", "-p", "no:cacheprovider"]
        + ["-q", NOTEBOOK.name],
        cwd=workdir,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    executed = json.loads((workdir / NOTEBOOK.name).read_text())
    return "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])), executed


def check_outputs(workdir, printed, executed):
    final = workdir / "checkpoints" / "final"
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "training_config.json",
        "history.json",
        "README.md",
        "loss.png",
        "inference.gif",
    ):
        assert (final / name).is_file(), name
    val = json.loads((final / "history.json").read_text())["val"]
    initial, last = val[0][1], val[-1][1]
    assert math.isfinite(last) and last < initial
    gif = iio.imread(workdir / "checkpoints" / "inference.gif", index=None)
    config = json.loads((final / "training_config.json").read_text())["config"]
    assert gif.shape[0] == config["diffusion_steps"] + 1  # the fully masked start, then every step
    assert "it reloads to the same config and bit-identical weights" in printed
    assert "All requirements already installed." in printed  # the install cell is a no-op here
    assert (workdir / "checkpoints" / "baseline" / "model.safetensors").is_file()
    assert "| autoregressive |" in printed and "| masked diffusion |" in printed
    assert "gen. perplexity" in printed and "| ancestral | 16 |" in printed
    assert any("image/gif" in o.get("data", {}) for c in executed["cells"] for o in c.get("outputs", []))
    assert any("image/png" in o.get("data", {}) for c in executed["cells"] for o in c.get("outputs", []))


def test_notebook_trains_resumes_and_generates_on_generated_data(tmp_path):
    data = write_data_folder(tmp_path / "data", 500, seed=3, n_valid=50)
    printed, executed = run_notebook(tmp_path, RUN_MODE="smoke", DATA_PATH=str(data))
    check_outputs(tmp_path, printed, executed)

    printed, _ = run_notebook(tmp_path, RUN_MODE="smoke", DATA_PATH=str(data))  # Run All again: nothing retrained
    assert "60 of 60 optimizer updates already done" in printed

    (tmp_path / "checkpoints" / "inference.gif").unlink()
    printed, _ = run_notebook(tmp_path, RUN_MODE="generate", CHECKPOINT="checkpoints/final")
    assert "Loaded checkpoints/final" in printed and "training (" not in printed
    assert iio.imread(tmp_path / "checkpoints" / "inference.gif", index=None).shape[0] == 17


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data/tinystories beside this checkout")
def test_notebook_runs_end_to_end_on_real_tinystories(tmp_path):
    files = sorted(str(p) for p in SHARED_DATA.glob("*.txt") if "_lower_" not in p.name)  # cased text only
    printed, executed = run_notebook(tmp_path, RUN_MODE="smoke", DATA_PATH=",".join(files))
    check_outputs(tmp_path, printed, executed)
