"""`netdef export-onnx DEPLOY.prototxt --weights W.caffemodel -o model.onnx [--opset N]
[--dynamic] [--check]`: the net as an ONNX model (netdef.onnx.export; what maps to what is in
netdef/onnx/exporter.py and the README's "Deploying").

--input-shape NAME=N,C,H,W exports at another input size than the prototxt's. --check runs the
model in ONNX Runtime next to netdef on a random input (with --dynamic also at a second size it
was not exported at) and prints every output's largest error; the exit status is 1 when one is
above --tolerance (relative to the output's largest magnitude).
"""
import logging

from ..core.net import TEST, Net
from ..errors import NetdefError
from ..onnx import DEFAULT_OPSET, compare, export
from ..onnx.check import RTOL

HELP = "export a net and its weights as an ONNX model (optionally checked in ONNX Runtime)"

log = logging.getLogger("netdef")


def configure(p):
    p.add_argument("net", help="deploy .prototxt")
    p.add_argument("--weights", help=".caffemodel (without: the fillers' initial weights)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--dynamic", action="store_true",
                   help="symbolic batch and height x width for 4-D inputs")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=N,C,H,W",
                   help="export at this input shape instead of the prototxt's (repeatable)")
    add_check_arguments(p, "run the model in ONNX Runtime on a random input and compare with netdef")


def parse_shapes(items):
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) <= 0:
            raise NetdefError(f"--input-shape '{item}': give NAME=N,C,H,W (positive sizes)")
        shapes[name] = shape
    return shapes


def run(args):
    net = Net(args.net, TEST, weights=args.weights)
    if not args.weights:
        log.warning("no --weights: the model holds the fillers' initial weights")
    shapes = parse_shapes(args.input_shape)
    for name, shape in shapes.items():
        if name not in net.inputs:
            raise NetdefError(f"--input-shape: '{name}' is not an input of the net "
                              f"(inputs: {', '.join(net.inputs) or 'none'})")
        net.blobs[name].reshape(shape)
    if shapes:
        net.reshape()
    model = export(net, args.output, opset=args.opset, dynamic=args.dynamic)
    print(f"wrote {args.output}: {len(model.graph.node)} nodes, opset {args.opset}"
          f"{', dynamic batch and H x W' if args.dynamic else ''}")
    if not args.check:
        return 0
    runs = [{}]
    if args.dynamic:
        runs.append({n: (s[0] + 1, s[1], s[2] + 7, s[3] + 5) for n in net.inputs
                     if len(s := net.blobs[n].shape) == 4})
    return report(((", ".join(f"{n} {s}" for n, s in shapes_.items()) or "the export shapes",
                    compare(model, net, shapes=shapes_)) for shapes_ in runs), args.tolerance)


def add_check_arguments(p, what):
    p.add_argument("--check", action="store_true", help=what)
    p.add_argument("--tolerance", type=float, default=RTOL,
                   help=f"--check's largest relative error (default {RTOL:g})")


def report(checks, tolerance):
    """Prints the errors of (where, {output: (abs, rel)}) pairs; the exit status."""
    worst = 0.0
    for where, results in checks:
        for name, (err, rel) in results.items():
            print(f"check at {where}: {name}: max abs error {err:.3g}, relative {rel:.3g}")
            worst = max(worst, rel)
    if worst > tolerance:
        print(f"check FAILED: relative error {worst:.3g} above {tolerance:g}")
        return 1
    print(f"check passed (relative error <= {tolerance:g})")
    return 0
