"""benchmarks/samplers.py: held-out stories are scored as the sampler's stories are, and the script runs as a user runs
it, training its two models once."""

import subprocess
import sys

from notebook_defs import BENCHMARKS, load_benchmark
from synthetic_stories import make_stories

SCRIPT = BENCHMARKS / "samplers.py"


def report(output):
    """The table and the stories the script printed after its models were ready."""
    return output[output.index("| stories |") :]


def test_held_out_stories_are_rows_as_the_sampler_writes_them(nb, tokenizer):
    stories = ["Once upon a time, a cat sat.", "A dog ran.", "Once upon a time " + "very " * 200 + "long.",
               "Once upon a time, a bird sang."]
    rows = load_benchmark("samplers").held_out(nb, tokenizer, stories, "Once upon a time", 64, 10)
    assert rows.shape == (2, 64)  # the story that does not open so and the one too long for 64 tokens are left out
    assert [nb.decode_story(tokenizer, row) for row in rows] == [stories[0], stories[3]]
    quality = nb.sample_quality(tokenizer, rows)
    assert quality["ended"] == 1.0 and quality["repetition"] == 0.0 and quality["length"] == 7


def test_the_script_trains_its_models_once_and_scores_every_setting(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("\n<|endoftext|>\n".join(make_stories(300)))
    (data / "valid.txt").write_text("\n<|endoftext|>\n".join(make_stories(20, seed=1)))
    command = [sys.executable, str(SCRIPT), "--data", str(data), "--work", str(tmp_path / "work"),
               "--micro-steps", "4", "--stories", "3", "--reveal-temperatures", "0", "1", "--temperatures", "0.8", "1"]
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    table = report(first.stdout).splitlines()
    assert [line.split(" | ")[0].strip("| ") for line in table[2:9]] == [
        "held-out stories",
        "confidence, reveal_temperature=0, temperature=0.8", "confidence, reveal_temperature=1, temperature=0.8",
        "ancestral, temperature=0.8",
        "confidence, reveal_temperature=0, temperature=1", "confidence, reveal_temperature=1, temperature=1",
        "ancestral, temperature=1"]
    assert "training (" in first.stderr
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "training (" not in again.stderr  # both models come from the work folder
    assert report(again.stdout) == report(first.stdout)  # and write and score the same stories
