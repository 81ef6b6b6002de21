"""`import caffe` answered by netdef, for Caffe's and FCN's own Python scripts: opt-in only.

    netdef run solve.py --gpu 0          # runs solve.py as __main__ with `caffe` = netdef

    import netdef.caffe_compat           # or, inside Python (a notebook, a test):
    netdef.caffe_compat.install()
    import caffe                         # netdef, under pycaffe's names

netdef ships no top-level `caffe` package, so installing netdef never changes what
`import caffe` means. install() puts these modules on sys.modules:

  caffe                    every public name of netdef (read from the netdef package when
                           install() runs, so names added to netdef later come along), plus
                           pycaffe's Classifier, Detector, NetSpec, layers (L), params (P),
                           to_proto and the submodules below
  caffe.io                 netdef.io               caffe.draw        netdef.draw
  caffe.coord_map          netdef.coord_map        caffe.net_spec    netdef.net_spec
  caffe.classifier         caffe.detector          caffe.pycaffe     (Net, solvers, ...)
  caffe.proto, caffe.proto.caffe_pb2 = netdef.netdef_pb2 (Caffe's messages and field numbers)

Data-parallel scripts in the style of Caffe's python/train.py (caffe.set_solver_count,
set_solver_rank, set_multiprocess, NCCL(solver, uid).bcast(), solver.add_callback(nccl),
solver.net.after_backward(nccl)) run with the processes started by MPI instead of
multiprocessing: `mpiexec -n 2 netdef run train.py` or `mpiexec -n 2 python train.py`, the rank
of each process being its MPI rank (netdef/solver/parallel.py).

It never shadows a real Caffe silently: when a `caffe` other than this alias is already
imported or importable, install() raises a NetdefError naming it, unless force=True
(`netdef run --force`), which installs the alias and logs a warning naming what it hides.
install() is idempotent; uninstall() removes the alias again. The one implicit use: a Python
layer module that does `import caffe` while no Caffe is installed gets the alias installed for
it (netdef.data.python_layer logs it), since then nothing can be hidden.
"""
import importlib.util
import logging
import sys
import types

from ..errors import NetdefError

log = logging.getLogger("netdef")

#: marks the modules install() makes, so that a second install() recognises them
_MARK = "__netdef_alias__"


def _is_alias(module):
    return module is not None and getattr(module, _MARK, False)


def real_caffe():
    """Where a `caffe` that is not netdef's alias lives (its file or search location), or None."""
    mod = sys.modules.get("caffe")
    if mod is not None:
        return None if _is_alias(mod) else (getattr(mod, "__file__", None) or repr(mod))
    try:
        spec = importlib.util.find_spec("caffe")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    return spec.origin or ", ".join(spec.submodule_search_locations or []) or "caffe"


def _module(name, doc, **attrs):
    m = types.ModuleType(name, doc)
    m.__dict__.update(attrs)
    setattr(m, _MARK, True)
    return m


def _public(module):
    """Every public name of a module: its __all__, plus any other non-underscore attribute
    that is not a submodule (netdef's submodules are the `caffe.*` modules, named apart)."""
    names = set(getattr(module, "__all__", ()))
    names.update(k for k, v in vars(module).items()
                 if not k.startswith("_") and not isinstance(v, types.ModuleType))
    return {k: getattr(module, k) for k in names if hasattr(module, k)}


def build():
    """The alias modules, {module name: module}, without installing them."""
    import netdef

    from . import classifier, coord_map, draw, io, net_spec
    from ..core import netdef_pb2

    proto = _module("caffe.proto", "Caffe's protobuf messages (netdef's netdef_pb2).",
                    caffe_pb2=netdef_pb2, __path__=[])
    names = _public(netdef)
    pycaffe = _module("caffe.pycaffe", "pycaffe's Net and solvers (netdef's).", **names)
    clf = _module("caffe.classifier", "pycaffe's Classifier (netdef.classifier).",
                  Classifier=classifier.Classifier)
    det = _module("caffe.detector", "pycaffe's Detector (netdef.classifier).",
                  Detector=classifier.Detector)
    top = _module("caffe", __doc__, **names)
    top.__dict__.update(
        __path__=[], __file__=__file__, __version__=netdef.__version__,
        Classifier=classifier.Classifier, Detector=classifier.Detector,
        NetSpec=net_spec.NetSpec, layers=net_spec.L, params=net_spec.P, to_proto=net_spec.to_proto,
        io=io, draw=draw, coord_map=coord_map, net_spec=net_spec, proto=proto, pycaffe=pycaffe,
        classifier=clf, detector=det)
    return {"caffe": top, "caffe.proto": proto, "caffe.proto.caffe_pb2": netdef_pb2,
            "caffe.io": io, "caffe.draw": draw, "caffe.coord_map": coord_map,
            "caffe.net_spec": net_spec, "caffe.pycaffe": pycaffe, "caffe.classifier": clf,
            "caffe.detector": det}


def install(force=False):
    """Make `import caffe` (and caffe.io, caffe.proto.caffe_pb2, ...) mean netdef; returns the
    `caffe` module. Refuses (NetdefError) to hide a real Caffe unless force=True."""
    current = sys.modules.get("caffe")
    if _is_alias(current):
        return current
    other = real_caffe()
    if other is not None:
        if not force:
            raise NetdefError(f"a real Caffe is importable ({other}); netdef will not shadow it. "
                              "Run the script with that Caffe, or pass --force (install(force=True)) "
                              "to run it on netdef anyway")
        log.warning("netdef: `import caffe` now means netdef, hiding the Caffe at %s", other)
        for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
            del sys.modules[name]
    modules = build()
    sys.modules.update(modules)
    return modules["caffe"]


def uninstall():
    """Remove the alias modules from sys.modules (a real Caffe is importable again)."""
    if not _is_alias(sys.modules.get("caffe")):
        return
    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        del sys.modules[name]
