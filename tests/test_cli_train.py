"""`netdef train`, `netdef test`, `netdef time` end to end, on a small conv net over the built-in
synthetic segmentation set: Caffe's log line formats, exact resume across processes, signals,
fine-tuning, errors; and the loss falling on the synthetic set."""
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest

import netdef

NET = """name: "tinyseg"
layer { name: "data" type: "SegmentationData" top: "data" top: "label"
  include { phase: TRAIN }
  transform_param { mirror: true }
  segmentation_data_param { synthetic: "shapes" split: "train" batch_size: 4 synthetic_size: 32
                            synthetic_train: 40 synthetic_val: 8 synthetic_classes: 3 }
}
layer { name: "data" type: "SegmentationData" top: "data" top: "label"
  include { phase: TEST }
  segmentation_data_param { synthetic: "shapes" split: "val" batch_size: 4 synthetic_size: 32
                            synthetic_train: 40 synthetic_val: 8 synthetic_classes: 3 }
}
layer { name: "scale" type: "Power" bottom: "data" top: "scaled" power_param { scale: 0.0125 } }
layer { name: "conv1" type: "Convolution" bottom: "scaled" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "drop1" type: "Dropout" bottom: "conv1" top: "conv1" dropout_param { dropout_ratio: 0.2 } }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2 weight_filler { type: "msra" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "score" type: "Convolution" bottom: "conv2" top: "score"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "msra" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
  loss_param { ignore_label: 255 } }
"""

SOLVER = """net: "train.prototxt"
test_iter: 2
test_interval: {test_interval}
base_lr: {base_lr}
lr_policy: "step"
gamma: 0.5
stepsize: 15
momentum: 0.9
weight_decay: 0.0005
display: {display}
max_iter: {max_iter}
snapshot: {snapshot}
snapshot_prefix: "snapshots/tiny"
random_seed: 3
"""

NUM = r"[-+]?(?:\d+\.?\d*(?:e[-+]\d+)?|inf|nan)"
CAFFE_LINES = [
    r"Use CPU\.",
    # netdef's own, once, when the CPU backend starts: which BLAS computes the GEMMs (Caffe's
    # log parsers skip lines they do not know)
    r"BLAS: .+",
    r"Starting Optimization",
    r"Creating training net from net file: \S+",
    r"Creating test net \(#\d+\) specified by net file: \S+",
    r"Solving \S+",
    r"Learning Rate Policy: \w+",
    r"Restoring previous solver status from \S+",
    r"SGDSolver: restoring history",
    r"Finetuning from \S+",
    r"Iteration \d+, Testing net \(#\d+\)",
    rf"    Test net output #\d+: \S+ = {NUM}( \(\* {NUM} = {NUM} loss\))?",
    rf"    Test net #\d+ segmentation: pixel accuracy = {NUM}, mean accuracy = {NUM}, "
    rf"mean IU = {NUM}, fw IU = {NUM}",
    rf"Iteration \d+, loss = {NUM}",
    rf"    Train net output #\d+: \S+ = {NUM}( \(\* {NUM} = {NUM} loss\))?",
    rf"Iteration \d+, lr = {NUM}",
    r"Snapshotting to binary proto file \S+\.caffemodel",
    r"Snapshotting solver state to binary proto file \S+\.solverstate",
    r"Stop requested \(SIGINT\): snapshotting and stopping\.",
    r"Optimization stopped early\.",
    r"Optimization Done\.",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("netdef-data"))


@pytest.fixture
def model(tmp_path, data_dir, monkeypatch):
    """A model directory with train.prototxt and a solver factory."""
    monkeypatch.setenv("NETDEF_DATA_DIR", data_dir)
    (tmp_path / "train.prototxt").write_text(NET)
    (tmp_path / "snapshots").mkdir()

    def solver(name="solver.prototxt", test_interval=10, base_lr=0.05, display=5, max_iter=20,
               snapshot=10):
        path = tmp_path / name
        path.write_text(SOLVER.format(test_interval=test_interval, base_lr=base_lr, display=display,
                                      max_iter=max_iter, snapshot=snapshot))
        return str(path)

    solver.dir = tmp_path
    return solver


def run_cli(*args, env=None, check=True, cwd=None):
    res = subprocess.run([sys.executable, "-m", "netdef.cli", *args], capture_output=True, text=True,
                         env=env or os.environ.copy(), timeout=120, cwd=cwd)
    if check and res.returncode != 0:
        raise AssertionError(f"netdef {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def blobs_of(path):
    net = netdef.pb.NetParameter()
    net.ParseFromString(open(path, "rb").read())
    return [np.array(b.data) for layer in net.layer for b in layer.blobs]


def test_train_log_matches_caffe_line_formats(model):
    solver = model()  # run from the model's directory, as Caffe's paths are relative to it
    res = run_cli("train", solver, cwd=os.path.dirname(solver))
    lines = res.stdout.splitlines()
    unmatched = [l for l in lines if not any(re.fullmatch(p, l) for p in CAFFE_LINES)]
    assert not unmatched, "lines in no Caffe format:\n" + "\n".join(unmatched)
    assert res.stderr == ""
    text = res.stdout
    assert lines[-1] == "Optimization Done."
    # the expected sequence of events
    iters = [int(m.group(1)) for m in re.finditer(r"^Iteration (\d+), loss = ", text, re.M)]
    assert iters == [0, 5, 10, 15, 20]
    lrs = [float(m.group(1)) for m in re.finditer(r"^Iteration \d+, lr = (\S+)", text, re.M)]
    assert lrs == [0.05, 0.05, 0.05, 0.025]
    assert re.findall(r"^Iteration (\d+), Testing net \(#0\)", text, re.M) == ["0", "10", "20"]
    for it in (10, 20):
        for ext in ("caffemodel", "solverstate"):
            assert f"_iter_{it}.{ext}" in text
            assert (model.dir / "snapshots" / f"tiny_iter_{it}.{ext}").exists()
    # Caffe's tools/extra/parse_log.py regular expressions find the values
    train = re.findall(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)", text)
    test = re.findall(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)", text)
    assert len(train) == 4 and all(n == "loss" for _, n, _ in train)
    assert len(test) == 3
    assert len(re.findall(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)", text)) == 4


def test_resume_in_a_new_process_is_bit_identical(model):
    solver = model()
    run_cli("train", solver)
    snap = model.dir / "snapshots"
    full = blobs_of(snap / "tiny_iter_20.caffemodel")
    os.rename(snap / "tiny_iter_20.caffemodel", snap / "full.caffemodel")
    res = run_cli("train", solver, "--snapshot", str(snap / "tiny_iter_10.solverstate"))
    assert "Restoring previous solver status from" in res.stdout
    assert re.findall(r"^Iteration (\d+), loss = ", res.stdout, re.M) == ["10", "15", "20"]
    for a, b in zip(full, blobs_of(snap / "tiny_iter_20.caffemodel")):
        np.testing.assert_array_equal(a, b)


def test_loss_falls_on_the_synthetic_set_and_seed_repeats(model):
    path = model(max_iter=60, test_interval=0, snapshot=0)
    runs = []
    for _ in range(2):
        s = netdef.get_solver(path)
        s.param.snapshot_after_train = False
        s.step(60)
        runs.append(s.losses)
    assert runs[0] == runs[1]
    losses = runs[0]
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    assert last < 0.6 * first, (first, last)
    result = s.test(0)
    assert result["pixel_accuracy"] > 0.5


def test_fine_tune_and_test_command(model):
    solver = model(max_iter=10, test_interval=0, snapshot=0)
    run_cli("train", solver)
    weights = str(model.dir / "snapshots" / "tiny_iter_10.caffemodel")
    res = run_cli("train", solver, "--weights", weights)
    assert f"Finetuning from {weights}" in res.stdout
    res = run_cli("test", str(model.dir / "train.prototxt"), "--weights", weights, "--iterations", "3")
    lines = [l for l in res.stdout.splitlines() if not l.startswith("BLAS: ")]
    assert lines[:2] == ["Use CPU.", "Running for 3 iterations."]
    batches = [float(m.group(1)) for l in lines for m in [re.fullmatch(r"Batch \d, loss = (\S+)", l)] if m]
    assert len(batches) == 3
    mean = [l for l in lines if l.startswith("loss = ")]
    assert len(mean) == 1
    m = re.fullmatch(rf"loss = ({NUM}) \(\* 1 = ({NUM}) loss\)", mean[0])
    assert m and float(m.group(1)) == pytest.approx(np.mean(batches), rel=1e-4)
    assert any(re.fullmatch(rf"mean IU = {NUM}", l) for l in lines)
    assert any(re.fullmatch(rf"pixel accuracy = {NUM}", l) for l in lines)


def test_time_command_prints_every_layer(model):
    res = run_cli("time", str(model.dir / "train.prototxt"), "--iterations", "2")
    out = res.stdout
    for layer in ("data", "conv1", "relu1", "drop1", "conv2", "score", "loss"):
        assert re.search(rf"^\s*{layer}\tforward: {NUM} ms\.$", out, re.M), layer
        assert re.search(rf"^\s*{layer}\tbackward: {NUM} ms\.$", out, re.M), layer
    for line in ("Average Forward pass", "Average Backward pass", "Average Forward-Backward",
                 "Total Time"):
        assert re.search(rf"^{line}: {NUM} ms\.$", out, re.M), line
    assert len(re.findall(r"^Iteration: \d forward-backward time: ", out, re.M)) == 2


def test_time_command_on_an_input_net(tmp_path):
    (tmp_path / "net.prototxt").write_text("""
    layer { name: "in" type: "Input" top: "data" top: "label"
            input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "score"
            convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }""")
    res = run_cli("time", str(tmp_path / "net.prototxt"), "--iterations", "1")
    assert re.search(r"^\s*conv\tbackward: ", res.stdout, re.M)


def test_cli_errors(model, tmp_path):
    solver = model()
    res = run_cli("train", solver, "--weights", "a.caffemodel", "--snapshot", "b.solverstate", check=False)
    assert res.returncode == 1 and "not both" in res.stderr
    bad = tmp_path / "bad.prototxt"
    bad.write_text(open(solver).read() + "debug_info: true\n")
    res = run_cli("train", str(bad), check=False)
    assert res.returncode == 1 and "debug_info" in res.stderr and str(bad) in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("train", solver, "--snapshot", str(tmp_path / "missing.solverstate"), check=False)
    assert res.returncode == 1 and "missing.solverstate" in res.stderr


def test_gpu_request_without_a_gpu_is_a_clear_error(model):
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is present")
    except Exception:
        pass
    res = run_cli("train", model(), "--gpu", "0", check=False)
    assert res.returncode == 1 and "GPU" in res.stderr and "Traceback" not in res.stderr


def test_diverging_training_stops_with_the_iteration_and_layer(model):
    res = run_cli("train", model(base_lr=1e12, snapshot=1, test_interval=0), check=False)
    assert res.returncode == 1
    m = re.search(r"iteration (\d+): the loss is (nan|inf|-inf); the first layer with a non-finite "
                  r"output is '(\w+)'", res.stderr)
    assert m, res.stderr
    it = int(m.group(1))
    snaps = sorted(os.listdir(model.dir / "snapshots"))
    assert f"tiny_iter_{it}.solverstate" in snaps  # the last good one
    assert f"tiny_iter_{it + 1}.solverstate" not in snaps
    assert "Optimization Done." not in res.stdout
    netdef.Net(str(model.dir / "train.prototxt"), netdef.TEST,
               weights=str(model.dir / "snapshots" / f"tiny_iter_{it}.caffemodel"))


def _read_until(stream_fd, pattern, deadline, buf=b""):
    while time.time() < deadline:
        if re.search(pattern, buf):
            return buf
        r, _, _ = select.select([stream_fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(stream_fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_progress_bar_on_a_terminal(model):
    solver = model(max_iter=8, test_interval=4, snapshot=0, display=4)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "netdef.cli", "train", solver],
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    try:
        out = _read_until(master, rb"Optimization Done\.", time.time() + 60)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0
    assert "8/8" in text and "iter" in text  # the bar, finished
    assert re.search(r"^Iteration 4, loss = ", text.replace("\r", "\n"), re.M)  # logs on own lines


def test_solver_mode_gpu_in_the_file_and_cpu_override(model):
    path = model(max_iter=1, test_interval=0, snapshot=0)
    with open(path, "a") as f:
        f.write("solver_mode: GPU\ndevice_id: 0\n")
    res = run_cli("train", path, "--cpu")
    assert res.stdout.startswith("Use CPU.\n")
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return
    except Exception:
        pass
    res = run_cli("train", path, check=False)
    assert res.returncode == 1 and "GPU" in res.stderr


def test_glog_log_format_for_caffe_log_parsers(model):
    # --log-format glog: every line carries glog's prefix, so Caffe's tools/extra/parse_log.sh
    # (grep '] Solving ', awk $9 of ', loss = ' / ', lr = ' lines) and parse_log.py (the time
    # from the prefix) read netdef's logs.
    solver = model()
    res = run_cli("train", solver, "--log-format", "glog", cwd=os.path.dirname(solver))
    prefix = r"I(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) +\d+ \S+:\d+\] "
    lines = res.stdout.splitlines()
    bad = [l for l in lines if not any(re.fullmatch(prefix + p, l) for p in CAFFE_LINES)]
    assert not bad, "lines without glog prefix or in no Caffe format:\n" + "\n".join(bad)
    assert sum("] Solving " in l for l in lines) == 1
    column = lambda key, k: [l.split()[k - 1] for l in lines if key in l]
    assert [float(v) for v in column(", loss = ", 9)]  # the values, where parse_log.sh looks
    assert [float(v) for v in column(", lr = ", 9)] == [0.05, 0.05, 0.05, 0.025]
