"""The training loop: the Solver base class (pycaffe's caffe.Solver) without its update rule.

    solver = netdef.get_solver('solver.prototxt')     # the class named by `type` (rules.py)
    solver.step(100); solver.solve(); solver.snapshot(); solver.restore('x.solverstate')

It builds the train net and the test nets (their NetStates merged as Caffe merges them, the
test nets sharing the train net's param blobs), runs the iterations, keeps the smoothed loss,
logs Caffe's lines, answers SIGINT / SIGHUP and draws the progress bar. Testing is
evaluation.py's, snapshots snapshot.py's, the update rules rules.py's.

One iteration (Solver.step), as in Caffe:
  1. clear the param diffs; every `test_interval` iterations run the test nets first;
  2. compute_gradients(): `iter_size` forward/backward passes (layers *add* param gradients, so
     the passes accumulate), loss averaged over them; a non-finite loss stops training;
  3. reduce_gradients(): data-parallel training (distributed.py) sums the gradients over the
     ranks and agrees on the loss and on SIGINT/SIGHUP requests (nothing to do on one device);
     then the loss is logged and the on_gradients_ready callbacks run;
  4. apply_update(): learning rate of the policy; gradient clipping (the global L2 norm of all
     diffs scaled down to clip_gradients); then per param, in one fused kernel
     (kernels/solver.cu): g = diff / (iter_size * ranks) + weight_decay * decay_mult * (w or sign(w)),
     the rule's update u at rate base * lr_mult, diff = u and w -= u;
  5. iter += 1; snapshot every `snapshot` iterations or when SIGHUP asked; stop when SIGINT did.
"""
import contextlib
import logging
import math
import os
import signal
import sys
import threading

import numpy as np

from ..core import netdef_pb2 as pb
from ..core import proto
from ..backend import get_backend, set_random_seed
from ..core.blob import Blob
from ..errors import ParseError, TrainingError
from ..watch.glog import default_logging, installed_handler
from ..core.net import Net
from .evaluation import caffe_number as _g
from .evaluation import evaluate, log_outputs, net_outputs
from . import parallel as _parallel
from .parallel import NCCL
from .params import learning_rate, read_solver
from .loss_scale import LossScaler
from .snapshot import Snapshots

log = logging.getLogger("netdef")

TRAIN, TEST = pb.TRAIN, pb.TEST


class Solver(Snapshots):
    """The training loop (pycaffe's caffe.Solver). Subclasses define the update rule.

    Solver(solver, dtype=np.float32, backend=None, filename=None): `solver` is a path, prototxt
    text or SolverParameter (`filename`: the solver file they came from, for the latter two).
    Relative paths in it are Caffe's: relative to the current directory, else next to the
    solver file (see _path and Snapshots.snapshot_prefix).
    The device is the current mode's (netdef.set_mode_gpu / set_device), as in pycaffe."""

    type = None
    #: history blobs per learnable param (AdaDelta and Adam keep two)
    history_per_param = 1
    #: Which blobs the test nets are scored on with segmentation metrics. None: found in each test
    #: net from its Accuracy or SoftmaxWithLoss layer (netdef.metrics.find_segmentation_blobs);
    #: False: none; a netdef.metrics.SegmentationBlobs(score, label, ignore_label): those blobs,
    #: in every test net.
    segmentation = None

    def __init__(self, solver, *, dtype=np.float32, backend=None, filename=None):
        default_logging()  # Caffe's lines on stderr, as pycaffe's, unless logging is configured
        self.param, self.filename = read_solver(solver, filename)
        if self.type and self.param.type != self.type and self.param.HasField("type"):
            log.warning("solver file asks for type '%s'; running %s as requested",
                        self.param.type, type(self).__name__)
        self.dir = os.path.dirname(os.path.abspath(self.filename)) if self.filename else os.getcwd()
        self.check_rule()
        comm = _parallel.world()
        #: distributed.DataParallel when this solver is one rank of data-parallel training
        self.parallel = None
        if comm is not None:
            from .distributed import DataParallel

            self.parallel = DataParallel(self, comm)
            set_random_seed(self.parallel.agree_seed(self.param.random_seed))
        elif self.param.random_seed >= 0:
            set_random_seed(self.param.random_seed)
        self.backend = backend or get_backend()
        self.dtype = np.dtype(dtype)
        self.net = self._init_train_net()
        self.net.share_diffs = True  # nobody reads a training net's activation diffs (see Net)
        #: loss scaling of a reduced-precision backward (loss_scale.py), None without
        self.loss_scaler = LossScaler.from_plan(self.net.precision.loss_scale)
        if self.loss_scaler is not None:
            self.net.loss_scale = self.loss_scaler.scale
        self.test_nets = self._init_test_nets()
        if self.parallel is not None:
            self.parallel.setup()
        for w in self.param.weights:
            self.copy_trained_layers(self._path(w))
        self.history = [Blob(p.shape, dtype=self.dtype, backend=self.backend, name=f"history{i}")
                        for i in range(self.history_per_param)
                        for p in self.net.learnable_params]
        self.iter = 0
        self.current_step = 0
        self.callbacks = []
        self.test_callbacks = []
        self.losses = []  # raw loss of every iteration this solver ran (for inspection and tests)
        self._smoothed = []
        self.smoothed_loss = 0.0
        self._requests = []
        self._stop_sent = False
        self._stop = False
        self._bar = None
        self._last_snapshot_iter = None
        self.last_snapshot = None
        if self.param.snapshot:
            self._check_snapshot_prefix()

    # ---- construction -------------------------------------------------------------------
    def check_rule(self):
        """Refuse parameters the update rule cannot use (Caffe's CHECKs)."""

    def _path(self, p):
        """A path of the solver file (net, train_net, test_net, weights) as Caffe reads it:
        relative to the current directory; when it is not there but is next to the solver file
        (netdef's models/*, run from anywhere), that one, logged."""
        p = os.path.expanduser(p)
        if os.path.isabs(p) or os.path.exists(p) or not self.filename:
            return p
        beside = os.path.normpath(os.path.join(self.dir, p))
        if os.path.exists(beside):
            log.info("%s is not in the current directory; using %s, next to the solver file", p, beside)
            return beside
        return p

    def _error(self, message):
        return ParseError(message, file=self.filename)

    def _make_net(self, source, phase, extra_state):
        """A Net from a path or NetParameter in `phase`, its NetState merged with extra_state
        (train_state / test_state) as Caffe merges them. The test nets stay able to run backward
        (pycaffe scripts do net.backward() on solver.test_nets[0]), so a test net with a loss
        under learnable params is not fused (netdef/core/fusion.py)."""
        if isinstance(source, pb.NetParameter):
            base = source.state
        else:
            base = proto.read_net_text(source)[0].state
        state = pb.NetState(phase=phase)
        state.MergeFrom(base)
        if extra_state is not None:
            state.MergeFrom(extra_state)
        stages = list(extra_state.stage) if extra_state is not None else []
        return Net(source, state.phase, level=state.level, stages=stages, dtype=self.dtype,
                   backend=self.backend)

    def _init_train_net(self):
        p = self.param
        given = [f for f in ("train_net_param", "train_net", "net_param", "net") if p.HasField(f)]
        if not given:
            raise self._error("the solver names no train net: set one of net, net_param, "
                              "train_net, train_net_param")
        if len(given) > 1:
            raise self._error(f"the solver names more than one train net ({', '.join(given)}); give one")
        field = given[0]
        if field.endswith("_param"):
            log.info("Creating training net specified in %s.", field)
            source = getattr(p, field)
        else:
            source = self._path(getattr(p, field))
            log.info("Creating training net from %s file: %s", field, source)
        return self._make_net(source, TRAIN, p.train_state if p.HasField("train_state") else None)

    def _init_test_nets(self):
        p = self.param
        generic = [f for f in ("net_param", "net") if p.HasField(f)]
        specific = [(q, "test_net_param", None) for q in p.test_net_param] + \
                   [(self._path(f), "test_net", f) for f in p.test_net]
        if generic:
            if len(p.test_iter) < len(specific):
                raise self._error(f"test_iter must be given for each test net: {len(specific)} test "
                                  f"nets, {len(p.test_iter)} test_iter")
        elif len(p.test_iter) != len(specific):
            raise self._error(f"test_iter must be given for each test net: {len(specific)} test "
                              f"nets, {len(p.test_iter)} test_iter")
        n_generic = len(p.test_iter) - len(specific)
        if p.test_state and len(p.test_state) != len(specific) + n_generic:
            raise self._error(f"test_state must be given once per test net ({len(specific) + n_generic}), "
                              f"or not at all; got {len(p.test_state)}")
        sources = list(specific)
        if n_generic:
            g = generic[0]
            src = p.net_param if g == "net_param" else self._path(p.net)
            sources += [(src, g, None)] * n_generic
        nets = []
        for i, (src, field, _) in enumerate(sources):
            if isinstance(src, pb.NetParameter):
                log.info("Creating test net (#%d) specified by %s", i, field)
            else:
                log.info("Creating test net (#%d) specified by %s file: %s", i, field, src)
            net = self._make_net(src, TEST, p.test_state[i] if p.test_state else None)
            net.share_with(self.net)  # Caffe's ShareTrainedLayersWith
            nets.append(net)
        return nets

    def attach_parallel(self, comm, nccl=None):
        """Make this solver one rank of data-parallel training after it was created (pycaffe's
        NCCL(solver, uid) does; a solver created after set_solver_count(n) already is one).
        nccl: the NCCL module for a GPU backend (default cupy.cuda.nccl)."""
        from .distributed import DataParallel

        self.parallel = DataParallel(self, comm, nccl=nccl)
        self.parallel.setup()
        readers = [n for n, layer in self.net.layer_dict.items()
                   if getattr(getattr(getattr(layer, "reader", None), "sampler", None), "ranks", comm.size) != comm.size]
        if readers:
            log.warning("data layer(s) %s were built before set_solver_count(%d) and read all the data "
                        "on every rank: create the solver after set_solver_count, as Caffe's "
                        "train.py does, for disjoint shards", ", ".join(readers), comm.size)
        return self.parallel

    def share_weights(self, net):
        """pycaffe's solver.share_weights(net): let `net` use this solver's train net weights
        (Net.share_with)."""
        net.share_with(self.net)

    def close(self):
        """Stop what the nets' layers run besides training (data readers' prefetch threads);
        the solver may not step afterwards. `netdef train` calls it when it ends."""
        for net in [self.net] + self.test_nets:
            net.close()

    def copy_trained_layers(self, path):
        """Load weights by layer name into the train and test nets (fine-tuning, --weights);
        data-parallel: rank 0 reads them and broadcasts."""
        if self.parallel is not None:
            return self.parallel.copy_trained_layers(path, self._copy_trained_layers)
        return self._copy_trained_layers(path)

    def _copy_trained_layers(self, path):
        log.info("Finetuning from %s", path)
        self.net.copy_from(path)
        for net in self.test_nets:
            net.copy_from(path)

    def add_callback(self, on_start=None, on_gradients_ready=None):
        """pycaffe's add_callback: called at the start of each iteration (after testing) and
        once its gradients are computed (before the reduction and the update). Also pycaffe's
        add_callback(nccl) for a netdef.NCCL (whose methods are those two callbacks)."""
        if isinstance(on_start, NCCL) and on_gradients_ready is None:
            on_start, on_gradients_ready = on_start.on_start, on_start.on_gradients_ready
        self.callbacks.append((on_start, on_gradients_ready))

    def add_test_callback(self, on_test):
        """netdef's addition to pycaffe's callbacks: on_test(i, evaluation) after each complete
        test of test net i (not after an interrupted one), at self.iter, the net's blobs still
        holding its last batch. `evaluation` is evaluation.Evaluation (loss, outputs,
        segmentation metrics)."""
        self.test_callbacks.append(on_test)

    # ---- running --------------------------------------------------------------------------
    @property
    def learning_rate(self):
        return learning_rate(self.param, self.iter, self.current_step)[0]

    def solve(self, resume_file=None, progress=None):
        """Train until max_iter (from a .solverstate when resume_file is given), then snapshot
        (snapshot_after_train), show the final loss and test. progress: a tqdm bar with ETA;
        None: only when stdout is a terminal."""
        log.info("Solving %s", self.net.name)
        log.info("Learning Rate Policy: %s", self.param.lr_policy)
        self._stop = False
        if resume_file:
            log.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        if self.param.snapshot_after_train or self.param.snapshot:
            self._check_snapshot_prefix()
        start_iter = self.iter
        with self._progress(progress):
            self.step(self.param.max_iter - self.iter)
        if (self.param.snapshot_after_train or self._stop) and self._last_snapshot_iter != self.iter:
            self.snapshot()
        if self._stop:
            log.info("Optimization stopped early.")
            return
        if self.param.display and self.iter % self.param.display == 0:
            loss = self.net.forward_range()
            self._update_smoothed_loss(loss, start_iter)
            log.info("Iteration %d, loss = %s", self.iter, _g(self.smoothed_loss))
        if self.param.test_interval and self.iter % self.param.test_interval == 0:
            self.test_all()
        log.info("Optimization Done.")

    def step(self, iters):
        """Run `iters` training iterations (stops early when SIGINT asked)."""
        p = self.param
        start_iter = self.iter
        stop_iter = self.iter + int(iters)
        self._smoothed = []
        self.smoothed_loss = 0.0
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if p.test_interval and self.iter % p.test_interval == 0 and \
                    (self.iter > 0 or p.test_initialization):
                self.test_all()
                if self._stop:
                    break
            for on_start, _ in self.callbacks:
                if on_start:
                    on_start()
            display = p.display and self.iter % p.display == 0
            failure = None
            try:
                # with loss scaling an overflow is expected now and then: the update skips it
                # (apply_update), so numpy's warnings about it would only be noise
                with np.errstate(over="ignore", invalid="ignore") if self.loss_scaler is not None \
                        else contextlib.nullcontext():
                    loss = self.compute_gradients()
            except TrainingError as e:
                if self.parallel is None:
                    raise
                loss, failure = math.nan, e  # the other ranks learn it in the all-reduce
            loss = self.reduce_gradients(loss, failure)
            self.losses.append(loss)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                log.info("Iteration %d, loss = %s", self.iter, _g(self.smoothed_loss))
                log_outputs(self.net, "Train", net_outputs(self.net))
            for _, on_ready in self.callbacks:
                if on_ready:
                    on_ready()
            self.apply_update()
            self.iter += 1
            if self._bar is not None:
                self._bar.update(1)
                self._bar.set_postfix(loss=_g(self.smoothed_loss), refresh=False)
            action = self._take_request()
            if (p.snapshot and self.iter % p.snapshot == 0) or action in ("snapshot", "stop"):
                self.snapshot()
            if action == "stop":
                self._stop = True
                break

    def _update_smoothed_loss(self, loss, start_iter):
        n = self.param.average_loss
        if len(self._smoothed) < n:
            self._smoothed.append(loss)
            k = len(self._smoothed)
            self.smoothed_loss = (self.smoothed_loss * (k - 1) + loss) / k
        else:
            idx = (self.iter - start_iter) % n
            self.smoothed_loss += (loss - self._smoothed[idx]) / n
            self._smoothed[idx] = loss

    def compute_gradients(self):
        """iter_size forward/backward passes, param gradients accumulating; the mean loss."""
        total = 0.0
        for _ in range(self.param.iter_size):
            loss = self.net.forward_backward()
            if not math.isfinite(loss):
                raise self._non_finite(loss)
            total += loss
        return total / self.param.iter_size

    def reduce_gradients(self, loss=None, failure=None):
        """Data-parallel training: the trainable params' diffs summed over the ranks in one
        all-reduce, which also agrees on the loss (returned: the mean over the ranks), on a
        non-finite loss anywhere (`failure`: this rank's TrainingError; every rank raises) and
        on stop/snapshot requests (distributed.DataParallel.reduce). One process: the loss as
        given."""
        if self.parallel is not None:
            return self.parallel.reduce(loss, failure)
        if failure is not None:
            raise failure
        return loss

    @property
    def passes(self):
        """Forward/backward passes whose gradients an update sums: iter_size on every rank."""
        return self.param.iter_size * (self.parallel.size if self.parallel is not None else 1)

    def apply_update(self):
        """pycaffe's solver.apply_update() (Caffe's ApplyUpdate): the learning rate of the
        policy at the current iteration, clipping, normalization by iter_size, regularization
        and the update rule, applied to the params from their diffs. As in Caffe it does not
        advance `iter` (step() does, after it) nor clear the diffs (step() does at the start of
        an iteration): a hand-written loop does net.clear_param_diffs(), forward, backward,
        apply_update() and, if the lr policy should move on, solver.iter += 1."""
        p = self.param
        rate, self.current_step = learning_rate(p, self.iter, self.current_step)
        if p.display and self.iter % p.display == 0:
            log.info("Iteration %d, lr = %s", self.iter, _g(rate))
        net, scaler = self.net, self.loss_scaler
        loss_scale = 1.0
        if scaler is not None:
            loss_scale = scaler.scale
            with np.errstate(over="ignore", invalid="ignore"):
                overflowed = scaler.overflowed(net.learnable_params, self.backend.xp)
            if overflowed:
                scaler.skip(self.iter)
                net.loss_scale = scaler.scale
                return
        scale = self._clip_scale(loss_scale) / self.passes / loss_scale
        l1 = int(p.regularization_type == "L1")
        for i, blob in enumerate(net.learnable_params):
            lr_mult = net.params_lr[i]
            if lr_mult == 0:
                continue  # frozen: its update is 0 whatever the rule
            decay = p.weight_decay * net.params_weight_decay[i]
            self.update_param(i, blob, rate * lr_mult, scale, decay, l1)
        if scaler is not None:
            scaler.step_done(self.iter)
            net.loss_scale = scaler.scale

    def update_param(self, i, blob, rate, scale, decay, l1):
        raise NotImplementedError

    def _history(self, i, k=0):
        return self.history[k * len(self.net.learnable_params) + i].data

    def _clip_scale(self, loss_scale=1.0):
        """The factor clip_gradients asks for, from the norm of the gradients (the diffs
        divided by the loss scale)."""
        clip = self.param.clip_gradients
        if clip < 0:
            return 1.0
        xp = self.backend.xp
        sumsq = 0.0
        for blob in self.net.learnable_params:
            d = blob.diff.reshape(-1)
            sumsq += float(xp.dot(d, d))
        norm = math.sqrt(sumsq) / loss_scale
        if norm > clip:
            factor = clip / norm
            log.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale factor %s",
                     _g(norm), _g(clip), _g(factor))
            return factor
        return 1.0

    # ---- snapshots (data-parallel: rank 0 writes and reads) ----------------------------------------
    def snapshot(self):
        if self.parallel is not None:
            return self.parallel.snapshot(super().snapshot)
        return super().snapshot()

    def restore(self, path):
        if self.parallel is not None:
            return self.parallel.restore(path, super().restore)
        return super().restore(path)

    def _check_snapshot_prefix(self):
        if self.parallel is None or self.parallel.is_root:
            super()._check_snapshot_prefix()

    # ---- testing ------------------------------------------------------------------------------
    def test_all(self):
        """Every test net (data-parallel: BatchNorm statistics averaged, then rank 0 tests)."""
        if self.parallel is not None:
            self.parallel.average_statistics()
            if not self.parallel.is_root:
                return
        for i in range(len(self.test_nets)):
            if self._stop:
                break
            self.test(i)

    def test(self, i=0):
        """Run test net i for test_iter[i] batches; log its outputs averaged (and, for a
        segmentation net, pixel accuracy and IU: see `segmentation`). Returns the segmentation
        metrics (dict) or None."""
        log.info("Iteration %d, Testing net (#%d)", self.iter, i)
        net = self.test_nets[i]
        n = self.param.test_iter[i]
        # data-parallel, requests wait for the next all-reduce, where every rank agrees on them
        serve = self._serve_requests_in_test if self.parallel is None else None
        r = evaluate(net, n, segmentation=self.segmentation, before_batch=serve)
        if r.interrupted:
            log.info("Test interrupted.")
            return None
        if self.param.test_compute_loss:
            log.info("Test loss: %s", _g(r.loss))
        log_outputs(net, "Test", r.outputs)
        result = r.segmentation
        if result is not None:
            log.info("    Test net #%d segmentation: pixel accuracy = %s, mean accuracy = %s, "
                     "mean IU = %s, fw IU = %s", i, _g(result["pixel_accuracy"]),
                     _g(result["mean_accuracy"]), _g(result["mean_iu"]), _g(result["fw_iu"]))
        for on_test in self.test_callbacks:
            on_test(i, r)
        return result

    def _serve_requests_in_test(self):
        """Between test batches: snapshot when asked; False (end the test) once a stop was."""
        while True:
            action = self._take_request()
            if action is None:
                break
            self.snapshot()
            if action == "stop":
                self._stop = True
        return not self._stop

    # ---- failures -----------------------------------------------------------------------------
    def _non_finite(self, loss):
        net, xp = self.net, self.backend.xp
        where = "no layer output is non-finite (the loss sum overflowed)"
        for name, layer in net.layer_dict.items():
            bad = [t for t in net.top_names[name] if not bool(xp.isfinite(net.blobs[t].data).all())]
            if bad:
                params = [k for k, b in enumerate(layer.blobs) if not bool(xp.isfinite(b.data).all())]
                where = (f"the first layer with a non-finite output is '{name}' ({layer.type}), "
                         f"top '{bad[0]}'")
                if params:
                    where += f"; its param(s) {params} are non-finite"
                break
        kept = (f"; the last snapshot ({self.last_snapshot}) is intact" if self.last_snapshot
                else "; no snapshot was written")
        return TrainingError(f"iteration {self.iter}: the loss is {_g(loss)}; {where}{kept}. "
                             "Try a lower base_lr or clip_gradients.")

    # ---- signals and progress -------------------------------------------------------------------
    def request(self, action):
        """Ask the loop to 'snapshot' or 'stop' (and snapshot) after the current iteration
        (what SIGHUP and SIGINT do)."""
        if action not in ("snapshot", "stop"):
            raise ValueError("action must be 'snapshot' or 'stop'")
        self._requests.append(action)

    def _take_request(self):
        # data-parallel: only what all ranks agreed on in this iteration's all-reduce
        requests = self._requests if self.parallel is None else self.parallel.agreed
        if not requests:
            return None
        action = "stop" if "stop" in requests else "snapshot"
        requests.clear()
        if action == "stop":
            log.info("Stop requested (SIGINT): snapshotting and stopping.")
        else:
            log.info("Snapshot requested (SIGHUP).")
        return action

    @contextlib.contextmanager
    def handle_signals(self):
        """SIGINT: snapshot and stop after the current iteration (a second SIGINT aborts);
        SIGHUP: snapshot and go on. Installed only in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._stop_sent = False

        def on_int(signum, frame):
            if "stop" in self._requests or self._stop_sent:
                raise KeyboardInterrupt
            # data-parallel, the request leaves _requests at the next all-reduce: remember it
            self._stop_sent = True
            self._requests.append("stop")

        def on_hup(signum, frame):
            self._requests.append("snapshot")

        old = {signal.SIGINT: signal.signal(signal.SIGINT, on_int)}
        if hasattr(signal, "SIGHUP"):
            old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def _progress(self, enabled):
        if enabled is None:
            enabled = sys.stdout.isatty()
        if not enabled or self.iter >= self.param.max_iter:
            yield
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        # the bar and the log lines take turns on the console handler: glog.py's, else root's
        console = log if installed_handler() is not None else logging.root
        with logging_redirect_tqdm(loggers=[console]):
            bar = tqdm(total=self.param.max_iter, initial=self.iter, file=sys.stdout, unit="iter",
                       dynamic_ncols=True, leave=True)
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None
                bar.close()
