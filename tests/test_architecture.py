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


def _is_module(dotted):
    import importlib.util
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


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
            # `from .. import _cpu_kernels` imports the submodule; the package itself counts
            # only when a name is not one of its modules (`from .. import __version__`)
            if not all(_is_module(f"{mod}.{a.name}") for a in node.names):
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


# The direction of imports between netdef's parts, in one place. A part may import the parts
# listed for it (and itself), nothing else: the graph core (core, layers, data: the Net builds
# layers, layers and data layers build on core's Layer and Blob) sits on the backend and
# errors; the solver on the core; the tools (fcn, pycaffe, watch, onnx) on both; the command
# line on everything (checked above).
_BASE = {"errors", "_version", "_cpu_kernels", "kernels"}
_GRAPH = _BASE | {"backend", "core", "layers", "data"}
ALLOWED = {
    "errors": set(), "_version": set(), "kernels": set(),
    "backend": _BASE,
    "core": _GRAPH, "layers": _GRAPH,
    # data layers may use FCN's metrics / pycaffe's io transforms / the solver's rank sharding
    "data": _GRAPH | {"fcn", "pycaffe", "solver"},
    "solver": _GRAPH | {"fcn", "watch"},
    "fcn": _GRAPH | {"pycaffe"},
    "pycaffe": _GRAPH | {"fcn"},
    "watch": _GRAPH | {"fcn"},
    "onnx": _GRAPH | {"fcn"},
}
# Cycles inside one package between a package's __init__ and its modules, through imports
# made inside functions; any other cycle fails the test below.
KNOWN_CYCLES = [
    {"netdef.backend", "netdef.backend.cpu", "netdef.backend.cuda", "netdef.backend.gpu_policy"},
    {"netdef.solver.distributed", "netdef.solver.parallel"},
]


def _part(module):
    return module.split(".")[1] if module.count(".") else "netdef"


def _edges():
    modules = dict(_library_modules())
    edges = {n: set() for n in modules}
    for name, path in modules.items():
        for imp in _imports(name, path):
            if imp in modules and imp != name:
                edges[name].add(imp)
    return edges


def test_parts_import_only_downward():
    bad = [f"{a} imports {b}" for a, targets in _edges().items() for b in targets
           if b != "netdef" and _part(a) in ALLOWED and _part(b) != _part(a)
           and _part(b) not in ALLOWED[_part(a)]]
    assert not bad, bad


def test_no_library_module_imports_the_top_level_package():
    # netdef/__init__ gathers the public API; caffe_compat builds the `caffe` alias from it
    modules = dict(_library_modules())
    bad = [name for name, path in modules.items() if name not in ("netdef", "netdef.pycaffe.caffe_compat")
           and "netdef" in set(_imports(name, path))]
    assert not bad, bad


def test_no_new_import_cycle():
    edges = _edges()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    new = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not new, new
