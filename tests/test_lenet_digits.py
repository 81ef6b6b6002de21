"""examples/lenet-digits end to end, shortened: scikit-learn's digits through
`netdef convert-imageset` into LMDB, then Caffe's LeNet files (the example's copies, with the
paths pointed at a temporary directory and max_iter cut) trained by the solver."""
import importlib.util
import os
import re

import pytest

import netdef

pytest.importorskip("lmdb", reason="the example's databases need lmdb (pip install 'netdef[lmdb]')")
pytest.importorskip("sklearn", reason="the example's digits come from scikit-learn (pip install scikit-learn)")

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "lenet-digits")
ITERATIONS = 60


def _module():
    spec = importlib.util.spec_from_file_location("create_digits", os.path.join(EXAMPLE, "create_digits.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lenet_learns_the_digits_from_lmdb(tmp_path):
    n_train, n_test = _module().create(str(tmp_path))
    assert (n_train, n_test) == (1497, 300)
    net = open(os.path.join(EXAMPLE, "lenet_train_test.prototxt")).read()
    assert net.count("examples/lenet-digits/digits_") == 2
    (tmp_path / "net.prototxt").write_text(net.replace("examples/lenet-digits/", f"{tmp_path}/"))
    solver = open(os.path.join(EXAMPLE, "lenet_solver.prototxt")).read()
    solver = solver.replace("examples/lenet-digits/lenet_train_test.prototxt", f"{tmp_path}/net.prototxt")
    solver = re.sub(r"max_iter: \d+", f"max_iter: {ITERATIONS}", solver)
    # Caffe tests at the end only when max_iter is a multiple of test_interval
    solver = re.sub(r"test_interval: \d+", f"test_interval: {ITERATIONS}", solver)
    solver = solver.replace('snapshot_prefix: "examples/lenet-digits/lenet"', f'snapshot_prefix: "{tmp_path}/lenet"')
    (tmp_path / "solver.prototxt").write_text(solver + "test_initialization: false\nrandom_seed: 1\n")
    s = netdef.get_solver(str(tmp_path / "solver.prototxt"))
    results = []
    s.add_test_callback(lambda i, r: results.append(dict(r.outputs)))
    try:
        s.solve()
    finally:
        s.close()
    assert len(results) == 1
    assert results[0]["accuracy"] >= 0.85, results
    assert os.path.exists(tmp_path / f"lenet_iter_{ITERATIONS}.caffemodel")
