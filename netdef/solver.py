"""Solvers: Caffe's training loop, learning-rate policies and update rules, test nets,
snapshots and exact resume; and the `netdef train` / `netdef test` commands.

    solver = netdef.get_solver('solver.prototxt')     # the class named by `type`
    solver.step(100); solver.solve(); solver.snapshot(); solver.restore('x.solverstate')

One iteration (Solver.step), as in Caffe:
  1. clear the param diffs; every `test_interval` iterations run the test nets first;
  2. compute_gradients(): `iter_size` forward/backward passes (layers *add* param gradients, so
     the passes accumulate), loss averaged over them; a non-finite loss stops training;
  3. reduce_gradients(): the hook where data-parallel training sums gradients across devices
     (nothing to do on one device);
  4. apply_update(): learning rate of the policy; gradient clipping (the global L2 norm of all
     diffs scaled down to clip_gradients); then per param, in one fused kernel
     (kernels/solver.cu): g = diff / iter_size + weight_decay * decay_mult * (w or sign(w)),
     the rule's update u at rate base * lr_mult, diff = u and w -= u;
  5. iter += 1; snapshot every `snapshot` iterations or when SIGHUP asked; stop when SIGINT did.

Learning-rate policies (t = iteration): fixed: base_lr; step: base_lr gamma^floor(t / stepsize);
exp: base_lr gamma^t; inv: base_lr (1 + gamma t)^-power; multistep: base_lr gamma^k after the
k-th stepvalue; poly: base_lr (1 - t / max_iter)^power; sigmoid: base_lr / (1 + e^(-gamma (t -
stepsize))). The update rules are stated in kernels/solver.cu.

Snapshots: <prefix>_iter_<N>.caffemodel (the train net's params) and <prefix>_iter_<N>.solverstate
(a SolverState: iter, learned_net, history, current_step), each written to a temporary name and
renamed. Paths in a solver file (net, train_net, test_net, snapshot_prefix, weights) are relative
to its directory; snapshot_prefix defaults to the solver file's name without extension.
For an exact resume the solverstate also carries, in its netdef_state field (JSON; Caffe ignores
it), the random generators of the backend (host: fillers and data order; device: Dropout masks)
and the state of every layer that has get_state() / set_state(state) (data readers: the state
must be JSON-able and describe the next batch the layer will deliver, not what a prefetch thread
has read ahead). On the CPU a run resumed at iteration k then ends bit-identical to one never
stopped. A GPU generator's state cannot be read back, so on the GPU each snapshot reseeds it from
the host generator (same results with and without resume, for a given snapshot interval).
"""
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from . import netdef_pb2 as pb
from . import proto
from .backend import get_backend, set_random_seed
from .blob import Blob
from .cli import subcommand
from .errors import BackendError, NetdefError, ParseError, TrainingError
from .net import Net

log = logging.getLogger("netdef")

TRAIN, TEST = pb.TRAIN, pb.TEST

SOLVERS = {}

#: The legacy `solver_type` enum → the `type` string (Caffe's UpgradeSolverType).
_LEGACY_TYPES = {pb.SolverParameter.SGD: "SGD", pb.SolverParameter.NESTEROV: "Nesterov",
                 pb.SolverParameter.ADAGRAD: "AdaGrad", pb.SolverParameter.RMSPROP: "RMSProp",
                 pb.SolverParameter.ADADELTA: "AdaDelta", pb.SolverParameter.ADAM: "Adam"}

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")

#: Outputs with more values than this are not printed value by value (a score map would be).
MAX_PRINTED_VALUES = 1000

STATE_FORMAT = 1


def register_solver(type_name):
    def deco(cls):
        cls.type = type_name
        SOLVERS[type_name] = cls
        return cls

    return deco


def _g(x):
    """A number as Caffe's logs print it (C++ ostream default: 6 significant digits)."""
    return format(float(x), "g")


# ---------------------------------------------------------------------------------------------
# Reading and checking a SolverParameter


def read_solver(source, filename=None):
    """(SolverParameter, filename or None) from a path, prototxt text or a SolverParameter,
    with the legacy solver_type upgraded and unsupported fields refused."""
    if isinstance(source, pb.SolverParameter):
        param = pb.SolverParameter()
        param.CopyFrom(source)
    else:
        param, filename = proto.read_text(source, pb.SolverParameter)
    upgrade_solver(param, filename)
    check_supported(param, filename)
    return param, filename


def upgrade_solver(param, filename=None):
    if param.HasField("solver_type"):
        legacy = _LEGACY_TYPES[param.solver_type]
        if param.HasField("type") and param.type != legacy:
            raise ParseError(f"solver_type ({pb.SolverParameter.SolverType.Name(param.solver_type)}) and "
                             f"type ('{param.type}') disagree; give only type", file=filename)
        param.type = legacy
        param.ClearField("solver_type")
    return param


def check_supported(param, filename=None):
    """Fields that netdef reads but does not implement are errors naming them."""
    def refuse(field, why):
        raise ParseError(f"solver field '{field}' {why}", file=filename)

    if param.snapshot_format == pb.SolverParameter.HDF5:
        refuse("snapshot_format: HDF5", "is not supported by netdef; use BINARYPROTO (the default)")
    if param.debug_info:
        refuse("debug_info", "is not supported by netdef; remove it (per-layer statistics: "
               "netdef time, or read net.blobs from Python)")
    if param.iter_size < 1:
        refuse("iter_size", f"must be >= 1, got {param.iter_size}")
    if param.average_loss < 1:
        refuse("average_loss", f"must be >= 1, got {param.average_loss}")
    if param.regularization_type not in ("L1", "L2"):
        refuse("regularization_type", f"must be L1 or L2, got '{param.regularization_type}'")
    if param.type not in SOLVERS:
        refuse("type", f"'{param.type}' is not a solver type; known types: {', '.join(SOLVERS)}")
    policy = param.lr_policy
    if policy not in LR_POLICIES:
        refuse("lr_policy", ("is not set" if not policy else f"'{policy}' is not known") +
               f"; policies: {', '.join(LR_POLICIES)}")
    if policy == "step" and param.stepsize <= 0:
        refuse("stepsize", f"must be > 0 for lr_policy step, got {param.stepsize}")
    if policy == "poly" and param.max_iter <= 0:
        refuse("max_iter", "must be > 0 for lr_policy poly")
    if policy == "multistep":
        sv = list(param.stepvalue)
        if any(b <= a for a, b in zip(sv, sv[1:])):
            refuse("stepvalue", f"must increase, got {sv}")
    if param.test_interval < 0 or param.display < 0 or param.snapshot < 0 or param.max_iter < 0:
        for f in ("test_interval", "display", "snapshot", "max_iter"):
            if getattr(param, f) < 0:
                refuse(f, f"must be >= 0, got {getattr(param, f)}")
    if any(t < 0 for t in param.test_iter):
        refuse("test_iter", f"must be >= 0, got {list(param.test_iter)}")


def learning_rate(param, it, current_step=0):
    """(rate, current_step) of the lr policy at iteration `it` (Caffe's GetLearningRate;
    multistep advances current_step by at most one per call, as Caffe does)."""
    rate, current_step = _policy_rate(param, it, current_step)
    if isinstance(rate, complex):  # a negative number to a fractional power
        raise NetdefError(f"lr_policy '{param.lr_policy}' gives a complex rate at iteration {it}; check "
                          "gamma and power")
    return rate, current_step


def _policy_rate(param, it, current_step):
    policy, base = param.lr_policy, param.base_lr
    try:
        if policy == "fixed":
            return base, current_step
        if policy == "step":
            current_step = it // param.stepsize
            return base * param.gamma ** current_step, current_step
        if policy == "exp":
            return base * param.gamma ** it, current_step
        if policy == "inv":
            return base * (1.0 + param.gamma * it) ** (-param.power), current_step
        if policy == "multistep":
            if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
                current_step += 1
                log.info("MultiStep Status: Iteration %d, step = %d", it, current_step)
            return base * param.gamma ** current_step, current_step
        if policy == "poly":
            # past max_iter (step() may go on) the rate stays 0 instead of turning complex
            return base * max(0.0, 1.0 - it / param.max_iter) ** param.power, current_step
        if policy == "sigmoid":
            return base * (1.0 / (1.0 + math.exp(-param.gamma * (it - param.stepsize)))), current_step
    except (ArithmeticError, ValueError, TypeError) as e:
        raise NetdefError(f"lr_policy '{policy}' cannot be computed at iteration {it} ({type(e).__name__}: "
                          f"{e}); check base_lr, gamma, power, stepsize and max_iter") from None
    raise NetdefError(f"unknown lr_policy '{policy}'")


# ---------------------------------------------------------------------------------------------
# SolverState files


def read_solverstate(path):
    """(SolverState, netdef extras dict or None) from a .solverstate."""
    state = proto.read_binary(path, pb.SolverState, "solverstate (SolverState)")
    extra = None
    if state.HasField("netdef_state"):
        try:
            extra = json.loads(state.netdef_state.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ParseError(f"corrupt netdef_state in the solverstate: {str(e)[:200]}", file=os.fspath(path)) from None
        if not isinstance(extra, dict) or extra.get("format") != STATE_FORMAT:
            raise ParseError(f"netdef_state of an unknown format: {str(extra)[:80]}", file=os.fspath(path))
    return state, extra


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


# ---------------------------------------------------------------------------------------------


class Solver:
    """The training loop (pycaffe's caffe.Solver). Subclasses define the update rule.

    Solver(solver, dtype=np.float32, backend=None, filename=None): `solver` is a path, prototxt
    text or SolverParameter (`filename`: where paths are relative to, for the latter two).
    The device is the current mode's (netdef.set_mode_gpu / set_device), as in pycaffe."""

    type = None
    #: history blobs per learnable param (AdaDelta and Adam keep two)
    history_per_param = 1

    def __init__(self, solver, *, dtype=np.float32, backend=None, filename=None):
        self.param, self.filename = read_solver(solver, filename)
        if self.type and self.param.type != self.type and self.param.HasField("type"):
            log.warning("solver file asks for type '%s'; running %s as requested",
                        self.param.type, type(self).__name__)
        self.dir = os.path.dirname(os.path.abspath(self.filename)) if self.filename else os.getcwd()
        self.check_rule()
        if self.param.random_seed >= 0:
            set_random_seed(self.param.random_seed)
        self.backend = backend or get_backend()
        self.dtype = np.dtype(dtype)
        self.net = self._init_train_net()
        self.net.share_diffs = True  # nobody reads a training net's activation diffs (see Net)
        self.test_nets = self._init_test_nets()
        for w in self.param.weights:
            self.copy_trained_layers(self._path(w))
        self.history = [Blob(p.shape, dtype=self.dtype, backend=self.backend, name=f"history{i}")
                        for i in range(self.history_per_param)
                        for p in self.net.learnable_params]
        self.iter = 0
        self.current_step = 0
        self.callbacks = []
        self.losses = []  # raw loss of every iteration this solver ran (for inspection and tests)
        self._smoothed = []
        self.smoothed_loss = 0.0
        self._requests = []
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
        p = os.path.expanduser(p)
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(self.dir, p))

    def _error(self, message):
        return ParseError(message, file=self.filename)

    def _make_net(self, source, phase, extra_state):
        """A Net from a path or NetParameter in `phase`, its NetState merged with extra_state
        (train_state / test_state) as Caffe merges them."""
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
            self._share_trained_layers(net)
            nets.append(net)
        return nets

    def _share_trained_layers(self, net):
        """Let `net` use the train net's param blobs for every layer of the same name (Caffe's
        ShareTrainedLayersWith): tests see the current weights without copies."""
        for name, layer in net.layer_dict.items():
            src = self.net.layer_dict.get(name)
            if src is None or not layer.blobs:
                continue
            if len(src.blobs) != len(layer.blobs):
                raise NetdefError(f"the test net has {len(layer.blobs)} param blobs for this layer, "
                                  f"the train net {len(src.blobs)}", layer=name)
            for i, (mine, theirs) in enumerate(zip(layer.blobs, src.blobs)):
                if mine.shape != theirs.shape:
                    raise NetdefError(f"param {i} has shape {mine.shape} in the test net and "
                                      f"{theirs.shape} in the train net", layer=name)
                layer.blobs[i] = theirs

    def copy_trained_layers(self, path):
        """Load weights by layer name into the train and test nets (fine-tuning, --weights)."""
        log.info("Finetuning from %s", path)
        self.net.copy_from(path)
        for net in self.test_nets:
            net.copy_from(path)

    def add_callback(self, on_start=None, on_gradients_ready=None):
        """pycaffe's add_callback: called at the start of each iteration (after testing) and
        once its gradients are computed (before the reduction and the update)."""
        self.callbacks.append((on_start, on_gradients_ready))

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
            loss = self.compute_gradients()
            self.losses.append(loss)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                log.info("Iteration %d, loss = %s", self.iter, _g(self.smoothed_loss))
                self._log_outputs(self.net, "Train", self._net_outputs(self.net), 1)
            for _, on_ready in self.callbacks:
                if on_ready:
                    on_ready()
            self.reduce_gradients()
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

    def reduce_gradients(self):
        """Where data-parallel training sums the learnable params' diffs across devices or
        processes (e.g. an NCCL/MPI all-reduce); nothing to do on one device."""

    def apply_update(self):
        """Learning rate, clipping, normalization, regularization and the update rule."""
        p = self.param
        rate, self.current_step = learning_rate(p, self.iter, self.current_step)
        if p.display and self.iter % p.display == 0:
            log.info("Iteration %d, lr = %s", self.iter, _g(rate))
        scale = self._clip_scale() / p.iter_size
        l1 = int(p.regularization_type == "L1")
        net = self.net
        for i, blob in enumerate(net.learnable_params):
            lr_mult = net.params_lr[i]
            if lr_mult == 0:
                continue  # frozen: its update is 0 whatever the rule
            decay = p.weight_decay * net.params_weight_decay[i]
            self.update_param(i, blob, rate * lr_mult, scale, decay, l1)

    def update_param(self, i, blob, rate, scale, decay, l1):
        raise NotImplementedError

    def _history(self, i, k=0):
        return self.history[k * len(self.net.learnable_params) + i].data

    def _clip_scale(self):
        clip = self.param.clip_gradients
        if clip < 0:
            return 1.0
        xp = self.backend.xp
        sumsq = 0.0
        for blob in self.net.learnable_params:
            d = blob.diff.reshape(-1)
            sumsq += float(xp.dot(d, d))
        norm = math.sqrt(sumsq)
        if norm > clip:
            factor = clip / norm
            log.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale factor %s",
                     _g(norm), _g(clip), _g(factor))
            return factor
        return 1.0

    # ---- output -----------------------------------------------------------------------------
    @staticmethod
    def _loss_weights(net):
        weights = {}
        for name, layer in net.layer_dict.items():
            for t, w in zip(net.top_names[name], getattr(layer, "loss_weights", [])):
                weights[t] = w
        return weights

    def _net_outputs(self, net):
        """[(name, flat float64 values or None when too many to print)] of the net's outputs."""
        out = []
        for name in net.outputs:
            blob = net.blobs[name]
            if blob.count > MAX_PRINTED_VALUES:
                out.append((name, None))
            else:
                out.append((name, self.backend.to_numpy(blob.data).astype(np.float64).reshape(-1)))
        return out

    def _log_outputs(self, net, kind, outputs, divisor):
        weights = self._loss_weights(net)
        k = 0
        for name, values in outputs:
            if values is None:
                continue
            w = weights.get(name, 0.0)
            for v in values:
                v = v / divisor
                extra = f" (* {_g(w)} = {_g(w * v)} loss)" if w else ""
                log.info("    %s net output #%d: %s = %s%s", kind, k, name, _g(v), extra)
                k += 1

    # ---- testing ------------------------------------------------------------------------------
    def test_all(self):
        for i in range(len(self.test_nets)):
            if self._stop:
                break
            self.test(i)

    def test(self, i=0):
        """Run test net i for test_iter[i] batches; log its outputs averaged (and, for a
        segmentation net with 'score' and 'label' blobs, pixel accuracy and IU)."""
        log.info("Iteration %d, Testing net (#%d)", self.iter, i)
        net = self.test_nets[i]
        n = self.param.test_iter[i]
        sums, loss = None, 0.0
        seg = _SegmentationAccumulator(net, self.backend)
        for _ in range(n):
            while True:
                action = self._take_request()
                if action is None:
                    break
                if action == "snapshot":
                    self.snapshot()
                elif action == "stop":
                    self.snapshot()
                    self._stop = True
            if self._stop:
                log.info("Test interrupted.")
                return None
            loss += net.forward_range()
            outs = self._net_outputs(net)
            if sums is None:
                sums = [(name, None if v is None else v.copy()) for name, v in outs]
            else:
                for (_, acc), (_, v) in zip(sums, outs):
                    if acc is not None:
                        acc += v
            seg.add()
        if self.param.test_compute_loss:
            log.info("Test loss: %s", _g(loss / max(n, 1)))
        if sums is not None:
            self._log_outputs(net, "Test", sums, n)
        result = seg.result()
        if result is not None:
            log.info("    Test net #%d segmentation: pixel accuracy = %s, mean accuracy = %s, "
                     "mean IU = %s, fw IU = %s", i, _g(result["pixel_accuracy"]),
                     _g(result["mean_accuracy"]), _g(result["mean_iu"]), _g(result["fw_iu"]))
        return result

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

    # ---- snapshots ----------------------------------------------------------------------------
    @property
    def snapshot_prefix(self):
        prefix = self.param.snapshot_prefix
        stem = os.path.splitext(os.path.basename(self.filename))[0] if self.filename else None
        if not prefix:
            # no solver file to name them after (a solver built in code): the net's name
            return os.path.join(self.dir, stem or self.net.name or "netdef")
        if prefix.endswith(("/", os.sep)) and stem:
            prefix += stem
        return self._path(prefix)

    def snapshot_filename(self, ext):
        return f"{self.snapshot_prefix}_iter_{self.iter}{ext}"

    def _check_snapshot_prefix(self):
        d = os.path.dirname(self.snapshot_prefix) or "."
        if not os.path.isdir(d):
            raise TrainingError(f"cannot write snapshots: directory '{d}' of snapshot_prefix "
                                f"'{self.snapshot_prefix}' does not exist")
        if not os.access(d, os.W_OK):
            raise TrainingError(f"cannot write snapshots: directory '{d}' is not writable")

    def snapshot(self):
        """Write <prefix>_iter_<N>.caffemodel and .solverstate (each atomically). Non-finite
        weights are never written: they stop training and the last snapshot stays the last."""
        self._check_finite_params()
        model = self.snapshot_filename(".caffemodel")
        log.info("Snapshotting to binary proto file %s", model)
        try:
            proto.write_binary(self.net.to_proto(write_diff=self.param.snapshot_diff), model)
            state_file = self.snapshot_filename(".solverstate")
            log.info("Snapshotting solver state to binary proto file %s", state_file)
            proto.write_binary(self._solver_state(model), state_file)
        except NetdefError as e:
            raise TrainingError(f"snapshot failed ({e}); the previous snapshot "
                                f"{self.last_snapshot or '(none)'} is intact") from None
        self._last_snapshot_iter = self.iter
        self.last_snapshot = state_file
        return state_file

    def _check_finite_params(self):
        """An update can diverge while the loss it came from was finite (an infinite gradient);
        the loss check would only see it at the next forward, after a snapshot had saved it."""
        xp = self.backend.xp
        for name, layer in self.net.layer_dict.items():
            for k, blob in enumerate(layer.blobs):
                if not bool(xp.isfinite(blob.data).all()):
                    kept = (f"the last snapshot ({self.last_snapshot}) is intact" if self.last_snapshot
                            else "no snapshot was written")
                    raise TrainingError(
                        f"iteration {self.iter}: param {k} of layer '{name}' ({layer.type}) is "
                        f"non-finite after the update of iteration {self.iter - 1} (the loss was "
                        f"finite, a gradient was not); not snapshotting it: {kept}. Try a lower "
                        "base_lr or clip_gradients.")

    def _solver_state(self, model):
        state = pb.SolverState(iter=self.iter, learned_net=model, current_step=self.current_step)
        for h in self.history:
            proto.blob_to_proto(h.to_numpy(), state.history.add())
        extra = {"format": STATE_FORMAT, "rng": self.backend.rng_state(), "layers": self._layer_states()}
        state.netdef_state = json.dumps(extra, default=_json_default, sort_keys=True).encode("utf-8")
        return state

    def _nets(self):
        return [("train", self.net)] + [(f"test{i}", n) for i, n in enumerate(self.test_nets)]

    def _layer_states(self):
        out = {}
        for key, net in self._nets():
            states = {name: layer.get_state() for name, layer in net.layer_dict.items()
                      if callable(getattr(layer, "get_state", None))}
            if states:
                out[key] = states
        return out

    def restore(self, path):
        """Continue from a .solverstate: iteration, weights, history, lr step, and (netdef
        snapshots) the random generators and data readers' positions."""
        path = os.fspath(path)
        state, extra = read_solverstate(path)
        if state.iter < 0 or state.current_step < 0:
            raise ParseError(f"negative iteration ({state.iter}) or lr step ({state.current_step}) in the "
                             "solverstate (corrupt file?)", file=path)
        self.iter = state.iter
        if state.learned_net:
            self.net.copy_from(self._find_learned_net(state.learned_net, path))
        self.current_step = state.current_step
        if len(state.history) != len(self.history):
            raise ParseError(f"the solverstate has {len(state.history)} history blobs, this "
                             f"{type(self).__name__} on this net needs {len(self.history)} "
                             "(another solver type or net?)", file=path)
        log.info("%s: restoring history", type(self).__name__)
        for k, (h, bp) in enumerate(zip(self.history, state.history)):
            values = proto.proto_to_array(bp, self.dtype, f"history blob {k}: ")
            if values.shape != h.shape:
                raise ParseError(f"history blob {k} has shape {values.shape}, the param has {h.shape}",
                                 file=path)
            h.data[...] = self.backend.asarray(values, dtype=self.dtype)
        if extra is None:
            log.info("%s has no netdef state (a Caffe snapshot?): random generators and data "
                     "readers start afresh", path)
            return
        try:
            self.backend.set_rng_state(extra.get("rng") or {})
            layers = extra.get("layers") or {}
            for key, net in self._nets():
                saved = layers.get(key, {})
                for name, layer in net.layer_dict.items():
                    if callable(getattr(layer, "set_state", None)) and name in saved:
                        layer.set_state(saved[name])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, BackendError) as e:
            # netdef_state is JSON of the expected shape unless the file was damaged or edited
            raise ParseError(f"corrupt netdef_state in the solverstate: {type(e).__name__}: {str(e)[:200]}",
                             file=path) from None
        self._last_snapshot_iter = self.iter
        self.last_snapshot = path

    def _find_learned_net(self, learned, state_path):
        """The caffemodel beside the solverstate (so snapshot directories can move), else the
        stored path as given."""
        beside = os.path.join(os.path.dirname(os.path.abspath(state_path)), os.path.basename(learned))
        if os.path.isfile(beside):
            return beside
        return learned

    # ---- signals and progress -------------------------------------------------------------------
    def request(self, action):
        """Ask the loop to 'snapshot' or 'stop' (and snapshot) after the current iteration
        (what SIGHUP and SIGINT do)."""
        if action not in ("snapshot", "stop"):
            raise ValueError("action must be 'snapshot' or 'stop'")
        self._requests.append(action)

    def _take_request(self):
        if not self._requests:
            return None
        action = "stop" if "stop" in self._requests else "snapshot"
        self._requests.clear()
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

        def on_int(signum, frame):
            if "stop" in self._requests:
                raise KeyboardInterrupt
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

        with logging_redirect_tqdm():
            bar = tqdm(total=self.param.max_iter, initial=self.iter, file=sys.stdout, unit="iter",
                       dynamic_ncols=True, leave=True)
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None
                bar.close()


class _SegmentationAccumulator:
    """Confusion matrix over test batches of a net with 'score' (N x C x ...) and 'label' blobs
    (255 = ignore), with netdef.metrics; disabled (with a note) when they do not fit."""

    def __init__(self, net, backend):
        self.net, self.backend, self.score = net, backend, None
        if "score" in net.blobs and "label" in net.blobs:
            from .metrics import SegmentationScore

            s = net.blobs["score"]
            if s.num_axes >= 2 and s.shape[1] > 1:
                self.score = SegmentationScore(s.shape[1], ignore_label=255)

    def add(self):
        if self.score is None:
            return
        from .metrics import confusion_matrix

        s, lab = self.net.blobs["score"], self.net.blobs["label"]
        pred = self.backend.xp.argmax(s.data, axis=1)
        if lab.count != pred.size:
            log.info("(no segmentation metrics: label %s does not match score %s)", lab.shape, s.shape)
            self.score = None
            return
        pred = self.backend.to_numpy(pred)
        labels = self.backend.to_numpy(lab.data).reshape(pred.shape)
        try:
            self.score.hist += confusion_matrix(labels, pred, self.score.num_classes, 255)
        except NetdefError as e:
            log.info("(no segmentation metrics: %s)", e)
            self.score = None

    def result(self):
        return None if self.score is None else self.score.result()


@register_solver("SGD")
class SGDSolver(Solver):
    """Stochastic gradient descent with momentum: h = rate g + momentum h, w -= h."""

    def update_param(self, i, blob, rate, scale, decay, l1):
        self.backend.kernels("solver").sgd_update(
            blob.count, blob.diff, blob.data, self._history(i), scale, decay, l1, rate,
            float(self.param.momentum))


@register_solver("Nesterov")
class NesterovSolver(Solver):
    """Nesterov's accelerated gradient: h' = momentum h + rate g, w -= (1 + momentum) h' - momentum h."""

    def update_param(self, i, blob, rate, scale, decay, l1):
        self.backend.kernels("solver").nesterov_update(
            blob.count, blob.diff, blob.data, self._history(i), scale, decay, l1, rate,
            float(self.param.momentum))


@register_solver("AdaGrad")
class AdaGradSolver(Solver):
    """AdaGrad: h += g^2, w -= rate g / (sqrt(h) + delta)."""

    def check_rule(self):
        if self.param.momentum != 0:
            raise self._error("momentum cannot be used with AdaGrad (set momentum: 0)")

    def update_param(self, i, blob, rate, scale, decay, l1):
        self.backend.kernels("solver").adagrad_update(
            blob.count, blob.diff, blob.data, self._history(i), scale, decay, l1, rate,
            float(self.param.delta))


@register_solver("RMSProp")
class RMSPropSolver(Solver):
    """RMSProp: h = rms_decay h + (1 - rms_decay) g^2, w -= rate g / (sqrt(h) + delta)."""

    def check_rule(self):
        if self.param.momentum != 0:
            raise self._error("momentum cannot be used with RMSProp (set momentum: 0)")
        if not 0 <= self.param.rms_decay < 1:
            raise self._error(f"rms_decay must lie in [0, 1), got {self.param.rms_decay}")

    def update_param(self, i, blob, rate, scale, decay, l1):
        self.backend.kernels("solver").rmsprop_update(
            blob.count, blob.diff, blob.data, self._history(i), scale, decay, l1, rate,
            float(self.param.rms_decay), float(self.param.delta))


@register_solver("AdaDelta")
class AdaDeltaSolver(Solver):
    """AdaDelta (momentum is the decay of both running averages; two history blobs per param)."""

    history_per_param = 2

    def update_param(self, i, blob, rate, scale, decay, l1):
        self.backend.kernels("solver").adadelta_update(
            blob.count, blob.diff, blob.data, self._history(i, 0), self._history(i, 1), scale,
            decay, l1, rate, float(self.param.momentum), float(self.param.delta))


@register_solver("Adam")
class AdamSolver(Solver):
    """Adam (beta1 = momentum, beta2 = momentum2, eps = delta), the bias correction
    sqrt(1 - beta2^t) / (1 - beta1^t), t = iter + 1, folded into the rate."""

    history_per_param = 2

    def check_rule(self):
        for f in ("momentum", "momentum2"):
            if not 0 <= getattr(self.param, f) < 1:
                raise self._error(f"{f} (Adam's beta{1 if f == 'momentum' else 2}) must lie in [0, 1), "
                                  f"got {getattr(self.param, f)}")

    def update_param(self, i, blob, rate, scale, decay, l1):
        b1, b2 = float(self.param.momentum), float(self.param.momentum2)
        t = self.iter + 1
        rate_t = rate * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        self.backend.kernels("solver").adam_update(
            blob.count, blob.diff, blob.data, self._history(i, 0), self._history(i, 1), scale,
            decay, l1, rate_t, b1, b2, float(self.param.delta))


def get_solver(solver, **kwargs):
    """The solver its `type` names (pycaffe's caffe.get_solver)."""
    param, filename = read_solver(solver, kwargs.pop("filename", None))
    return SOLVERS[param.type](param, filename=filename, **kwargs)


# ---------------------------------------------------------------------------------------------
# Command line


def add_device_arguments(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--gpu", type=int, metavar="N", help="run on GPU N")
    g.add_argument("--cpu", action="store_true", help="run on the CPU")
    p.add_argument("--tf32", action="store_true",
                   help="GPU: float32 GEMMs on TF32 tensor cores (faster, 10-bit mantissas; "
                        "off by default, as in Caffe)")


def select_device(args, solver_param=None):
    """--cpu / --gpu N, else the solver's solver_mode if the file sets it (Caffe: GPU only when
    asked), else the CPU. Logs the choice."""
    from . import backend as be

    gpu = None
    if getattr(args, "gpu", None) is not None:
        gpu = args.gpu
    elif not getattr(args, "cpu", False) and solver_param is not None and \
            solver_param.HasField("solver_mode") and solver_param.solver_mode == pb.SolverParameter.GPU:
        gpu = solver_param.device_id
    if gpu is None:
        be.set_mode_cpu()
        log.info("Use CPU.")
    else:
        be.set_device(gpu)
        be.set_mode_gpu()
        name = ""
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(gpu)
            name = f": {props['name'].decode() if isinstance(props['name'], bytes) else props['name']}"
        except Exception:
            pass
        log.info("Using GPU %d%s", gpu, name)
    if getattr(args, "tf32", False):
        if gpu is None:
            log.warning("--tf32 has no effect on the CPU: its GEMMs are always float32")
        else:
            be.set_tf32(True)
            log.info("TF32 on: float32 GEMMs run on tensor cores")


class GlogFormatter(logging.Formatter):
    """Caffe's (glog's) line prefix, `I1123 01:02:03.456789 12345 solver.py:412] message`:
    tools/extra/parse_log.py reads the time from it, and parse_log.sh finds '] Solving ' and
    the values by their column ($9 of ', loss = ' lines)."""

    def format(self, record):
        t = time.localtime(record.created)
        micros = int((record.created % 1) * 1e6)
        prefix = (f"{record.levelname[:1]}{time.strftime('%m%d %H:%M:%S', t)}.{micros:06d} "
                  f"{record.process:5d} {record.filename}:{record.lineno}] ")
        return prefix + super().format(record)


def add_log_format_argument(p):
    p.add_argument("--log-format", choices=["plain", "glog"], default="plain",
                   help="glog: prefix every line as Caffe does (level, date, time, pid, "
                        "file:line), for Caffe's parse_log.py / parse_log.sh")


def set_log_format(args):
    if getattr(args, "log_format", "plain") == "glog":
        for h in logging.getLogger().handlers:
            h.setFormatter(GlogFormatter("%(message)s"))


def _configure_train(p):
    p.add_argument("solver", help="solver .prototxt")
    p.add_argument("--weights", help="caffemodel(s) to fine-tune from, comma-separated")
    p.add_argument("--snapshot", help=".solverstate to resume from")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar with ETA (auto: when stdout is a terminal)")
    add_log_format_argument(p)
    add_device_arguments(p)


@subcommand("train", "train a net with a solver file; logs as Caffe does", _configure_train)
def cmd_train(args):
    if args.snapshot and args.weights:
        raise NetdefError("give --snapshot to resume or --weights to fine-tune, not both")
    set_log_format(args)
    param, filename = read_solver(args.solver)
    select_device(args, param)
    log.info("Starting Optimization")
    solver = get_solver(param, filename=filename)
    if args.weights:
        for w in args.weights.split(","):
            if w:
                solver.copy_trained_layers(w)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    with solver.handle_signals():
        solver.solve(args.snapshot, progress=progress)
    return 0


def _configure_test(p):
    p.add_argument("net", help="net .prototxt (built in phase TEST)")
    p.add_argument("--weights", required=True, help="caffemodel(s), comma-separated")
    p.add_argument("--iterations", type=int, default=50, help="batches to run (default 50)")
    add_log_format_argument(p)
    add_device_arguments(p)


@subcommand("test", "score a net: outputs averaged over batches (and segmentation metrics)",
            _configure_test)
def cmd_test(args):
    if args.iterations < 1:
        raise NetdefError(f"--iterations must be >= 1, got {args.iterations}")
    set_log_format(args)
    select_device(args)
    net = Net(args.net, TEST)
    for w in args.weights.split(","):
        if w:
            net.copy_from(w)
    backend = net.backend
    log.info("Running for %d iterations.", args.iterations)
    weights = Solver._loss_weights(net)
    seg = _SegmentationAccumulator(net, backend)
    sums = None
    loss = 0.0
    for i in range(args.iterations):
        loss += net.forward_range()
        outs = [(n, None if net.blobs[n].count > MAX_PRINTED_VALUES else
                 backend.to_numpy(net.blobs[n].data).astype(np.float64).reshape(-1)) for n in net.outputs]
        for name, v in outs:
            if v is not None:
                for x in v:
                    log.info("Batch %d, %s = %s", i, name, _g(x))
        if sums is None:
            sums = [(n, None if v is None else v.copy()) for n, v in outs]
        else:
            for (_, acc), (_, v) in zip(sums, outs):
                if acc is not None:
                    acc += v
        seg.add()
    log.info("Loss: %s", _g(loss / args.iterations))
    for name, acc in sums:
        if acc is None:
            continue
        w = weights.get(name, 0.0)
        for x in acc / args.iterations:
            extra = f" (* {_g(w)} = {_g(w * x)} loss)" if w else ""
            log.info("%s = %s%s", name, _g(x), extra)
    result = seg.result()
    if result is not None:
        log.info("pixel accuracy = %s", _g(result["pixel_accuracy"]))
        log.info("mean accuracy = %s", _g(result["mean_accuracy"]))
        log.info("mean IU = %s", _g(result["mean_iu"]))
        log.info("fw IU = %s", _g(result["fw_iu"]))
    return 0
