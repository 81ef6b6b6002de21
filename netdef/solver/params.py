"""What a solver file may say: reading a SolverParameter (path, text or message), upgrading the
legacy `solver_type`, refusing fields netdef does not implement, and the learning-rate policies.

Learning-rate policies (t = iteration): fixed: base_lr; step: base_lr gamma^floor(t / stepsize);
exp: base_lr gamma^t; inv: base_lr (1 + gamma t)^-power; multistep: base_lr gamma^k after the
k-th stepvalue; poly: base_lr (1 - t / max_iter)^power; sigmoid: base_lr / (1 + e^(-gamma (t -
stepsize))).

Paths in a solver file (net, train_net, test_net, snapshot_prefix, weights) are relative to its
directory (resolved by the Solver, which knows the file).
"""
import logging
import math

from ..core import netdef_pb2 as pb
from ..core import proto
from ..errors import NetdefError, ParseError

log = logging.getLogger("netdef")

#: type name -> Solver class; filled by rules.register_solver. It lives here because a solver
#: file naming an unknown `type` is refused while it is read, before any class is chosen.
SOLVERS = {}

#: The legacy `solver_type` enum → the `type` string (Caffe's UpgradeSolverType).
_LEGACY_TYPES = {pb.SolverParameter.SGD: "SGD", pb.SolverParameter.NESTEROV: "Nesterov",
                 pb.SolverParameter.ADAGRAD: "AdaGrad", pb.SolverParameter.RMSPROP: "RMSProp",
                 pb.SolverParameter.ADADELTA: "AdaDelta", pb.SolverParameter.ADAM: "Adam"}

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


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
