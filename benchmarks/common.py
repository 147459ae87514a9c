"""What the benchmarks share: the notebook's own definitions, the data they measure on, and their tables."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the notebook's loader and the made-up stories live at the project's root

from notebook_defs import NOTEBOOK, load_definitions  # noqa: E402, F401
from synthetic_stories import make_stories  # noqa: E402, F401

SHARED = ROOT.parent / "shared" / "data" / "tinystories"
DEFAULT_DATA = ",".join(str(p) for p in sorted(SHARED.glob("*.txt")) if "_lower_" not in p.name)  # the cased files


def device_name(torch):
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"


def print_row(row):
    print("| " + " | ".join(map(str, row)) + " |", flush=True)  # each row as it comes: a cut-off run keeps its rows


def print_table(header, rows):
    print_row(header)
    print("|" + "---|" * len(header))
    for row in rows:
        print_row(row)
