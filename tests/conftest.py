import os
from dataclasses import replace

import pytest
import torch

from notebook_defs import load_definitions
from synthetic_stories import make_stories


def pytest_configure(config):
    """The tests never reach the network (CI has none), nor do the processes they start, which inherit these switches.
    huggingface_hub and datasets read them once, when first imported, which no test has done yet: without them, a
    failing Hub call would first retry for 20 s."""
    for switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(switch, "1")
    share_the_cores()


def share_the_cores():
    """Under pytest-xdist (`-n auto`), each worker takes its share of the cores, and so do the processes it starts
    (the notebook's kernel, torchrun's workers): torch's default, every core in every process, oversubscribes them
    and runs several times slower."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def nb():
    return load_definitions()


@pytest.fixture(scope="session")
def cfg(nb):
    return nb.get_config("smoke")


@pytest.fixture(scope="session")
def stories():
    return make_stories(300)


@pytest.fixture(scope="session")
def tokenizer(nb, stories):
    return nb.train_tokenizer(stories, 400)


@pytest.fixture(scope="session")
def shape(cfg, tokenizer):
    """The smoke model's ModelConfig, with the test tokenizer's vocabulary."""
    return replace(cfg.model, vocab_size=len(tokenizer))


@pytest.fixture()
def model(nb, shape):
    torch.manual_seed(0)
    return nb.DiffusionLM(shape)


@pytest.fixture(scope="session")
def tiny_data(nb, tokenizer, stories):
    """(training stream, validation blocks): 250 stories to train on, the other 50 cut into n_val_blocks blocks."""
    stream = nb.tokenize_stories(tokenizer, stories[:250])
    held_out = nb.tokenize_stories(tokenizer, stories[250:])

    def make(seq_len, n_val_blocks=16):
        return stream, nb.fixed_blocks(held_out, seq_len, n_val_blocks)

    return make
