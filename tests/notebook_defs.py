"""Import the notebook's own definitions, so the tests exercise exactly the code users run.

Every code cell is parsed and only its top-level imports, functions, classes and UPPER_CASE constants
(values built from literals alone)
are executed: the cells that train or sample are skipped.
"""

import ast
import json
import linecache
import types
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "Diffusion_LLM_from_Scratch_TinyStories.ipynb"


def is_definition(node):
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Assign):
        targets = [n for t in node.targets for n in ast.walk(t) if isinstance(n, (ast.Name, ast.Attribute))]
        constant = not any(isinstance(n, (ast.Call, ast.Name)) for n in ast.walk(node.value))
        return all(isinstance(t, ast.Name) and t.id.isupper() for t in targets) and constant
    return False


def code_cells(path=NOTEBOOK):
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def load_definitions(path=NOTEBOOK):
    module = types.ModuleType("notebook")
    for number, source in enumerate(code_cells(path), 1):
        name = f"{path.name}, code cell {number}"
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)  # tracebacks show the cell's lines
        tree = ast.parse(source)
        tree.body = [node for node in tree.body if is_definition(node)]
        exec(compile(tree, name, "exec"), module.__dict__)
    return module
