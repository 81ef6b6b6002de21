"""`netdef import-onnx model.onnx -o net.prototxt --weights out.caffemodel [--input-shape
NAME=N,C,H,W] [--check]`: an ONNX model as a Caffe net and its weights (netdef.onnx.to_caffe;
the operators that map are listed in netdef/onnx/importer.py and the README's "Deploying").

--check runs the ONNX model in ONNX Runtime and the imported net in netdef on one random input
and prints every output's largest error; the exit status is 1 above --tolerance.
"""
from ..errors import NetdefError
from ..onnx import compare, to_caffe
from ..onnx.check import RTOL
from .export_onnx import parse_shapes

HELP = "convert an ONNX model to a Caffe prototxt and caffemodel"


def configure(p):
    p.add_argument("model", help="the .onnx file")
    p.add_argument("-o", "--output", required=True, help="the .prototxt to write")
    p.add_argument("--weights", help="the .caffemodel to write")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=N,C,H,W",
                   help="the shape of an input with symbolic dimensions (repeatable)")
    p.add_argument("--check", action="store_true",
                   help="compare ONNX Runtime and netdef on a random input")
    p.add_argument("--tolerance", type=float, default=RTOL,
                   help=f"--check's largest relative error (default {RTOL:g})")


def run(args):
    import onnx

    if not args.weights:
        print("no --weights: only the prototxt is written")
    net = to_caffe(args.model, args.output, args.weights, parse_shapes(args.input_shape))
    print(f"wrote {args.output}{' and ' + args.weights if args.weights else ''}: "
          f"{len(net.layers)} layers")
    if not args.check:
        return 0
    try:
        model = onnx.load(args.model)
    except Exception as e:
        raise NetdefError(f"could not read the ONNX model: {e}", file=args.model) from None
    worst = 0.0
    for name, (err, rel) in compare(model, net).items():
        print(f"check: {name}: max abs error {err:.3g}, relative {rel:.3g}")
        worst = max(worst, rel)
    if worst > args.tolerance:
        print(f"check FAILED: relative error {worst:.3g} above {args.tolerance:g}")
        return 1
    print(f"check passed (relative error <= {args.tolerance:g})")
    return 0
