"""`netdef draw <net.prototxt> out.(dot|svg|png|pdf)`: the layer graph (netdef.draw)."""
from ..core import netdef_pb2 as pb
from ..pycaffe.draw import draw

HELP = "draw the layer graph (DOT, or SVG/PNG/PDF through Graphviz)"


def configure(p):
    p.add_argument("net")
    p.add_argument("output", help="out.dot, or .svg/.png/.pdf with Graphviz installed")
    p.add_argument("--rankdir", default="LR", choices=["LR", "TB", "BT", "RL"])
    p.add_argument("--phase", default="all", choices=["train", "test", "all", "TRAIN", "TEST", "ALL"])


def run(args):
    phase = {"train": pb.TRAIN, "test": pb.TEST, "all": None}[args.phase.lower()]
    print(f"wrote {draw(args.net, args.output, phase, args.rankdir)}")
    return 0
