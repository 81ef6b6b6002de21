#!/usr/bin/env python3
"""Data-parallel training speed: fcn8s-mini iterations per second on 1, 2, ... ranks of this
machine (ranks x threads = cores), the all-reduce's time per iteration and its share.

    python bench/parallel.py                       # 1 and 2 ranks, fcn8s-mini (batch 4 per rank)
    python bench/parallel.py --ranks 1,2,4 --iters 20
    python bench/parallel.py --nccl-smoke           # on a GPU: 1 rank through NCCL (gpu_check.sh)

Each rank count is one `mpiexec -n R` job (the mpiexec next to this Python: pip install
'netdef[mpi]') with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = cores / R. A rank builds the solver
of models/fcn8s-mini (its train net only: no testing, no snapshots), runs --warmup iterations,
then times --iters. Reported, from rank 0:
  it/s          iterations per second (each iteration: every rank's batch, one all-reduce)
  img/s         images per second over all ranks (batch per rank x ranks x it/s)
  reduce ms     time in the all-reduce per iteration as the solver sees it (DataParallel's
                reduce_seconds): the collective itself plus waiting for the slowest rank
  share         reduce ms / iteration ms
  allreduce ms  the same all-reduce alone, in a tight loop after training (its pure cost on
                this machine: the buffer size is the net's trainable values + 4 control slots)
Efficiency: img/s relative to the first row's (the same cores split into more processes, so 100 %
means that the split and the all-reduce cost nothing). Nothing is asserted; see bench/README.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def worker(args):
    import numpy as np

    import netdef
    from netdef.solver import distributed, read_solver

    comm = distributed.init_world()
    solver_file = os.path.join(ROOT, "models", "fcn8s-mini", "solver.prototxt")
    param, _ = read_solver(solver_file)
    param.ClearField("test_net")
    param.ClearField("test_iter")
    param.test_interval = 0
    param.snapshot = 0
    param.display = 0
    param.snapshot_after_train = False
    solver = netdef.get_solver(param, filename=solver_file)
    batch = solver.net.blobs["data"].shape[0]
    solver.step(args.warmup)
    p = solver.parallel
    if p is not None:
        p.reduce_seconds, p.reductions = 0.0, 0
    t0 = time.perf_counter()
    solver.step(args.iters)
    seconds = time.perf_counter() - t0
    reduce_s = p.reduce_seconds / max(p.reductions, 1) if p is not None else 0.0
    alone = 0.0
    if p is not None:
        buf = np.array(solver.backend.to_numpy(p.buffer))  # a copy: the weights stay as trained
        comm.Barrier()
        t = time.perf_counter()
        for _ in range(args.allreduce_reps):
            p.host.allreduce(buf)
        alone = (time.perf_counter() - t) / args.allreduce_reps
    solver.close()
    if comm is None or comm.rank == 0:
        values = sum(b.count for b, lr in zip(solver.net.learnable_params, solver.net.params_lr) if lr)
        print(json.dumps(dict(ranks=comm.size if comm else 1, iters=args.iters, seconds=seconds,
                              batch=batch, reduce_s=reduce_s, allreduce_s=alone, values=values)))


SMOKE_NET = """name: "smoke"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 8 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def nccl_smoke():
    """One rank on GPU 0 through the real NCCL path (cupy.cuda.nccl communicator of size 1, its id
    broadcast over MPI): 3 SGD steps must give the weights of the same solver without it."""
    import numpy as np

    import netdef
    from netdef.solver import distributed

    MPI = distributed.mpi()
    netdef.set_mode_gpu()
    netdef.set_device(0)
    print("has_nccl:", netdef.has_nccl())
    results = []
    for attach in (False, True):
        netdef.set_random_seed(3)
        text = ('net_param { ' + SMOKE_NET.replace("\n", " ") + ' } base_lr: 0.1 lr_policy: "fixed" '
                'momentum: 0.9 clip_gradients: 0.2 max_iter: 3 display: 1')
        solver = netdef.SGDSolver(text)
        if attach:
            p = solver.attach_parallel(MPI.COMM_WORLD)
            assert p.device is not None, "the GPU solver did not take the NCCL channel"
        rng = np.random.default_rng(0)
        for _ in range(3):
            solver.net.blobs["data"].data[...] = netdef.backend.get_backend().asarray(
                rng.standard_normal((4, 8)).astype(np.float32))
            solver.net.blobs["label"].data[...] = netdef.backend.get_backend().asarray(
                rng.integers(0, 3, 4).astype(np.float32))
            solver.step(1)
        results.append([np.array(solver.backend.to_numpy(b.data)) for b in solver.net.learnable_params])
    same = all(np.array_equal(a, b) for a, b in zip(*results))
    print("NCCL 1-rank step equals the plain solver:", same, "; reduce s/iter:",
          p.reduce_seconds / max(p.reductions, 1))
    if not same:
        sys.exit(1)


def run(ranks, args):
    cores = os.cpu_count() or 1
    threads = str(args.threads or max(1, cores // ranks))
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
           "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--allreduce-reps", str(args.allreduce_reps)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if r.returncode:
        sys.exit(f"{ranks} ranks failed:\n{r.stderr[-3000:]}")
    line = [x for x in r.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line), threads


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--allreduce-reps", type=int, default=50)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--threads", type=int, help="threads per rank (default: cores / ranks)")
    ap.add_argument("--nccl-smoke", action="store_true", help="one rank through NCCL on GPU 0 (a check, not a timing)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.nccl_smoke:
        return nccl_smoke()
    rows, base = [], None
    for n in [int(x) for x in args.ranks.split(",")]:
        res, threads = run(n, args)
        it_s = res["iters"] / res["seconds"]
        img_s = it_s * res["batch"] * n
        base = base or img_s
        it_ms = 1000 / it_s
        rows.append([n, threads, f"{it_s:.2f}", f"{img_s:.1f}", f"{it_ms:.0f}",
                     f"{res['reduce_s'] * 1000:.2f}", f"{100 * res['reduce_s'] * 1000 / it_ms:.1f} %",
                     f"{res['allreduce_s'] * 1000:.3f}",
                     f"{100 * img_s / base:.0f} %"])
    header = ["ranks", "threads/rank", "it/s", "img/s", "iter ms", "reduce ms", "share",
              "allreduce ms", "efficiency"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    print(f"fcn8s-mini, batch {res['batch']} per rank, {res['values']} trainable values "
          f"({res['values'] * 4 / 2**20:.1f} MiB float32 per all-reduce); {args.iters} timed "
          f"iterations after {args.warmup}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
