"""pycaffe's module level (caffe.Timer, init_log / log, layer_type_list, the solver count and
rank, NCCL) and the Solver as a Python script drives it (`solver = caffe.SGDSolver(...);
solver.step(n)` printing Caffe's lines on stderr, apply_update's iteration semantics)."""
import logging
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import netdef

NET = """name: "lin"
layer { name: "data" type: "DummyData" top: "x" top: "y"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                           data_filler { type: "constant" value: 0.5 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
        inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }
"""
SOLVER = 'net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "step" gamma: 0.5 stepsize: 1\n' \
         'display: 1\nmax_iter: 3\nsnapshot_after_train: false\n'


def test_timer_as_pycaffe():
    t = netdef.Timer()
    assert t.ms == 0.0  # never started: 0, as Caffe (with a warning)
    t.start()
    time.sleep(0.02)
    t.stop()
    assert 15 < t.ms < 1000
    assert abs(t.Seconds() - t.ms / 1e3) < 1e-12 and t.MilliSeconds() == t.ms
    t.start()
    time.sleep(0.01)
    first = t.ms  # reading a running timer stops it
    assert not t.running and t.ms == first


def test_layer_type_list_sorted_as_caffes_registry():
    types = netdef.layer_type_list()
    assert types == sorted(types) and set(types) == set(netdef.known_types())
    assert "Convolution" in types and "SoftmaxWithLoss" in types


# The 61 types BVLC Caffe 1.0's layer registry holds (REGISTER_LAYER_CLASS / REGISTER_LAYER_CREATOR
# in src/caffe/layers/ and layer_factory.cpp), written out here as the independent record.
CAFFE_TYPES = """
AbsVal Accuracy ArgMax BNLL BatchNorm BatchReindex Bias Clip Concat ContrastiveLoss Convolution
Crop Data Deconvolution Dropout DummyData ELU Eltwise Embed EuclideanLoss Exp Filter Flatten
HDF5Data HDF5Output HingeLoss Im2col ImageData InfogainLoss InnerProduct Input LRN LSTM LSTMUnit
Log MVN MemoryData MultinomialLogisticLoss PReLU Parameter Pooling Power Python RNN ReLU
Reduction Reshape SPP Scale Sigmoid SigmoidCrossEntropyLoss Silence Slice Softmax
SoftmaxWithLoss Split Swish TanH Threshold Tile WindowData
""".split()


def test_layer_type_list_holds_every_type_caffe_registers():
    assert len(set(CAFFE_TYPES)) == 61
    missing = sorted(set(CAFFE_TYPES) - set(netdef.layer_type_list()))
    assert not missing, f"Caffe layer types netdef lacks: {missing}"
    assert "Interp" in netdef.layer_type_list()  # DeepLab's, beyond Caffe


def test_solver_count_and_nccl_for_one_process(tmp_path):
    assert netdef.solver_count() == 1 and netdef.solver_rank() == 0 and netdef.has_nccl() is False
    netdef.set_solver_count(1)
    netdef.set_solver_rank(0)
    netdef.set_multiprocess(False)
    with pytest.raises(netdef.NetdefError, match="needs 2 MPI processes"):
        netdef.set_solver_count(2)  # the processes are MPI's (tests/test_parallel_mpi.py)
    with pytest.raises(netdef.NetdefError, match="rank 1"):
        netdef.set_solver_rank(1)
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    solver = netdef.SGDSolver(str(tmp_path / "solver.prototxt"))
    nccl = netdef.NCCL(solver, netdef.NCCL.new_uid())
    nccl.bcast()
    solver.add_callback(nccl)
    solver.step(2)
    assert solver.iter == 2


def test_init_log_levels():
    logger = logging.getLogger("netdef")
    old = logger.level
    try:
        netdef.init_log(1)
        assert logger.level == logging.WARNING
        netdef.init_log(0)
        assert logger.level == logging.INFO
        with pytest.raises(netdef.NetdefError, match="level"):
            netdef.init_log(7)
    finally:
        logger.setLevel(old)


def _script(tmp_path, body):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    (tmp_path / "solve.py").write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(netdef.__file__)))
    return subprocess.run([sys.executable, "solve.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)


def test_solve_py_prints_caffes_lines_on_stderr(tmp_path):
    r = _script(tmp_path, """
        import netdef
        solver = netdef.SGDSolver('solver.prototxt')
        solver.step(2)
        netdef.log('done here')
        print('iter', solver.iter)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "iter 2"
    lines = [l for l in r.stderr.splitlines() if "Iteration 1, loss = " in l]
    assert len(lines) == 1 and lines[0].startswith("I")  # glog's prefix: level letter, date
    assert "] Iteration 1, loss = " in lines[0]
    assert r.stderr.count("Iteration 0, lr = 0.1") == 1
    assert "] done here" in r.stderr


def test_configured_logging_gets_the_lines_once(tmp_path):
    r = _script(tmp_path, """
        import logging, sys
        import netdef
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        solver = netdef.SGDSolver('solver.prototxt')
        solver.step(2)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Iteration 1, loss = ") == 1
    assert "Iteration" not in r.stderr


def test_logging_configured_after_the_solver_is_not_doubled(tmp_path):
    r = _script(tmp_path, """
        import logging, sys
        import netdef
        solver = netdef.SGDSolver('solver.prototxt')
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        solver.step(2)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Iteration 1, loss = ") == 1
    assert "Iteration 1" not in r.stderr


def test_apply_update_leaves_iter_and_diffs(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    solver = netdef.SGDSolver(str(tmp_path / "solver.prototxt"), dtype=np.float64)
    net = solver.net
    assert solver.test_nets == [] and solver.param.base_lr == pytest.approx(0.1)
    w0 = net.params["fc"][0].data.copy()
    net.clear_param_diffs()
    net.forward()
    net.backward()
    grad = net.params["fc"][0].diff.copy()
    solver.apply_update()
    assert solver.iter == 0  # as Caffe's ApplyUpdate: step() advances the iteration
    np.testing.assert_allclose(net.params["fc"][0].data, w0 - 0.1 * grad, rtol=1e-7)
    solver.iter += 1  # the step policy (stepsize 1) now halves the rate
    w1 = net.params["fc"][0].data.copy()
    net.clear_param_diffs()
    net.forward()
    net.backward()
    grad = net.params["fc"][0].diff.copy()
    solver.apply_update()
    np.testing.assert_allclose(net.params["fc"][0].data, w1 - 0.05 * grad, rtol=1e-7)


def test_solver_snapshot_restore_and_share_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER + 'snapshot_prefix: "snap/lin"\n')
    (tmp_path / "snap").mkdir()
    solver = netdef.SGDSolver("solver.prototxt")
    solver.step(2)
    state = solver.snapshot()
    assert os.path.isfile("snap/lin_iter_2.caffemodel") and state.endswith("snap/lin_iter_2.solverstate")
    other = netdef.SGDSolver("solver.prototxt")
    other.restore(state)
    assert other.iter == 2
    np.testing.assert_array_equal(other.net.params["fc"][0].data, solver.net.params["fc"][0].data)
    deploy = netdef.Net(NET, netdef.TEST)
    solver.share_weights(deploy)
    np.testing.assert_array_equal(deploy.params["fc"][0].data, solver.net.params["fc"][0].data)
    other.solve()
    assert other.iter == 3


def test_progress_bar_and_default_logging_print_each_line_once(tmp_path):
    r = _script(tmp_path, """
        import netdef
        netdef.SGDSolver('solver.prototxt').solve(progress=True)
    """)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if "Iteration 1, loss = " in l]
    assert len(lines) == 1 and "] Iteration 1, loss = " in lines[0]


def test_hdf5_snapshots_in_caffes_layout_resume_exactly(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET.replace('"constant" value: 0.5', '"gaussian"'))
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.05\nlr_policy: "step" gamma: 0.5 stepsize: 2\n'
        'momentum: 0.9\nmax_iter: 6\nsnapshot: 3\nsnapshot_format: HDF5\nrandom_seed: 5\n'
        'snapshot_prefix: "h"\nsnapshot_after_train: false\n')
    full = netdef.SGDSolver("solver.prototxt", dtype=np.float64)
    full.solve(progress=False)
    with h5py.File("h_iter_3.solverstate.h5", "r") as f:
        assert int(f["iter"][()]) == 3 and int(f["current_step"][()]) == 1
        assert f["learned_net"][()].decode() == "h_iter_3.caffemodel.h5"
        assert sorted(f["history"]) == ["0", "1"]
    with h5py.File("h_iter_3.caffemodel.h5", "r") as f:
        assert sorted(f["data/fc"]) == ["0", "1"]
    resumed = netdef.SGDSolver("solver.prototxt", dtype=np.float64)
    resumed.solve("h_iter_3.solverstate.h5", progress=False)
    assert resumed.iter == 6 and resumed.losses == full.losses[3:]
    np.testing.assert_array_equal(resumed.net.params["fc"][0].data, full.net.params["fc"][0].data)
