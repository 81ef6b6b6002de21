"""Solvers: Caffe's training loop, learning-rate policies and update rules, test nets, snapshots
and exact resume.

    solver = netdef.get_solver('solver.prototxt')     # the class named by `type`
    solver.step(100); solver.solve(); solver.snapshot(); solver.restore('x.solverstate')

One module per concept:
  params.py      reading, upgrading and checking a SolverParameter; lr policies, learning_rate
  loop.py        Solver: building the train and test nets, step / solve, smoothed loss,
                 signals, progress bar, Caffe's log lines
  snapshot.py    snapshots and exact resume (.caffemodel + .solverstate with netdef_state)
  rules.py       the update rules (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam),
                 register_solver, get_solver
  evaluation.py  scoring a net over N batches (Solver.test and `netdef test`)
  parallel.py    pycaffe's solver count / rank and NCCL, for one process (data-parallel
                 training is not there yet)
"""
from .evaluation import MAX_PRINTED_VALUES, Evaluation, evaluate, log_outputs, net_outputs
from .loop import TEST, TRAIN, Solver
from .params import LR_POLICIES, SOLVERS, check_supported, learning_rate, read_solver, upgrade_solver
from .rules import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,
                    SGDSolver, get_solver, register_solver)
from .snapshot import STATE_FORMAT, Snapshots, read_solverstate

__all__ = [
    "Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "get_solver", "register_solver", "SOLVERS", "read_solver", "upgrade_solver",
    "check_supported", "learning_rate", "LR_POLICIES", "read_solverstate", "STATE_FORMAT",
    "Snapshots", "evaluate", "Evaluation", "net_outputs", "log_outputs", "MAX_PRINTED_VALUES",
    "TRAIN", "TEST",
]
