"""benchmarks/dataprep.py: it measures the notebook's own data preparation on the stories it says it used."""

import subprocess
import sys

import pytest

from notebook_defs import BENCHMARKS, load_benchmark
from synthetic_stories import make_stories

pytestmark = pytest.mark.benchmarks  # developers' tools: CI runs these on requirements-dev.txt, not the floors

SCRIPT = BENCHMARKS / "dataprep.py"


@pytest.fixture(scope="module")
def dataprep():
    return load_benchmark("dataprep")


def test_local_stories_are_repeated_to_the_number_asked(dataprep, nb, tmp_path):
    stories = make_stories(5, seed=3)
    (tmp_path / "train.txt").write_text("\n<|endoftext|>\n".join(stories))
    (tmp_path / "valid.txt").write_text(make_stories(1, seed=4)[0])
    measured, distinct = dataprep.stories_to_measure(nb, str(tmp_path), 12)
    assert distinct == 5
    assert measured == stories + stories + stories[:2]


def test_the_table_counts_the_tokens_the_notebook_makes(nb):
    """The script, run as a user runs it, reports the tokens that the notebook's own tokenizer and tokenising make of
    the same stories."""
    cfg = nb.get_config("smoke")
    result = subprocess.run([sys.executable, str(SCRIPT), "--mode", "smoke", "--stories", "300", "--threads", "1"],
                            capture_output=True, text=True, check=True)
    row = result.stdout.splitlines()[-1].strip("| ").split(" | ")
    stories = make_stories(20_000)[:300]
    tokenizer = nb.train_tokenizer(stories, cfg.model.vocab_size)
    tokens = len(nb.tokenize_stories(tokenizer, stories))
    trained_on, _ = row[1].split(", ")
    told, told_tokens, _ = row[2].split(", ")
    assert (row[0], trained_on, told) == ("1", "300", "300 (300)")
    assert int(told_tokens.replace(",", "")) == tokens
