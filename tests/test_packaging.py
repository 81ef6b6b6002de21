"""setup.py lists every subpackage of netdef/: a non-editable `pip install .` (the README's main
job) would otherwise install a tree without it, while the editable install the tests run on
would not notice."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_packages():
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "packages":
            return set(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no packages=[...] list")


def test_setup_lists_every_subpackage():
    found = set()
    for root, dirs, files in os.walk(os.path.join(ROOT, "netdef")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" in files:
            found.add(os.path.relpath(root, ROOT).replace(os.sep, "."))
    missing = found - _setup_packages()
    assert not missing, f"setup.py's packages lack {sorted(missing)}"
