"""Loss scaling for reduced-precision backward passes (the policy: netdef/core/precision.py).

fp16 keeps gradients down to 2^-24 only: the small ones of a deep net round to 0 in the
products' operands. So the solver seeds backward with the loss weights times a scale S (Net.
loss_scale), every gradient grows by S, and the update divides the param gradients by S again
(before clipping, regularization and the rule: what they see is the gradient itself).

    static  (NetParameter.global_grad_scale): S fixed; a step whose param gradients are not all
            finite is skipped, and logged, S unchanged;
    dynamic (an fp16 backward without global_grad_scale): S starts at 2^16; a step whose
            gradients overflow is skipped and S halved (logged); after `interval` clean steps
            in a row S doubles (logged), so that S stays just below the overflow.

A skipped step still counts as an iteration (the learning-rate schedule, the display and the
snapshots move on), as PyTorch's GradScaler leaves its scheduler. The scaler's state travels in
the solverstate (netdef_state), so that a resumed run scales as the uninterrupted one.
"""
import logging
import math

from ..core.precision import DYNAMIC_INTERVAL

log = logging.getLogger("netdef")

#: S stays within [2^-24, 2^24]: below, no gradient would be representable anyway
_MIN_SCALE, _MAX_SCALE = 2.0 ** -24, 2.0 ** 24


class LossScaler:
    def __init__(self, kind, scale, interval=DYNAMIC_INTERVAL):
        if kind not in ("static", "dynamic"):
            raise ValueError(f"loss scaling is 'static' or 'dynamic', not {kind!r}")
        self.kind, self.scale, self.interval = kind, float(scale), int(interval)
        #: clean steps since S last changed, and steps skipped so far
        self.clean, self.skipped = 0, 0

    @classmethod
    def from_plan(cls, loss_scale):
        """The scaler of a precision.Plan's loss_scale ((kind, start) or None: no scaler)."""
        return None if loss_scale is None else cls(*loss_scale)

    def overflowed(self, blobs, xp):
        """True when a diff of `blobs` holds an inf or NaN: the sum of every diff, added on the
        device and read once (inf or NaN anywhere makes it non-finite; a finite sum that
        overflows counts as overflow too)."""
        total = sum(xp.sum(b.diff) for b in blobs)
        return not math.isfinite(float(total))

    def skip(self, iteration):
        """A step whose gradients overflowed: logged; a dynamic S halves."""
        self.skipped += 1
        self.clean = 0
        old = self.scale
        if self.kind == "dynamic":
            self.scale = max(_MIN_SCALE, self.scale / 2)
            log.info("Iteration %d, loss scale %g: gradients overflowed, update skipped; loss scale -> %g",
                     iteration, old, self.scale)
        else:
            log.warning("Iteration %d, loss scale %g (global_grad_scale): gradients overflowed, "
                        "update skipped", iteration, old)

    def step_done(self, iteration):
        """A clean step: after `interval` of them a dynamic S doubles."""
        self.clean += 1
        if self.kind == "dynamic" and self.clean >= self.interval and self.scale < _MAX_SCALE:
            self.scale = min(_MAX_SCALE, self.scale * 2)
            self.clean = 0
            log.info("Iteration %d, loss scale -> %g (%d steps without overflow)", iteration,
                     self.scale, self.interval)

    def get_state(self):
        return {"kind": self.kind, "scale": self.scale, "clean": self.clean, "skipped": self.skipped}

    def set_state(self, state):
        self.scale = float(state["scale"])
        self.clean, self.skipped = int(state["clean"]), int(state["skipped"])
