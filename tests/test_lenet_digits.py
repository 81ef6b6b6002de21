"""examples/lenet-digits end to end, shortened: scikit-learn's digits through
`netdef convert-imageset` into LMDB, then Caffe's LeNet files (the example's copies, with the
paths pointed at a temporary directory and max_iter cut) trained by the solver."""
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import netdef

pytest.importorskip("lmdb", reason="the example's databases need lmdb (pip install 'netdef[lmdb]')")
if importlib.util.find_spec("sklearn") is None:
    pytest.skip("the example's digits come from scikit-learn (pip install scikit-learn)", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "lenet-digits")
ITERATIONS = 60


def test_lenet_learns_the_digits_from_lmdb(tmp_path):
    # As a user runs it, and so that scikit-learn (and the OpenBLAS of its scipy) stays out of
    # the test process.
    subprocess.run([sys.executable, os.path.join(EXAMPLE, "create_digits.py"), "--out", str(tmp_path)],
                   check=True, cwd=ROOT)
    assert len((tmp_path / "train.txt").read_text().splitlines()) == 1497
    assert len((tmp_path / "test.txt").read_text().splitlines()) == 300
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
    accuracy = float(np.ravel(results[0]["accuracy"])[0])
    assert accuracy >= 0.85, f"test accuracy {accuracy} after {ITERATIONS} iterations"
    assert os.path.exists(tmp_path / f"lenet_iter_{ITERATIONS}.caffemodel")
