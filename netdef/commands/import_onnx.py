"""`netdef import-onnx model.onnx -o net.prototxt --weights out.caffemodel [--input-shape
NAME=N,C,H,W] [--check]`: an ONNX model as a Caffe net and its weights (netdef.onnx.to_caffe;
the operators that map are listed in netdef/onnx/importer.py and the README's "Deploying").

--check runs the ONNX model in ONNX Runtime and the imported net in netdef on one random input
and prints every output's largest error; the exit status is 1 above --tolerance.
"""
from ..errors import NetdefError
from ..onnx import compare, to_caffe
from ..onnx._deps import require_onnx
from .export_onnx import add_check_arguments, parse_shapes, report

HELP = "convert an ONNX model to a Caffe prototxt and caffemodel"


def configure(p):
    p.add_argument("model", help="the .onnx file")
    p.add_argument("-o", "--output", required=True, help="the .prototxt to write")
    p.add_argument("--weights", help="the .caffemodel to write")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=N,C,H,W",
                   help="the shape of an input with symbolic dimensions (repeatable)")
    add_check_arguments(p, "compare ONNX Runtime and netdef on a random input")


def run(args):
    onnx = require_onnx()
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
    return report([("the model's input shapes", compare(model, net))], args.tolerance)
