"""`netdef parse-log` / netdef.logparse: Caffe's parse_log.py CSV files from glog and plain logs,
checked against hand-written logs and against the losses a real solver reported."""
import csv
import logging
import math

import numpy as np
import pytest

import netdef
from netdef.cli import main
from netdef.logfile import LogFile
from netdef.logparse import parse_lines, parse_log, write_csv
from test_cli_train import NET, SOLVER

GLOG_LOG = """Log file created at: 2025/12/31 23:59:58
Running on machine: host
Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg
I1231 23:59:58.500000  4242 train.py:36] Command line: netdef train s.prototxt
I1231 23:59:59.000000  4242 loop.py:216] Solving tinyseg
I1231 23:59:59.100000  4242 loop.py:355] Iteration 0, Testing net (#0)
I1231 23:59:59.600000  4242 evaluation.py:47]     Test net output #0: accuracy = 0.25
I1231 23:59:59.700000  4242 evaluation.py:47]     Test net output #1: loss = 2.5 (* 1 = 2.5 loss)
I1231 23:59:59.800000  4242 loop.py:367]     Test net #0 segmentation: pixel accuracy = 0.5, mean accuracy = 0.25, mean IU = 0.125, fw IU = 0.375
I0101 00:00:00.000000  4242 loop.py:262] Iteration 0, loss = 3
I0101 00:00:00.000000  4242 evaluation.py:47]     Train net output #0: loss = 3 (* 1 = 3 loss)
I0101 00:00:00.000000  4242 evaluation.py:47]     Train net output #1: aux = 1 (* 0.5 = 0.5 loss)
I0101 00:00:00.000000  4242 loop.py:310] Iteration 0, lr = 0.01
I0101 00:00:02.500000  4242 loop.py:262] Iteration 10, loss = 2
I0101 00:00:02.500000  4242 evaluation.py:47]     Train net output #0: loss = 1.5 (* 1 = 1.5 loss)
I0101 00:00:02.500000  4242 evaluation.py:47]     Train net output #1: aux = 0.5 (* 0.5 = 0.25 loss)
I0101 00:00:02.500000  4242 loop.py:310] Iteration 10, lr = 0.001
I0101 00:00:03.000000  4242 loop.py:355] Iteration 10, Testing net (#0)
I0101 00:00:04.000000  4242 evaluation.py:47]     Test net output #0: accuracy = 0.75
I0101 00:00:04.000000  4242 evaluation.py:47]     Test net output #1: loss = 0.5 (* 1 = 0.5 loss)
I0101 00:00:04.250000  4242 loop.py:367]     Test net #0 segmentation: pixel accuracy = 0.9, mean accuracy = 0.8, mean IU = 0.7, fw IU = 0.85
"""


def test_glog_log_by_hand(tmp_path):
    log = parse_lines(GLOG_LOG.splitlines(), "x.log")
    assert log.timed and log.net_name == "tinyseg" and log.command_line == "netdef train s.prototxt"
    assert log.train_columns == ["NumIters", "Seconds", "LearningRate", "loss", "aux", "SmoothedLoss"]
    # Seconds from the first timestamped line (23:59:58.5), across the new year
    assert log.train == [
        {"NumIters": 0, "Seconds": 1.5, "LearningRate": 0.01, "SmoothedLoss": 3.0, "loss": 3.0, "aux": 1.0},
        {"NumIters": 10, "Seconds": 4.0, "LearningRate": 0.001, "SmoothedLoss": 2.0, "loss": 1.5, "aux": 0.5}]
    assert log.loss_weights == {"loss": 1.0, "aux": 0.5}
    assert log.train_loss() == [(0, 1.5, 3.5), (10, 4.0, 1.75)]
    assert log.test_columns == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss",
                                "pixel_accuracy", "mean_accuracy", "mean_iu", "fw_iu"]
    # a test's rate is the one logged for its iteration (after the test), its time its end
    assert [(r["NumIters"], r["Seconds"], r["LearningRate"], r["accuracy"], r["mean_iu"]) for r in log.test] == \
        [(0, 1.3, 0.01, 0.25, 0.125), (10, 5.75, 0.001, 0.75, 0.7)]

    (tmp_path / "x.log").write_text(GLOG_LOG)
    assert main(["parse-log", str(tmp_path / "x.log"), str(tmp_path), "--delimiter", ";"]) == 0
    rows = list(csv.reader(open(tmp_path / "x.log.train"), delimiter=";"))
    assert rows[0] == ["NumIters", "Seconds", "LearningRate", "loss", "aux", "SmoothedLoss"]
    assert rows[1:] == [["0", "1.5", "0.01", "3.0", "1.0", "3.0"], ["10", "4.0", "0.001", "1.5", "0.5", "2.0"]]
    test = list(csv.reader(open(tmp_path / "x.log.test"), delimiter=";"))
    assert test[2] == ["10", "5.75", "0.001", "0.75", "0.5", "0.9", "0.8", "0.7", "0.85"]


def test_plain_lines_have_no_seconds_and_caffe_lines_parse_too(tmp_path):
    plain = [l.split("] ", 1)[1] for l in GLOG_LOG.splitlines()[3:]]
    log = parse_lines(plain + ["\rprogress 12%|###   | 12/100\rIteration 20, loss = 1.25"])
    assert not log.timed and [r["Seconds"] for r in log.train] == [None] * 3
    assert log.train[-1] == {"NumIters": 20, "Seconds": None, "LearningRate": 0.001, "SmoothedLoss": 1.25}
    write_csv(log, str(tmp_path))
    assert open(tmp_path / "<lines>.train").read().splitlines()[1] == "0,,0.01,3.0,1.0,3.0"
    # Caffe's own line, with its speed, and two test nets
    caffe = ["I0101 00:00:00.000000  1 solver.cpp:218] Iteration 40 (2.5 iter/s, 16s/40 iters), loss = 0.75",
             "I0101 00:00:00.000000  1 solver.cpp:237]     Train net output #0: loss = 0.7 (* 1 = 0.7 loss)",
             "I0101 00:00:00.100000  1 solver.cpp:330] Iteration 40, Testing net (#0)",
             "I0101 00:00:00.200000  1 solver.cpp:397]     Test net output #0: accuracy = 0.5",
             "I0101 00:00:00.300000  1 solver.cpp:330] Iteration 40, Testing net (#1)",
             "I0101 00:00:00.400000  1 solver.cpp:397]     Test net output #0: accuracy = 0.625",
             "I0101 00:00:00.400000  1 solver.cpp:397]     Test net output #1: accuracy = nan"]
    log = parse_lines(caffe)
    assert log.train == [{"NumIters": 40, "Seconds": 0.0, "LearningRate": None, "SmoothedLoss": 0.75, "loss": 0.7}]
    assert log.test_columns[-1] == "TestNet"
    assert [(r["TestNet"], r["accuracy"]) for r in log.test] == [(0, 0.5), (1, 0.625)]
    assert math.isnan(log.test[1]["accuracy_1"])


def test_errors_name_the_file(tmp_path, capsys):
    assert main(["parse-log", str(tmp_path / "missing.log")]) == 1
    assert "missing.log" in capsys.readouterr().err
    (tmp_path / "empty.log").write_text("nothing here\n")
    assert main(["parse-log", str(tmp_path / "empty.log")]) == 1
    assert "empty.log" in capsys.readouterr().err
    assert main(["parse-log", str(tmp_path / "empty.log"), str(tmp_path / "nodir")]) == 1
    assert "nodir" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real run from Python with a LogFile attached: (solver, parsed log, log path)."""
    root = tmp_path_factory.mktemp("run")
    mp = pytest.MonkeyPatch()
    mp.setenv("NETDEF_DATA_DIR", str(root / "data"))
    (root / "train.prototxt").write_text(NET)
    (root / "snapshots").mkdir()
    text = SOLVER.format(test_interval=4, base_lr=0.05, display=2, max_iter=8, snapshot=0) + "average_loss: 3\n"
    (root / "solver.prototxt").write_text(text)
    netdef.set_mode_cpu()
    solver = netdef.get_solver(str(root / "solver.prototxt"))
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = logging.getLogger("netdef")
    logger.addHandler(handler)
    try:
        with LogFile(root / "run.log", command_line="pytest"):
            solver.solve()
    finally:
        logger.removeHandler(handler)
        solver.close()
        mp.undo()
    return solver, parse_log(root / "run.log"), root / "run.log", records


def test_csv_has_the_losses_the_solver_reported(trained, tmp_path):
    solver, log, path, records = trained
    raw = np.array(solver.losses)
    assert len(raw) == 8
    train = [r for r in log.train if "loss" in r]
    assert [r["NumIters"] for r in train] == [0, 2, 4, 6]
    # Train net output = that iteration's loss; SmoothedLoss = mean of the last average_loss (3)
    np.testing.assert_allclose([r["loss"] for r in train], raw[[0, 2, 4, 6]], rtol=1e-5)
    smoothed = [raw[max(0, i - 2):i + 1].mean() for i in (0, 2, 4, 6)]
    np.testing.assert_allclose([r["SmoothedLoss"] for r in train], smoothed, rtol=1e-5)
    assert [r["LearningRate"] for r in log.train] == [0.05] * len(log.train)
    assert all(0 <= r["Seconds"] for r in log.train) and \
        [r["Seconds"] for r in log.train] == sorted(r["Seconds"] for r in log.train)
    # the test rows carry the values the solver logged
    logged = [float(m.split(" = ")[1].split()[0]) for m in records if "Test net output #0: loss" in m]
    assert [r["NumIters"] for r in log.test] == [0, 4, 8]
    assert [r["loss"] for r in log.test] == logged
    mean_iu = [float(m.split("mean IU = ")[1].split(",")[0]) for m in records if "segmentation:" in m]
    assert [r["mean_iu"] for r in log.test] == mean_iu
    paths = write_csv(log, str(tmp_path))
    header = open(paths[0]).readline().strip().split(",")
    assert header == ["NumIters", "Seconds", "LearningRate", "loss", "SmoothedLoss"]


def test_plot_of_the_real_run_has_its_losses(trained, tmp_path):
    pytest.importorskip("matplotlib")
    solver, log, path, records = trained
    out = tmp_path / "curves.png"
    assert main(["plot", str(path), "-o", str(out)]) == 0 and out.stat().st_size > 0
    from netdef.plot import plot_logs

    axes = {ax.get_title(): ax for ax in plot_logs([log]).axes}
    assert set(axes) == {"train loss", "learning rate", "test net output: loss", "test segmentation metrics"}
    raw = axes["train loss"].get_lines()[0]
    assert list(raw.get_xdata()) == [0, 2, 4, 6]
    np.testing.assert_allclose(raw.get_ydata(), np.array(solver.losses)[[0, 2, 4, 6]], rtol=1e-5)
