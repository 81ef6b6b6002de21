"""The library does not depend on its command line: no module of netdef/ but cli.py, __main__.py
and commands/ imports netdef.cli or netdef.commands, and importing the library loads neither."""
import ast
import os
import subprocess
import sys

import netdef

PACKAGE = os.path.dirname(netdef.__file__)
COMMAND_LINE = ("netdef.cli", "netdef.commands", "netdef.__main__")


def _module_name(path):
    rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-len(".py")].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _library_modules():
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "commands")]
        for f in sorted(files):
            if f.endswith(".py"):
                name = _module_name(os.path.join(root, f))
                if not name.startswith(COMMAND_LINE):
                    yield name, os.path.join(root, f)


def _imports(name, path):
    """Absolute names of the modules a file imports (relative imports resolved; for `from X
    import a`, both X and X.a, since a may be a module)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = node.module or ""
            if node.level:
                mod = f"{base}.{mod}" if mod else base
            yield mod
            yield from (f"{mod}.{a.name}" for a in node.names)


def test_no_library_module_imports_the_command_line():
    modules = list(_library_modules())
    assert any(n == "netdef.solver.loop" for n, _ in modules)  # the walk sees subpackages
    bad = [f"{name} imports {imp}" for name, path in modules for imp in _imports(name, path)
           if imp.startswith(COMMAND_LINE)]
    assert not bad, bad


def test_importing_the_library_loads_no_command_line():
    names = [n for n, _ in _library_modules() if n != "netdef.netdef_pb2"] + ["netdef.netdef_pb2"]
    code = ("import importlib, sys\n"
            f"for n in {names!r}:\n"
            "    try:\n"
            "        importlib.import_module(n)\n"
            "    except ImportError as e:\n"  # optional extras (cupy, mpi4py) may be missing
            "        if not (e.name or '').split('.')[0] in ('cupy', 'mpi4py', 'cupyx'):\n"
            "            raise\n"
            "print(sorted(m for m in sys.modules if m.startswith(('netdef.cli', 'netdef.commands'))))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_python_dash_m_netdef(tmp_path):
    p = tmp_path / "net.prototxt"
    p.write_text('name: "m" layer { name: "data" type: "Input" top: "data" '
                 'input_param { shape { dim: 1 dim: 2 } } }')
    res = subprocess.run([sys.executable, "-m", "netdef", "info", str(p)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split()[:2] == ["layer", "type"]
    assert "1 layers, 0 learnable parameters, phase TEST" in res.stdout
    res = subprocess.run([sys.executable, "-m", "netdef", "info", str(tmp_path / "none.prototxt")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.startswith("netdef info: error: ")


def test_public_solver_names():
    import netdef.solver as s

    for name in ("Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
                 "AdaDeltaSolver", "AdamSolver", "get_solver"):
        assert getattr(netdef, name) is getattr(s, name)
    assert set(s.SOLVERS) == {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"}
