"""Caffe's path semantics for a solver file: net, train_net, test_net, weights and
snapshot_prefix are relative to the current directory (Caffe's examples run from the repository
root); netdef falls back to the solver file's directory, saying so, when the path is only there."""
import logging
import os

import pytest

import netdef

NET = """name: "{name}"
layer {{ name: "data" type: "DummyData" top: "x" top: "y"
        dummy_data_param {{ shape {{ dim: 2 dim: 3 }} shape {{ dim: 2 dim: {out} }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
        inner_product_param {{ num_output: {out} weight_filler {{ type: "gaussian" }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }}
"""


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """tmp/examples/m/solver.prototxt and net.prototxt; cwd: tmp (the "repository root")."""
    d = tmp_path / "examples" / "m"
    d.mkdir(parents=True)
    (d / "net.prototxt").write_text(NET.format(name="beside", out=2))
    monkeypatch.chdir(tmp_path)

    def solver(text):
        (d / "solver.prototxt").write_text(text + '\nbase_lr: 0.01 lr_policy: "fixed" max_iter: 1\n')
        return netdef.SGDSolver("examples/m/solver.prototxt")
    return tmp_path, d, solver


def test_net_path_is_relative_to_the_current_directory(layout):
    root, d, solver = layout
    (root / "examples" / "m" / "net.prototxt").rename(root / "examples" / "m" / "beside.prototxt")
    s = solver('net: "examples/m/beside.prototxt"')  # as Caffe's lenet_solver names its net
    assert s.net.name == "beside"


def test_the_current_directory_wins_over_the_solver_directory(layout):
    root, d, solver = layout
    (root / "net.prototxt").write_text(NET.format(name="cwd", out=2))
    assert solver('net: "net.prototxt"').net.name == "cwd"


def test_fallback_next_to_the_solver_is_logged(layout, caplog):
    root, d, solver = layout
    with caplog.at_level(logging.INFO, logger="netdef"):
        s = solver('train_net: "net.prototxt"\ntest_net: "net.prototxt"\ntest_iter: 1')
    assert s.net.name == "beside" and s.test_nets[0].name == "beside"
    msgs = [r.getMessage() for r in caplog.records if "not in the current directory" in r.getMessage()]
    assert len(msgs) == 2 and str(d / "net.prototxt") in msgs[0]


def test_missing_everywhere_names_the_cwd_path(layout):
    root, d, solver = layout
    with pytest.raises(netdef.NetdefError, match="nowhere.prototxt"):
        solver('net: "nowhere.prototxt"')


def test_weights_are_relative_to_the_current_directory(layout):
    root, d, solver = layout
    src = netdef.Net(str(d / "net.prototxt"), netdef.TRAIN)
    src.save(str(root / "w.caffemodel"))
    s = solver('net: "net.prototxt"\nweights: "w.caffemodel"')
    assert (s.net.params["fc"][0].data == src.params["fc"][0].data).all()


def test_snapshot_prefix_relative_to_the_current_directory(layout):
    root, d, solver = layout
    (root / "snaps").mkdir()
    (d / "snaps").mkdir()
    s = solver('net: "net.prototxt"\nsnapshot_prefix: "snaps/run"')
    s.step(1)
    s.snapshot()
    assert (root / "snaps" / "run_iter_1.caffemodel").is_file()
    assert not (d / "snaps" / "run_iter_1.caffemodel").exists()


def test_snapshot_prefix_without_directory_goes_to_the_current_directory(layout):
    root, d, solver = layout
    s = solver('net: "net.prototxt"\nsnapshot_prefix: "fcn"')  # as netdef's models/*/solver
    s.step(1)
    s.snapshot()
    assert (root / "fcn_iter_1.solverstate").is_file()


def test_snapshot_prefix_directory_only_next_to_the_solver(layout, caplog):
    root, d, solver = layout
    (d / "snapshot").mkdir()
    with caplog.at_level(logging.INFO, logger="netdef"):
        s = solver('net: "net.prototxt"\nsnapshot_prefix: "snapshot/train"')  # FCN's solvers
        s.step(1)
        s.snapshot()
    assert (d / "snapshot" / "train_iter_1.caffemodel").is_file()
    assert any("next to the solver file" in r.getMessage() and "snapshot/train" in r.getMessage()
               for r in caplog.records)


def test_snapshot_prefix_naming_a_directory_gets_the_solver_name(layout):
    root, d, solver = layout
    (root / "out").mkdir()
    s = solver('net: "net.prototxt"\nsnapshot_prefix: "out"')  # Caffe: is_directory -> dir/stem
    assert s.snapshot_prefix == os.path.join("out", "solver")
    s = solver('net: "net.prototxt"\nsnapshot_prefix: "out/"')
    assert s.snapshot_prefix == os.path.join("out", "solver")


def test_no_snapshot_prefix_is_the_solver_path_without_extension(layout):
    root, d, solver = layout
    s = solver('net: "net.prototxt"')
    assert s.snapshot_prefix == os.path.join("examples", "m", "solver")


def test_snapshot_directory_nowhere_is_refused(layout):
    root, d, solver = layout
    with pytest.raises(netdef.TrainingError, match="'nodir'"):
        solver('net: "net.prototxt"\nsnapshot: 1\nsnapshot_prefix: "nodir/x"')
