"""The notebook says which cells define things and which run things; the tests' loader holds it to that."""

import json

import pytest

from notebook_defs import NOTEBOOK, NotebookContractError, code_cells, load_definitions


def notebook_with(tmp_path, *cells):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [
        {"cell_type": "code", "id": cell_id, "metadata": {"tags": tags}, "source": source, "outputs": []}
        for cell_id, tags, source in cells
    ]}))
    return path


def test_definitions_cells_are_loaded_whole_and_run_cells_are_skipped(tmp_path):
    path = notebook_with(
        tmp_path,
        ("consts", ["definitions"], "import math\nBASE = 3\nDOUBLE = 2 * BASE  # computed from another constant\n"),
        ("work", [], "RESULT = math.sqrt(DOUBLE)\nprint('trained')\n"),
        ("fn", ["definitions"], "def area(r):\n    return math.pi * r * r\n"),
    )
    module = load_definitions(path)
    assert module.DOUBLE == 6 and module.area(1) == pytest.approx(3.14159, rel=1e-5)
    assert not hasattr(module, "RESULT")


@pytest.mark.parametrize(
    "cell, message",
    [
        (("setup", ["definitions"], "X = 1\nprint(X)\n"), "Cell 'setup' is tagged 'definitions' but line 2 runs"),
        (("setup", ["definitions"], "model = 1\n"), "line 1 runs something \\('model = 1'\\)"),
        (("train", [], "def helper():\n    pass\n"), "Cell 'train' defines 'helper' but is not tagged"),
    ],
)
def test_anything_else_is_a_loud_error(tmp_path, cell, message):
    with pytest.raises(NotebookContractError, match=message):
        load_definitions(notebook_with(tmp_path, cell))


def test_the_notebook_keeps_the_contract_and_defines_in_small_cells():
    load_definitions(NOTEBOOK)
    cells = code_cells(NOTEBOOK)
    assert sum("definitions" in tags for _, tags, _ in cells) > 20
    assert max(len(source.splitlines()) for _, _, source in cells) <= 80
