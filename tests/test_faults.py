"""Faults during `netdef train`, injected into real training processes:

  * SIGKILL while a snapshot is being written (at a chosen point, and at many points in a
    row): every file under a final snapshot name loads, the previous snapshot is intact, and
    training resumed from it ends bit-for-bit where an uninterrupted run ends;
  * the disk filling up mid-training (RLIMIT_FSIZE makes the next write fail as a full disk
    would), and snapshot directories that are missing, not directories or not writable: one
    clear error line, the previous snapshot intact, no partial file under a final name;
  * a corrupt image or label file in the data set: an error naming the file, even though it
    is read by the prefetch thread;
  * divergence (a layer's output turns NaN at a known iteration): training stops naming the
    iteration and that layer, and writes nothing over the last good snapshot;
  * Ctrl-C (SIGINT): snapshot and clean exit, also when it arrives during a snapshot; resuming
    from that snapshot ends where an uninterrupted run ends.

Faults are injected from outside netdef: a small wrapper script patches os.fsync (to stop
inside a snapshot write) or sets a file size limit, then runs netdef's CLI main().
"""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import netdef
from netdef import netdef_pb2 as pb
from netdef.solver import read_solverstate

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and POSIX signals")

NET = """name: "faulty"
layer { name: "data" type: "SegmentationData" top: "data" top: "label"
  transform_param { mirror: true }
  segmentation_data_param { %(data)s batch_size: 2 } }
layer { name: "scale" type: "Power" bottom: "data" top: "scaled" power_param { scale: 0.0125 } }
layer { name: "conv1" type: "Convolution" bottom: "scaled" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
%(inject)s
layer { name: "relu1" type: "ReLU" bottom: "%(hidden)s" top: "%(hidden)s" }
layer { name: "drop1" type: "Dropout" bottom: "%(hidden)s" top: "%(hidden)s" dropout_param { dropout_ratio: 0.2 } }
layer { name: "score" type: "Convolution" bottom: "%(hidden)s" top: "score"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "msra" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
  loss_param { ignore_label: 255 } }
"""
SYNTHETIC = 'synthetic: "shapes" split: "train" synthetic_size: 24 synthetic_train: 12 synthetic_val: 2 ' \
            'synthetic_classes: 3'

SOLVER = """net: "train.prototxt"
base_lr: 0.02
lr_policy: "step" gamma: 0.5 stepsize: 7
momentum: 0.9
weight_decay: 0.0005
display: 5
max_iter: %(max_iter)d
snapshot: %(snapshot)d
snapshot_prefix: "%(prefix)s"
random_seed: 7
"""

# Runs netdef's CLI with a fault hook: argv = [hook, hook argument, marker file, netdef args...]
WRAPPER = textwrap.dedent("""
    import os, resource, signal, sys, time
    hook, arg, marker = sys.argv[1:4]
    if hook == "pause-in-fsync":
        # Stop inside the write of the snapshot file whose name contains `arg` (after its bytes
        # went to a temporary file, before they are synced and renamed) and wait to be killed.
        real_fsync = os.fsync
        def fsync(fd):
            if arg in os.path.basename(os.readlink(f"/proc/self/fd/{fd}")):
                open(marker, "w").close()
                deadline = time.time() + 60
                while time.time() < deadline:   # a signal interrupts one sleep, not the wait
                    time.sleep(0.05)
                    if os.path.exists(marker + ".go"):
                        break
            return real_fsync(fd)
        os.fsync = fsync
    elif hook == "slow-iterations":
        # Every forward/backward pass takes `arg` seconds longer (the results do not change).
        import netdef.net
        real_fb = netdef.net.Net.forward_backward
        def forward_backward(self):
            time.sleep(float(arg))
            return real_fb(self)
        netdef.net.Net.forward_backward = forward_backward
    elif hook == "disk-full-after-first-snapshot":
        import netdef.solver
        real_snapshot = netdef.solver.Solver.snapshot
        def snapshot(self):
            out = real_snapshot(self)
            # From now on no file may grow beyond 64 bytes: writes fail as on a full disk.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            open(marker, "w").close()
            return out
        netdef.solver.Solver.snapshot = snapshot
    from netdef.cli import main
    sys.exit(main(sys.argv[4:]))
""")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("netdef-data"))


class Model:
    def __init__(self, root, data_dir):
        self.root = root
        self.env = dict(os.environ, NETDEF_DATA_DIR=data_dir)
        (root / "snapshots").mkdir(exist_ok=True)
        (root / "wrapper.py").write_text(WRAPPER)

    def write(self, max_iter=20, snapshot=5, prefix="snapshots/m", data=SYNTHETIC, inject=""):
        (self.root / "train.prototxt").write_text(
            NET % {"data": data, "inject": inject, "hidden": "poisoned" if inject else "conv1"})
        path = self.root / "solver.prototxt"
        path.write_text(SOLVER % {"max_iter": max_iter, "snapshot": snapshot, "prefix": prefix})
        return str(path)

    def cmd(self, *args, hook=None, hook_arg="", marker=None):
        if hook is None:
            return [sys.executable, "-m", "netdef.cli", *args]
        return [sys.executable, str(self.root / "wrapper.py"), hook, hook_arg, str(marker), *args]

    def run(self, *args, timeout=180, **kw):
        return subprocess.run(self.cmd(*args, **kw), capture_output=True, text=True, env=self.env,
                              cwd=self.root, timeout=timeout)

    def popen(self, *args, **kw):
        return subprocess.Popen(self.cmd(*args, **kw), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env, cwd=self.root)

    def snaps(self, d="snapshots"):
        # the run's log file (m.log, netdef/logfile.py) lives next to the snapshots too
        return sorted(n for n in os.listdir(self.root / d) if not n.endswith(".log"))

    def weights(self, it, prefix="snapshots/m"):
        net = pb.NetParameter()
        net.ParseFromString((self.root / f"{prefix}_iter_{it}.caffemodel").read_bytes())
        return [np.array(b.data, dtype=np.float32) for lp in net.layer for b in lp.blobs]


@pytest.fixture
def model(tmp_path, data_dir):
    return Model(tmp_path, data_dir)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """The final weights of an uninterrupted 20-iteration run."""
    m = Model(tmp_path_factory.mktemp("reference"), data_dir)
    res = m.run("train", m.write(max_iter=20, snapshot=10))
    assert res.returncode == 0, res.stderr
    return m.weights(20)


def wait_for(path, proc, timeout=90):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended ({proc.returncode}) before {path} appeared:\n{out.decode()}"
                                 f"\n{err.decode()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def assert_every_final_file_loads(model, d="snapshots"):
    """No partial file under a final name: each .caffemodel/.solverstate there parses and fits."""
    for name in model.snaps(d):
        path = str(model.root / d / name)
        if name.endswith(".caffemodel"):
            netdef.Net(str(model.root / "train.prototxt"), netdef.TEST, weights=path)
        elif name.endswith(".solverstate"):
            state, extra = read_solverstate(path)
            assert extra is not None and state.iter == int(re.search(r"_iter_(\d+)", name).group(1))


def temporaries(model, d="snapshots"):
    return [n for n in model.snaps(d) if n.endswith(".tmp")]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------------------------
# SIGKILL


@pytest.mark.parametrize("victim", ["m_iter_10.caffemodel", "m_iter_10.solverstate"])
def test_sigkill_in_the_middle_of_a_snapshot(model, reference, victim):
    solver = model.write(max_iter=20, snapshot=5)
    marker = model.root / "in-snapshot"
    proc = model.popen("train", solver, hook="pause-in-fsync", hook_arg=victim, marker=marker)
    try:
        wait_for(marker, proc)
        proc.kill()  # SIGKILL, with the snapshot's bytes in a temporary file
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    snaps = model.snaps()
    assert victim not in snaps, snaps
    assert "m_iter_10.solverstate" not in snaps
    assert "m_iter_5.caffemodel" in snaps and "m_iter_5.solverstate" in snaps
    assert_every_final_file_loads(model)
    # the killed write left its temporary file (never read: not a snapshot name), nothing else
    assert len(temporaries(model)) == 1 and temporaries(model)[0].startswith(victim + "."), snaps
    res = model.run("train", solver, "--snapshot", "snapshots/m_iter_5.solverstate")
    assert res.returncode == 0, res.stderr
    assert_same(model.weights(20), reference)
    # writing the same snapshot again removed the dead process's temporary file
    assert temporaries(model) == [], model.snaps()


def test_sigkill_at_many_moments_always_leaves_a_resumable_snapshot(model, reference):
    """Snapshot every iteration; kill the process at a random moment of the iteration after a
    (random) snapshot appeared, so that the kill lands anywhere in the next iteration or its
    snapshot; resume from the newest snapshot; repeat. Every file under a final name loads each
    time, and the run ends where the uninterrupted one does."""
    solver = model.write(max_iter=20, snapshot=1)
    rng = np.random.default_rng(int(os.environ.get("NETDEF_FAULT_SEED", "1")))
    latest = None
    kills = 0
    while kills < 4:
        target = (int(re.search(r"_iter_(\d+)", latest).group(1)) if latest else 0) + int(rng.integers(1, 3))
        if target >= 18:
            break
        args = ["train", solver] + (["--snapshot", latest] if latest else [])
        # 30 ms per iteration, so that the kill lands within about one iteration of the target
        proc = model.popen(*args, hook="slow-iterations", hook_arg="0.03", marker=model.root / "x")
        try:
            wait_for(model.root / "snapshots" / f"m_iter_{target}.solverstate", proc)
            time.sleep(float(rng.uniform(0, 0.045)))
            proc.kill()
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        kills += 1
        assert_every_final_file_loads(model)
        states = [n for n in model.snaps() if n.endswith(".solverstate")]
        latest = "snapshots/" + max(states, key=lambda n: int(re.search(r"_iter_(\d+)", n).group(1)))
    res = model.run("train", solver, "--snapshot", latest)
    assert res.returncode == 0, res.stderr
    assert kills >= 3
    assert_same(model.weights(20), reference)


# ---------------------------------------------------------------------------------------------
# Disk full, unwritable snapshot directory


def test_disk_full_mid_training(model, reference):
    solver = model.write(max_iter=20, snapshot=10)
    res = model.run("train", solver, hook="disk-full-after-first-snapshot", marker=model.root / "full")
    assert res.returncode == 1, (res.stdout, res.stderr)
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 2, err
    assert "snapshot failed" in err and "m_iter_10.solverstate is intact" in err, err
    assert model.snaps() == ["m_iter_10.caffemodel", "m_iter_10.solverstate"]  # no partial, no .tmp
    assert_every_final_file_loads(model)
    res = model.run("train", solver, "--snapshot", "snapshots/m_iter_10.solverstate")
    assert res.returncode == 0, res.stderr
    assert_same(model.weights(20), reference)


@pytest.mark.parametrize("case", ["missing", "file", "read-only"])
def test_unwritable_snapshot_directory_is_refused_before_training(model, case):
    target = model.root / "snapdir"
    if case == "file":
        target.write_text("not a directory")
    elif case == "read-only":
        target.mkdir()
        target.chmod(0o555)
        if os.access(target, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes")
    solver = model.write(max_iter=4, snapshot=2, prefix="snapdir/m")
    res = model.run("train", solver)
    assert res.returncode == 1
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 2, err
    assert "cannot write snapshots" in err and "snapdir" in err, err
    assert "Iteration 0" not in res.stdout  # refused before any work


# ---------------------------------------------------------------------------------------------
# Corrupt data


def _voc_set(root, n=6, size=24):
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"img{i}" for i in range(n)]
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        lab = Image.fromarray(rng.integers(0, 3, (size, size), dtype=np.uint8), mode="P")
        lab.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
        lab.save(root / "SegmentationClass" / f"{i}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    return ids


@pytest.mark.parametrize("what", ["truncated image", "garbage label", "empty image"])
def test_corrupt_file_in_the_data_set_is_named(model, what):
    voc = model.root / "voc"
    _voc_set(voc)
    bad = {"truncated image": voc / "JPEGImages" / "img3.jpg", "garbage label": voc / "SegmentationClass" / "img3.png",
           "empty image": voc / "JPEGImages" / "img3.jpg"}[what]
    data = bad.read_bytes()
    bad.write_bytes(b"" if what == "empty image" else data[:len(data) // 3] if "truncated" in what
                    else os.urandom(len(data)))
    solver = model.write(max_iter=12, snapshot=1,
                         data=f'root: "{voc}" split: "train" shuffle: false prefetch: 2')
    res = model.run("train", solver, timeout=120)
    assert res.returncode == 1, (res.stdout[-2000:], res.stderr)
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 2, err
    assert str(bad) in err or os.path.relpath(bad, model.root) in err, err
    # img3 is in the second batch: the first iteration's snapshot is there and loads.
    assert_every_final_file_loads(model)
    assert "m_iter_1.solverstate" in model.snaps()


# ---------------------------------------------------------------------------------------------
# Divergence

# Not in place: with `top: "conv1"` the NaN would sit in conv1's own top when the solver looks,
# and conv1 would be named (the check runs after the forward pass, on the blobs).
INJECT = """layer { name: "inject" type: "Python" bottom: "conv1" top: "poisoned"
  python_param { module: "nan_injector" layer: "NaNAt" param_str: "%d" } }"""

NAN_INJECTOR = """
import numpy as np
import netdef

class NaNAt(netdef.Layer):
    '''Passes its bottom through; the forward pass number `param_str` (0-based) writes a NaN.'''
    def setup(self, bottom, top):
        self.at, self.calls = int(self.param_str), 0
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)
    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data
        if self.calls == self.at:
            top[0].data.flat[5] = np.nan
        self.calls += 1
    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff
"""


def test_nan_stops_training_naming_the_iteration_and_layer(model):
    (model.root / "nan_injector.py").write_text(NAN_INJECTOR)
    solver = model.write(max_iter=20, snapshot=5, inject=INJECT % 7)
    res = model.run("train", solver)
    assert res.returncode == 1, res.stderr
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 2, err
    assert re.search(r"iteration 7\b", err) and "'inject'" in err, err
    assert "m_iter_5.solverstate is intact" in err or "m_iter_5" in err, err
    assert model.snaps() == ["m_iter_5.caffemodel", "m_iter_5.solverstate"]
    assert_every_final_file_loads(model)
    assert all(np.isfinite(w).all() for w in model.weights(5))


# ---------------------------------------------------------------------------------------------
# Ctrl-C


def read_until(proc, text, timeout=90):
    import select

    buf, fd, deadline = b"", proc.stdout.fileno(), time.time() + timeout
    while text.encode() not in buf:
        if time.time() > deadline or proc.poll() is not None:
            raise AssertionError(f"'{text}' did not appear in the log:\n{buf.decode()}")
        if select.select([fd], [], [], 0.1)[0]:
            buf += os.read(fd, 65536)
    return buf


def test_ctrl_c_snapshots_exits_cleanly_and_resumes_exactly(model, reference):
    solver = model.write(max_iter=20, snapshot=0)
    # 0.1 s per iteration, so that the signal lands in the middle of the run
    proc = model.popen("train", solver, hook="slow-iterations", hook_arg="0.1", marker=model.root / "x")
    try:
        out = read_until(proc, "Iteration 5, lr")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (out + rest).decode()
    assert proc.returncode == 0, err.decode()
    assert "Optimization stopped early." in text and "Optimization Done." not in text
    m = re.search(r"Snapshotting solver state to binary proto file (\S+_iter_(\d+)\.solverstate)", text)
    assert m and 5 <= int(m.group(2)) < 20, text
    assert model.snaps() == [f"m_iter_{m.group(2)}.caffemodel", f"m_iter_{m.group(2)}.solverstate"]
    assert_every_final_file_loads(model)
    res = model.run("train", solver, "--snapshot", m.group(1))
    assert res.returncode == 0, res.stderr
    assert_same(model.weights(20), reference)


def test_ctrl_c_during_a_snapshot_finishes_it_then_stops(model):
    solver = model.write(max_iter=20, snapshot=5)
    marker = model.root / "in-snapshot"
    proc = model.popen("train", solver, hook="pause-in-fsync", hook_arg="m_iter_10.caffemodel", marker=marker)
    try:
        wait_for(marker, proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        (model.root / "in-snapshot.go").write_text("")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert "Optimization stopped early." in out.decode()
    # The snapshot under way completes; the stop takes effect after the next iteration, with
    # its own snapshot; nothing is left half-written.
    assert model.snaps() == ["m_iter_10.caffemodel", "m_iter_10.solverstate", "m_iter_11.caffemodel",
                             "m_iter_11.solverstate", "m_iter_5.caffemodel", "m_iter_5.solverstate"]
    assert_every_final_file_loads(model)


def test_second_ctrl_c_during_a_snapshot_aborts_without_leaving_a_file(model):
    solver = model.write(max_iter=20, snapshot=5)
    marker = model.root / "in-snapshot"
    proc = model.popen("train", solver, hook="pause-in-fsync", hook_arg="m_iter_10.caffemodel", marker=marker)
    try:
        wait_for(marker, proc)
        proc.send_signal(signal.SIGINT)  # stop after this iteration ...
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # ... no, now
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()
    assert model.snaps() == ["m_iter_5.caffemodel", "m_iter_5.solverstate"]  # no .tmp either
    assert_every_final_file_loads(model)
