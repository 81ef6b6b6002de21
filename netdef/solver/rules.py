"""The update rules: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta and Adam, each a Solver subclass
registered by its `type` name, and get_solver (pycaffe's caffe.get_solver), which picks the class
a solver file names.

Each rule's update_param launches its fused kernel of kernels/solver.cu (where the rules'
formulas are stated) on one learnable param: the diff is scaled, regularized, turned into the
update u (kept in the diff) and w -= u.
"""
import math

from .loop import Solver
from .params import SOLVERS, read_solver


def register_solver(type_name):
    """Class decorator: the Solver subclass that a solver file's `type: "<type_name>"` selects."""
    def deco(cls):
        cls.type = type_name
        SOLVERS[type_name] = cls
        return cls

    return deco


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
