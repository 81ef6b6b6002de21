"""`netdef upgrade-solver IN OUT`: a solver prototxt's legacy `solver_type` enum rewritten as
today's `type` string (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam), as Caffe's
upgrade_solver_proto_text. The upgrade is netdef.solver.upgrade_solver, the one every loaded
solver goes through; OUT is written atomically, everything else in the file is kept."""

from ..core import netdef_pb2 as pb
from ..core import proto
from ..solver import upgrade_solver

HELP = "rewrite a solver's legacy solver_type as today's type"


def configure(p):
    p.add_argument("input", help="solver .prototxt")
    p.add_argument("output", help="where to write the upgraded solver")


def run(args):
    param, _ = proto.read_text(args.input, pb.SolverParameter)
    if param.HasField("solver_type"):
        print(f"Upgrading the deprecated 'solver_type' field (enum) to 'type' (string): {args.input}")
    else:
        print(f"File already in latest proto format: {args.input}")
    upgrade_solver(param, args.input)
    proto.write_text(param, args.output)
    print(f"Wrote upgraded SolverParameter text proto to {args.output}")
    return 0
