"""Import the notebook's own definitions, so the tests exercise exactly the code users run.

The notebook says which cells are which: a code cell tagged `definitions` only defines things (imports, functions,
classes, UPPER_CASE constants) and is executed here whole; every other code cell runs something (loads data, trains,
samples) and is skipped. Anything else in a definitions cell, or a function or class defined in a cell that is not
tagged, is an error that names the cell, so a definition can never be skipped silently.
"""

import ast
import importlib.util
import itertools
import json
import linecache
import sys
import types
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent / "Diffusion_LLM_from_Scratch_TinyStories.ipynb"
BENCHMARKS = NOTEBOOK.parent / "benchmarks"
DEFINITIONS = "definitions"


class NotebookContractError(Exception):
    pass


def is_definition(node):
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [n for t in targets for n in ast.walk(t) if isinstance(n, (ast.Name, ast.Attribute, ast.Subscript))]
        return all(isinstance(n, ast.Name) and n.id.isupper() for n in names)
    return False


def code_cells(path=NOTEBOOK):
    """(cell id, tags, source) of every code cell."""
    cells = json.loads(path.read_text())["cells"]
    return [
        (c.get("id", str(i)), c.get("metadata", {}).get("tags", []), "".join(c["source"]))
        for i, c in enumerate(cells)
        if c["cell_type"] == "code"
    ]


def check_contract(cell_id, tags, tree):
    """Raise unless a definitions cell holds only definitions and any other cell defines no function or class."""
    for node in tree.body:
        if DEFINITIONS in tags and not is_definition(node):
            raise NotebookContractError(
                f"Cell {cell_id!r} is tagged {DEFINITIONS!r} but line {node.lineno} runs something "
                f"({ast.unparse(node).splitlines()[0]!r}): move it to a cell without the tag."
            )
        if DEFINITIONS not in tags and isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            raise NotebookContractError(
                f"Cell {cell_id!r} defines {node.name!r} but is not tagged {DEFINITIONS!r}, so the tests cannot "
                "import it: move the definition to a definitions cell."
            )


COPIES = itertools.count()


def load_definitions(path=NOTEBOOK):
    """A fresh module holding the definitions cells' names. Each call makes a new copy, registered in sys.modules
    under a name of its own (torch.compile looks classes up there by their __module__)."""
    module = types.ModuleType(f"notebook_{next(COPIES)}")
    sys.modules[module.__name__] = module
    for cell_id, tags, source in code_cells(path):
        tree = ast.parse(source)
        check_contract(cell_id, tags, tree)
        if DEFINITIONS in tags:
            name = f"{path.name}, cell {cell_id}"
            linecache.cache[name] = (len(source), None, source.splitlines(True), name)  # tracebacks show the cell
            exec(compile(tree, name, "exec"), module.__dict__)
    return module


def load_benchmark(name):
    """benchmarks/<name>.py as a module, for the tests of its functions (its main() is not run)."""
    sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import their common module
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
