"""The `caffe` tool's spellings on `netdef`: --solver / --model options beside the positional
file, gflags' single-dash forms of the long options, and --gpu's forms (one device id; 'all'
and lists ask for several GPUs, which only `netdef train` takes: data-parallel training)."""
import os
import subprocess
import sys

import pytest

import netdef
from netdef import cli
from netdef.commands._common import gpu_id

NET = """name: "lin"
layer { name: "data" type: "DummyData" top: "x" top: "y"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                           data_filler { type: "gaussian" } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }
"""


def parse(*argv):
    parser = cli.build_parser()
    return parser.parse_args(cli.caffe_spellings(list(argv), cli.long_options(parser)))


@pytest.mark.parametrize("argv", [
    ["train", "s.prototxt"],
    ["train", "--solver=s.prototxt"],
    ["train", "--solver", "s.prototxt"],
    ["train", "-solver", "s.prototxt"],
    ["train", "-solver=s.prototxt"],
])
def test_train_solver_spellings(argv):
    args = parse(*argv)
    from netdef.commands._common import file_argument
    assert file_argument(args, "solver", "solver") == "s.prototxt"


def test_gflags_single_dash_forms_of_known_options():
    args = parse("train", "-solver", "s", "-weights", "w.caffemodel", "-gpu", "0")
    assert (args.solver_option, args.weights, args.gpu) == ("s", "w.caffemodel", "0")
    args = parse("train", "-solver=s", "-snapshot=x.solverstate", "-gpu=1")
    assert (args.snapshot, args.gpu) == ("x.solverstate", "1")
    args = parse("test", "-model", "m", "-weights", "w", "-iterations", "7")
    assert (args.model_option, args.weights, args.iterations) == ("m", "w", 7)
    args = parse("test", "--model=m", "--weights=w", "--iterations=3")
    assert (args.model_option, args.iterations) == ("m", 3)
    args = parse("time", "-model=m", "-iterations", "2", "-phase", "test")
    assert (args.model_option, args.iterations, args.phase) == ("m", 2, "test")
    # negative numbers and unknown names are left to argparse
    args = parse("test", "m", "--weights", "w", "--ignore-label", "-1")
    assert args.ignore_label == -1
    with pytest.raises(SystemExit):
        parse("test", "m", "--weights", "w", "-nosuchflag")


def test_file_given_twice_or_never_is_a_clear_error(capsys):
    assert cli.main(["time"]) == 1
    assert "no model given" in capsys.readouterr().err
    assert cli.main(["train", "a.prototxt", "--solver=b.prototxt"]) == 1
    assert "two solvers given" in capsys.readouterr().err


def test_gpu_forms():
    assert gpu_id("0") == 0 and gpu_id("3") == 3 and gpu_id("2,2") == 2
    with pytest.raises(netdef.NetdefError, match="several GPUs"):
        gpu_id("0,1")
    with pytest.raises(netdef.NetdefError, match="device id"):
        gpu_id("zero")
    with pytest.raises(netdef.NetdefError, match=">= 0"):
        gpu_id("-1")
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        count = 0
    if count == 1:
        assert gpu_id("all") == 0
    else:
        with pytest.raises(netdef.NetdefError, match="no GPU|several GPUs"):
            gpu_id("all")


def _run(cwd, *argv):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(netdef.__file__)))
    return subprocess.run([sys.executable, "-m", "netdef.cli", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


def test_caffe_commands_end_to_end(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\ndisplay: 1\nmax_iter: 2\n'
        'snapshot_prefix: "lin"\n')
    r = _run(tmp_path, "train", "-solver", "solver.prototxt", "-cpu")
    assert r.returncode == 0, r.stderr
    assert "Iteration 1, loss = " in r.stdout and (tmp_path / "lin_iter_2.caffemodel").is_file()
    r = _run(tmp_path, "test", "-model=net.prototxt", "-weights", "lin_iter_2.caffemodel",
             "-iterations", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Batch ") == 2 and "loss = " in r.stdout
    r = _run(tmp_path, "time", "--model=net.prototxt", "--iterations=1")
    assert r.returncode == 0, r.stderr
    assert "Average Forward-Backward" in r.stdout
    r = _run(tmp_path, "train", "--solver=solver.prototxt", "--gpu", "0,1")
    assert r.returncode == 1 and "--gpu 0,1" in r.stderr and "Traceback" not in r.stderr
