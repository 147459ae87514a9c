import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from notebook_defs import load_definitions  # noqa: E402
from synthetic_stories import make_stories  # noqa: E402


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


@pytest.fixture()
def model(nb, cfg, tokenizer):
    torch.manual_seed(0)
    return nb.DiffusionLM(**nb.model_kwargs(cfg, len(tokenizer)))
