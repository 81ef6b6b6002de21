"""Data-parallel training over MPI (netdef/solver/distributed.py): `mpiexec -n 2`, one thread per
rank, every subprocess under a timeout.

One MPI job (this file run as a script, `worker`) trains all six solver types in both dtypes on
2 ranks, plus the 2 x B / 1 x 2B pair, the shard record, the write record of snapshots and the
NCCL path on the emulated GPU; the tests compare its files with single-process runs made here.
The CLI jobs check --procs, resume 2 -> 1 ranks, a NaN on one rank, an exception on one rank and
SIGINT on one rank.
"""
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import netdef
from netdef.data.base import EpochSampler
from netdef.solver import distributed

HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
if not os.access(MPIEXEC, os.X_OK):
    MPIEXEC = shutil.which("mpiexec")

try:
    import mpi4py  # noqa: F401
    HAVE_MPI = MPIEXEC is not None
except ImportError:
    HAVE_MPI = False

needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and an mpiexec: pip install 'netdef[mpi]'")

SOLVERS = {
    "SGD": "momentum: 0.9",
    "Nesterov": "momentum: 0.9",
    "AdaGrad": "delta: 1e-6",
    "RMSProp": "rms_decay: 0.9 delta: 1e-6",
    "AdaDelta": "momentum: 0.9 delta: 1e-6",
    "Adam": "momentum: 0.9 momentum2: 0.999 delta: 1e-8",
}
ROWS = 24


def net_text(batch, extra="", shuffle=False):
    return f"""name: "tiny"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "list.txt" batch_size: {batch} shuffle: {str(shuffle).lower()} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 5 weight_filler {{ type: "gaussian" std: 0.5 }}
    bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" param {{ lr_mult: 1 }} param {{ lr_mult: 0 }}
  inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.5 }}
    bias_filler {{ type: "constant" value: 0.2 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
{extra}"""


def solver_text(kind, net, iter_size=1, max_iter=3, extra="", display=0):
    lr = 1.0 if kind == "AdaDelta" else 0.05
    return (f'net: "{net}" type: "{kind}" base_lr: {lr} lr_policy: "fixed" max_iter: {max_iter} '
            f'weight_decay: 0.001 clip_gradients: 0.5 random_seed: 5 display: {display} iter_size: {iter_size} '
            f'{SOLVERS[kind]} {extra}\n')


def write_data(d, nan_row=None):
    import h5py

    rng = np.random.default_rng(0)
    data = rng.standard_normal((ROWS, 4)).astype(np.float32)
    data[:, 0] = np.arange(ROWS)  # the row number: the shard record reads it back
    data[:, 0] *= 0.01
    if nan_row is not None:
        data[nan_row, 1] = np.nan
    with h5py.File(os.path.join(d, "d.h5"), "w") as f:
        f["data"] = data
        f["label"] = (np.arange(ROWS) % 3).astype(np.float32)
    with open(os.path.join(d, "list.txt"), "w") as f:
        f.write("d.h5\n")


BN_NET = net_text(2).replace('layer { name: "relu"', '''layer { name: "bn" type: "BatchNorm" bottom: "ip1" top: "ip1"
  param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } }
layer { name: "relu"''')


def setup_dir(d):
    write_data(d)
    for batch in (2, 4):
        with open(os.path.join(d, f"net{batch}.prototxt"), "w") as f:
            f.write(net_text(batch))
    with open(os.path.join(d, "netbn.prototxt"), "w") as f:
        f.write(BN_NET)


def train(d, kind, dtype, batch, iter_size, backend=None, max_iter=3, clip=True, before_close=None):
    """Run a solver in directory d; its params (list of arrays) and the solver (closed; before
    that, before_close(solver) if given)."""
    path = os.path.join(d, f"solver_{kind}_{dtype}_{batch}_{iter_size}_{os.getpid()}.prototxt")
    with open(path, "w") as f:
        text = solver_text(kind, os.path.join(d, f"net{batch}.prototxt"), iter_size, max_iter)
        f.write(text if clip else text.replace("clip_gradients: 0.5", ""))
    cwd = os.getcwd()
    os.chdir(d)
    try:
        solver = netdef.get_solver(path, dtype=np.dtype(dtype), backend=backend)
        solver.step(max_iter)
        params = [np.array(solver.backend.to_numpy(b.data)) for b in solver.net.learnable_params]
        if before_close:
            before_close(solver)
        solver.close()
    finally:
        os.chdir(cwd)
    return params, solver


def mpirun(n, args, timeout, cwd=None, env=None):
    e = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.update(env or {})
    return subprocess.run([MPIEXEC, "-n", str(n)] + args, cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)


# ---- the worker: one MPI job for the equivalence checks ---------------------------------------------
class FakeNccl:
    """cupy.cuda.nccl's interface, carried out over MPI on host pointers: the NCCL calls of the
    GPU path (unique id broadcast, communicator, allReduce/bcast on raw pointers with counts,
    type codes and a stream) run on the emulated GPU, whose arrays live in host memory."""

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0
    calls = []

    @staticmethod
    def get_unique_id():
        return tuple(int(x) for x in np.random.default_rng().integers(-128, 128, 128))

    class NcclCommunicator:
        def __init__(self, ndev, uid, rank):
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
            assert ndev == comm.size and rank == comm.rank and len(uid) == 128
            assert len({tuple(u) for u in comm.allgather(uid)}) == 1, "the NCCL id differs between ranks"
            self.comm = comm

        def _array(self, ptr, count, datatype):
            ctype = {FakeNccl.NCCL_FLOAT32: ctypes.c_float, FakeNccl.NCCL_FLOAT64: ctypes.c_double}[datatype]
            return np.ctypeslib.as_array((ctype * count).from_address(ptr))

        def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
            from mpi4py import MPI

            assert sendbuf == recvbuf and op == FakeNccl.NCCL_SUM and stream == 0
            FakeNccl.calls.append(("allReduce", count))
            self.comm.Allreduce(MPI.IN_PLACE, self._array(recvbuf, count, datatype), op=MPI.SUM)

        def bcast(self, buff, count, datatype, root, stream):
            FakeNccl.calls.append(("bcast", count))
            self.comm.Bcast(self._array(buff, count, datatype), root=root)


def worker(out):
    from mpi4py import MPI

    import netdef.proto

    comm = MPI.COMM_WORLD
    netdef.set_solver_count(comm.size)  # pycaffe's calls, with the ranks MPI's
    netdef.set_solver_rank(netdef.mpi_rank())
    netdef.set_multiprocess(True)
    rank = comm.rank
    d = os.path.join(out, "data")
    results = {}
    for kind in SOLVERS:
        for dtype in ("float32", "float64"):
            params, _ = train(d, kind, dtype, 2, 1)
            for i, p in enumerate(params):
                results[f"{kind}_{dtype}_{i}"] = p
    # 2 x B vs 1 x 2B: not with clipping, whose norm is that of the gradients' sum over the
    # passes (the mean over 2B is half the sum of the two means over B)
    params, _ = train(d, "SGD", "float32", 2, 1, clip=False)
    for i, p in enumerate(params):
        results[f"noclip_{i}"] = p
    # BatchNorm statistics: each rank's own after training, their mean after test_all()

    def bn(solver):
        layer = solver.net.layer_dict["bn"]
        for k, b in enumerate(layer.blobs):
            results[f"bn_before_{k}"] = np.array(b.data)
        solver.test_all()
        for k, b in enumerate(layer.blobs):
            results[f"bn_after_{k}"] = np.array(b.data)

    train(d, "SGD", "float32", "bn", 1, before_close=bn)
    # the shard: which rows this rank's train net reads in 3 batches
    cwd = os.getcwd()
    os.chdir(d)
    net = netdef.Net(os.path.join(d, "net2.prototxt"), netdef.TRAIN)
    rows = []
    for _ in range(ROWS // 4):
        net.forward()
        rows += [int(round(v * 100)) for v in net.blobs["data"].data[:, 0]]
    net.close()
    results["rows"] = np.array(rows)
    # only rank 0 writes snapshots
    written = []
    real = netdef.proto.write_binary
    netdef.proto.write_binary = lambda msg, path, *a, **k: (written.append(path), real(msg, path, *a, **k))
    _, solver = train(d, "SGD", "float32", 2, 1, max_iter=1)
    solver.param.snapshot_prefix = os.path.join(d, "snap")
    solver.snapshot()
    netdef.proto.write_binary = real
    results["written"] = np.array(len(written))
    os.chdir(cwd)
    # Caffe's python/train.py, its solve() as one MPI rank runs it (the processes are MPI's)
    import netdef.caffe_compat

    caffe = netdef.caffe_compat.install()
    path = os.path.join(d, f"caffe_{os.getpid()}.prototxt")
    with open(path, "w") as f:
        f.write(solver_text("SGD", os.path.join(d, "net2.prototxt")))
    os.chdir(d)
    solver = caffe.SGDSolver(path)
    nccl = caffe.NCCL(solver, caffe.NCCL.new_uid())
    nccl.bcast()
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    solver.step(2)
    for i, b in enumerate(solver.net.learnable_params):
        results[f"caffe_{i}"] = np.array(b.data)
    solver.close()
    os.chdir(cwd)
    # the NCCL path on the emulated GPU
    sys.path.insert(0, HERE)
    from conftest import emulated_gpu

    distributed.nccl_module = FakeNccl
    gpu = emulated_gpu()
    gpu.seed(5)  # the solver's random_seed (set_random_seed seeds the registered backends only)
    params, solver = train(d, "SGD", "float32", 2, 1, backend=gpu)
    assert solver.parallel.device is not None
    for i, p in enumerate(params):
        results[f"gpu_{i}"] = p
    results["nccl_calls"] = np.array(sorted({c[0] for c in FakeNccl.calls}))
    np.savez(os.path.join(out, f"rank{rank}.npz"), **results)


# ---- tests without processes -------------------------------------------------------------------------
@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_are_disjoint_and_cover_the_single_process_stream(shuffle):
    n, batch, ranks = 11, 3, 3
    one = EpochSampler(n, shuffle, 4)
    state, stream = one.initial_state(), []
    for _ in range(ranks * 4):
        picks, state = one.take(state, batch)
        stream += [(i, r.integers(1 << 30)) for i, r in picks]
    shards = []
    for r in range(ranks):
        s = EpochSampler(n, shuffle, 4)
        s.shard(r, ranks)
        st, mine = s.initial_state(), []
        for _ in range(4):
            picks, st = s.take(st, batch)
            mine.append([(i, g.integers(1 << 30)) for i, g in picks])
        assert st == state  # the global position, the same on every rank
        shards.append(mine)
    # block k of the stream is rank k % ranks's (k // ranks)-th batch
    merged = [x for it in range(4) for r in range(ranks) for x in shards[r][it]]
    assert merged == stream
    first_epoch = [i for i, _ in merged[:n]]
    assert sorted(first_epoch) == list(range(n))
    with pytest.raises(netdef.NetdefError, match="rank 2"):
        EpochSampler(4, False, 0).shard(2, 2)


def test_launcher_environment_and_rank_logging(monkeypatch, caplog):
    for var in distributed._LAUNCHER_SIZE:
        monkeypatch.delenv(var, raising=False)
    assert distributed.launched_size() == 1 and distributed.init_world() is None
    monkeypatch.setenv("PMI_SIZE", "4")
    assert distributed.launched_size() == 4
    import logging

    f = distributed.RankFilter(2)
    info = logging.LogRecord("netdef", logging.INFO, "", 0, "Iteration 1", None, None)
    warn = logging.LogRecord("netdef", logging.WARNING, "", 0, "careful", None, None)
    assert not f.filter(info) and f.filter(warn) and warn.getMessage() == "[rank 2] careful"
    assert distributed.RankFilter(0).filter(info)


def test_train_refuses_inconsistent_device_and_process_counts(tmp_path):
    from netdef.cli import main

    s = tmp_path / "s.prototxt"
    s.write_text('net: "n.prototxt" base_lr: 0.1 lr_policy: "fixed"')
    assert main(["train", str(s), "--gpu", "0,1", "--procs", "3"]) == 1
    assert main(["train", str(s), "--cpu", "--procs", "0"]) == 1


def test_without_mpi4py_the_error_names_the_extra(tmp_path, monkeypatch):
    from netdef.cli import main

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(netdef.NetdefError, match=r"netdef\[mpi\]"):
        distributed.mpi()
    s = tmp_path / "s.prototxt"
    s.write_text('net: "n.prototxt" base_lr: 0.1 lr_policy: "fixed"')
    assert main(["train", str(s), "--cpu", "--procs", "2"]) == 1


def test_after_backward_takes_only_nccl(tmp_path):
    net = netdef.Net('''layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }''')
    with pytest.raises(netdef.NetdefError, match="per-layer backward callbacks"):
        net.after_backward(object())
    net.after_backward(netdef.NCCL.__new__(netdef.NCCL))


# ---- one MPI job: equivalence, identical ranks, shards, writes, NCCL calls ------------------------------------
@pytest.fixture(scope="module")
def worker_run(tmp_path_factory):
    if not HAVE_MPI:
        pytest.skip("needs mpi4py and an mpiexec: pip install 'netdef[mpi]'")
    out = str(tmp_path_factory.mktemp("mpi"))
    os.makedirs(os.path.join(out, "data"))
    setup_dir(os.path.join(out, "data"))
    r = mpirun(2, [sys.executable, os.path.abspath(__file__), "worker", out], timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ranks = [dict(np.load(os.path.join(out, f"rank{k}.npz"))) for k in range(2)]
    return out, ranks


@needs_mpi
def test_two_ranks_equal_one_rank_with_twice_the_iter_size_bit_for_bit(worker_run):
    out, ranks = worker_run
    d = os.path.join(out, "data")
    for kind in SOLVERS:
        for dtype in ("float32", "float64"):
            single, _ = train(d, kind, dtype, 2, 2)  # 1 rank x B x iter_size 2
            for i, p in enumerate(single):
                got = ranks[0][f"{kind}_{dtype}_{i}"]
                assert got.dtype == np.dtype(dtype)
                assert np.array_equal(got, p), f"{kind} {dtype} param {i}: max diff {np.abs(got - p).max()}"
            # the frozen bias (lr_mult 0) kept its filler value
            assert np.all(ranks[0][f"{kind}_{dtype}_3"] == np.float32(0.2).astype(dtype))


@needs_mpi
def test_every_rank_ends_with_the_same_weights(worker_run):
    _, ranks = worker_run
    keys = [k for k in ranks[0] if k not in ("rows", "written") and not k.startswith("bn_before")]
    for k in keys:
        assert np.array_equal(ranks[0][k], ranks[1][k]), k


@needs_mpi
def test_a_caffe_train_py_style_script_runs_data_parallel(worker_run):
    _, ranks = worker_run
    assert np.array_equal(ranks[0]["caffe_0"], ranks[1]["caffe_0"])
    assert not np.array_equal(ranks[0]["caffe_0"], ranks[0]["SGD_float32_0"])  # 2 steps, not 3


@needs_mpi
def test_two_ranks_of_batch_b_are_close_to_one_rank_of_batch_2b(worker_run):
    out, ranks = worker_run
    single, _ = train(os.path.join(out, "data"), "SGD", "float32", 4, 1, clip=False)
    for i, p in enumerate(single):
        np.testing.assert_allclose(ranks[0][f"noclip_{i}"], p, rtol=1e-5, atol=1e-6)


@needs_mpi
def test_batchnorm_statistics_are_averaged_before_testing(worker_run):
    _, ranks = worker_run
    for k in range(3):
        before = [r[f"bn_before_{k}"] for r in ranks]
        assert np.array_equal(ranks[0][f"bn_after_{k}"], (before[0] + before[1]) / np.float32(2))
        assert np.array_equal(ranks[0][f"bn_after_{k}"], ranks[1][f"bn_after_{k}"])
    assert not np.array_equal(ranks[0]["bn_before_0"], ranks[1]["bn_before_0"])  # they did differ


@needs_mpi
def test_shards_are_disjoint_and_together_one_epoch(worker_run):
    _, ranks = worker_run
    a, b = ranks[0]["rows"], ranks[1]["rows"]
    assert not set(a) & set(b)
    assert sorted(np.concatenate([a, b])) == list(range(ROWS))
    # rank r reads block r of each pair of blocks
    assert list(a[:4]) == [0, 1, 4, 5] and list(b[:4]) == [2, 3, 6, 7]


@needs_mpi
def test_only_rank_0_writes_snapshots(worker_run):
    _, ranks = worker_run
    assert int(ranks[0]["written"]) == 2 and int(ranks[1]["written"]) == 0


@needs_mpi
def test_nccl_path_on_the_emulated_gpu_matches_the_cpu(worker_run):
    _, ranks = worker_run
    assert set(ranks[0]["nccl_calls"]) == {"allReduce", "bcast"}
    for i in range(4):
        np.testing.assert_allclose(ranks[0][f"gpu_{i}"], ranks[0][f"SGD_float32_{i}"], rtol=1e-5, atol=1e-6)
        assert np.array_equal(ranks[0][f"gpu_{i}"], ranks[1][f"gpu_{i}"])


# ---- the command line ----------------------------------------------------------------------------------
def cli_dir(tmp_path, extra_net="", nan_row=None, solver_extra="", max_iter=4):
    write_data(str(tmp_path), nan_row)
    (tmp_path / "net.prototxt").write_text(net_text(2, extra_net))
    (tmp_path / "solver.prototxt").write_text(solver_text("SGD", "net.prototxt", 1, max_iter, solver_extra, 1))
    return tmp_path


@needs_mpi
def test_procs_snapshots_by_rank_0_and_resume_on_one_rank(tmp_path):
    d = cli_dir(tmp_path, solver_extra='snapshot: 2 snapshot_prefix: "snap"')
    r = subprocess.run([sys.executable, "-m", "netdef", "train", "solver.prototxt", "--cpu", "--procs", "2"],
                       cwd=d, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Data-parallel training on 2 ranks" in r.stdout
    assert r.stdout.count("Iteration 3, loss") == 1  # rank 0 logs, rank 1 does not
    assert sorted(f for f in os.listdir(d) if f.startswith("snap_iter")) == [
        "snap_iter_2.caffemodel", "snap_iter_2.solverstate", "snap_iter_4.caffemodel", "snap_iter_4.solverstate"]
    # 2 ranks x iter_size 1 from iteration 2 on 1 rank x iter_size 2: the same iterations
    (d / "one").mkdir()
    (d / "solver1.prototxt").write_text(solver_text("SGD", "net.prototxt", 2, 4, 'snapshot: 2 snapshot_prefix: "one/snap"'))
    r = subprocess.run([sys.executable, "-m", "netdef", "train", "solver1.prototxt", "--cpu",
                        "--snapshot", "snap_iter_2.solverstate"], cwd=d, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (d / "one" / "snap_iter_4.caffemodel").read_bytes() == (d / "snap_iter_4.caffemodel").read_bytes()


FAULTY = '''
import os, signal
import netdef

class Faulty(netdef.Layer):
    def setup(self, bottom, top):
        self.what, rank, self.at = self.param_str.split(":")
        self.mine = netdef.solver_rank() == int(rank)
        self.count = 0
    def reshape(self, bottom, top):
        pass
    def forward(self, bottom, top):
        self.count += 1
        if self.mine and self.count == int(self.at):
            if self.what == "raise":
                raise RuntimeError("boom on purpose")
            os.kill(os.getpid(), signal.SIGINT)
    def backward(self, top, propagate_down, bottom):
        pass
'''


def faulty_layer(what, rank, at):
    return (f'layer {{ name: "faulty" type: "Python" bottom: "label" python_param {{ module: "faulty" '
            f'layer: "Faulty" param_str: "{what}:{rank}:{at}" }} }}')


def run_cli(d, timeout=60):
    t0 = time.monotonic()
    r = mpirun(2, [sys.executable, "-m", "netdef", "train", "solver.prototxt", "--cpu"], timeout=timeout,
               cwd=d, env={"PYTHONPATH": str(d)})
    return r, time.monotonic() - t0


@needs_mpi
def test_a_nan_on_one_rank_stops_every_rank(tmp_path):
    # rows 6-7 are rank 1's batch of iteration 1
    d = cli_dir(tmp_path, nan_row=6, solver_extra='snapshot: 2 snapshot_prefix: "snap"')
    r, _ = run_cli(d)
    assert r.returncode != 0
    assert "non-finite on 1 of 2 ranks" in r.stderr
    assert "rank 1 of 2: iteration 1: the loss is nan; the first layer with a non-finite output is 'data'" in r.stderr
    assert r.stderr.count("netdef train: error:") == 2  # rank 1's own, rank 0's for the job
    assert not [f for f in os.listdir(d) if f.startswith("snap_iter")]


@needs_mpi
def test_an_exception_on_one_rank_aborts_the_job(tmp_path):
    d = cli_dir(tmp_path, extra_net=faulty_layer("raise", 1, 2), max_iter=1000)
    (d / "faulty.py").write_text(FAULTY)
    r, seconds = run_cli(d, timeout=60)
    assert r.returncode != 0
    assert "rank 1 of 2: RuntimeError: boom on purpose" in r.stderr
    assert seconds < 30


@needs_mpi
def test_sigint_on_one_rank_snapshots_once_and_stops_every_rank(tmp_path):
    d = cli_dir(tmp_path, extra_net=faulty_layer("sigint", 1, 3), max_iter=1000,
                solver_extra='snapshot_prefix: "snap"')
    (d / "faulty.py").write_text(FAULTY)
    r, _ = run_cli(d)
    assert r.returncode == 0, r.stderr[-2000:]
    snaps = sorted(f for f in os.listdir(d) if f.startswith("snap_iter"))
    assert snaps == ["snap_iter_3.caffemodel", "snap_iter_3.solverstate"], snaps
    assert r.stdout.count("Optimization stopped early.") == 1


@pytest.mark.cuda
@needs_mpi
def test_one_rank_through_real_nccl_equals_the_plain_solver():
    r = subprocess.run([sys.executable, os.path.join(HERE, "..", "bench", "parallel.py"), "--nccl-smoke"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "has_nccl: True" in r.stdout and "equals the plain solver: True" in r.stdout


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        signal.alarm(100)  # never outlive the test's timeout
        worker(sys.argv[2])
