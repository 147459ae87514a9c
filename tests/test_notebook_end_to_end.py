"""Run the whole notebook in smoke mode, headless as README says and with nbmake as CI does, and check what it
leaves behind."""

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys

import imageio.v3 as iio
import pytest

from notebook_defs import NOTEBOOK
from synthetic_stories import write_data_folder

SHARED_DATA = NOTEBOOK.parent.parent / "shared" / "data" / "tinystories"


def printed_text(executed):
    return "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))


def run_with_nbmake(workdir, **env):
    shutil.copy(NOTEBOOK, workdir)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=600", "--overwrite", "-p", "no:cacheprovider"]
        + ["-q", NOTEBOOK.name],
        cwd=workdir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    executed = json.loads((workdir / NOTEBOOK.name).read_text())
    return printed_text(executed), executed


def run_headless(workdir, **parameters):
    """README's headless command: papermill, with the cells' output shown as they run and the executed notebook kept."""
    command = [sys.executable, "-m", "papermill", str(NOTEBOOK), "run.ipynb", "--log-output"]
    for name, value in parameters.items():
        command += ["-p", name, value]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    executed = json.loads((workdir / "run.ipynb").read_text())
    return result.stdout + result.stderr, executed


def outputs_of(executed, cell_id):
    return next(c for c in executed["cells"] if c.get("id") == cell_id)["outputs"]


def check_outputs(workdir, printed, executed):
    final = workdir / "checkpoints" / "final"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "training_config.json", "history.json",
                 "README.md", "loss.png", "inference.gif"):
        assert (final / name).is_file(), name
    val = json.loads((final / "history.json").read_text())["val"]
    initial, last = val[0][1], val[-1][1]
    assert math.isfinite(last) and last < initial
    frames = iio.imread(workdir / "checkpoints" / "inference.gif", index=None).shape[0]
    config = json.loads((final / "training_config.json").read_text())["config"]
    assert 2 <= frames <= config["model"]["diffusion_steps"] + 1  # the start, then every round the story needed
    assert "it reloads to the same config and bit-identical weights" in printed
    assert "All requirements already installed." in printed  # the install cell is a no-op here
    assert "The untrained model writes noise" in printed and "t =  16 of 16 (100% hidden)" in printed
    assert (workdir / "checkpoints" / "baseline" / "model.safetensors").is_file()
    outputs = [o for c in executed["cells"] for o in as_shown(c.get("outputs", []))]
    assert any("image/gif" in o.get("data", {}) for o in outputs)
    check_display(workdir, executed, outputs)


def as_shown(outputs):
    """A cell's outputs as JupyterLab shows them: consecutive stream outputs of the same name in one box. (The kernel
    sends what was printed on a timer, so a print's text and its newline may arrive as two outputs.)"""
    shown = []
    for output in outputs:
        if shown and output.get("name") and output.get("name") == shown[-1].get("name"):
            shown[-1] = {**shown[-1], "text": "".join(shown[-1]["text"]) + "".join(output["text"])}
        else:
            shown.append(output)
    return shown


def check_display(workdir, executed, outputs):
    """What a user sees: no empty or stderr-only progress outputs, tables and plots as rich output, stories once."""
    for output in outputs:
        text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
        assert text.strip() or "image/png" in output.get("data", {}) or "image/gif" in output.get("data", {}), output
        if importlib.util.find_spec("ipywidgets"):  # progress is a live widget, not text on stderr
            assert output.get("name") != "stderr" or "it/s" not in text, text[:200]
        if output.get("name") == "stdout":  # printed lines fit the output area, which would break them mid-word
            too_long = [line for line in text.splitlines() if len(line) > 110]
            assert not too_long, too_long
    for cell, html in (("baseline", "masked diffusion"), ("quality", "excess divergence")):
        tables = [o for o in outputs_of(executed, cell) if "<table" in "".join(o.get("data", {}).get("text/html", ""))]
        assert len(tables) == 1 and html in "".join(tables[0]["data"]["text/html"]), cell
    for cell, name in (("curves", "loss.png"), ("baseline", "comparison.png"), ("quality", "quality.png")):
        assert (workdir / "checkpoints" / name).is_file()
        assert any("image/png" in o.get("data", {}) for o in outputs_of(executed, cell)), cell
    write = outputs_of(executed, "write")
    live = [o for o in write if o["output_type"] == "display_data"]  # redrawn after every round, then a note
    assert len(live) == 1 and "".join(live[0]["data"]["text/plain"]).endswith("rounds:")
    stories = "".join("".join(o.get("text", "")) for o in write if o["output_type"] == "stream")
    first = stories.split("\n")[0]
    assert first.startswith("Once upon a time") and "█" not in stories
    cells_text = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in write)
    assert cells_text.count(first) == 1  # each story shown once


def test_printed_text_wraps_between_words_keeps_its_paragraphs_and_indents_under_a_label(nb, capsys):
    text = "400 training stories from /a/folder/named/at/length/data.txt. " + "word " * 40 + "\n\nThe next paragraph."
    nb.print_wrapped(text)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) > 3 and all(len(line) <= 110 for line in printed) and "" in printed  # the paragraph break
    assert " ".join(printed).split() == text.split()  # no word broken or lost
    nb.print_wrapped("x " * 80, "t =  4 of 16: ")
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("t =  4 of 16: x") and len(printed) == 2
    assert printed[1].startswith(" " * 14 + "x") and all(len(line) <= 110 for line in printed)


def test_notebook_trains_resumes_and_generates_on_generated_data(tmp_path):
    data = write_data_folder(tmp_path / "data", 500, seed=3, n_valid=50)
    log, executed = run_headless(tmp_path, RUN_MODE="smoke", DATA_PATH=str(data))
    check_outputs(tmp_path, printed_text(executed), executed)
    assert "masked diffusion (smoke)" in log and "step     60 of 60: loss" in log  # progress, as it comes
    assert "autoregressive baseline (smoke)" in log and "exact NLL" in log
    assert "excess divergence" in log and "most confident first" in log  # the quality table, as text
    # papermill reads every parameter, and nothing warns; ipykernel's notice that any kernel it starts talks over TCP
    # is about Jupyter's own transport, whatever the notebook
    warning = r"Warning\b|WARNING|Unable to parse|unknown parameter"  # the last two: papermill's, unprefixed
    warned = [line for line in log.splitlines() if re.search(warning, line) and "over TCP" not in line]
    assert not warned, warned

    printed, _ = run_with_nbmake(tmp_path, RUN_MODE="smoke", DATA_PATH=str(data))  # Run All again: no retraining
    assert "60 of 60 optimizer updates already done" in printed

    (tmp_path / "checkpoints" / "inference.gif").unlink()
    printed, _ = run_with_nbmake(tmp_path, RUN_MODE="generate", CHECKPOINT="checkpoints/final", PROMPT="Zoé and a frog")
    assert "Loaded checkpoints/final" in printed and "masked diffusion (" not in printed
    assert "Zoé and a frog" in printed and "Tom and Lily went to the park." not in printed  # the user's prompt
    assert iio.imread(tmp_path / "checkpoints" / "inference.gif", index=None).shape[0] <= 17


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data/tinystories beside this checkout")
def test_notebook_runs_end_to_end_on_real_tinystories(tmp_path):
    files = sorted(str(p) for p in SHARED_DATA.glob("*.txt") if "_lower_" not in p.name)  # cased text only
    printed, executed = run_with_nbmake(tmp_path, RUN_MODE="smoke", DATA_PATH=",".join(files))
    check_outputs(tmp_path, printed, executed)
