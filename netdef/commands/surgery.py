"""`netdef surgery convolutionalize|atrous|transplant|bilinear NET -o OUT`: the net surgery of
netdef.surgery on prototxt and caffemodel files."""
from ..core import netdef_pb2 as pb
from ..core import proto
from ..errors import NetdefError
from ..core.net import Net
from ..fcn.surgery import atrous, bilinear, convolutionalize, transplant

HELP = "convolutionalize, atrous, transplant, bilinear"


def configure(p):
    p.add_argument("operation", choices=["convolutionalize", "atrous", "transplant", "bilinear"])
    p.add_argument("net", help="net .prototxt (the target net for transplant)")
    p.add_argument("-o", "--output", required=True, help="output .prototxt (or .caffemodel for "
                   "transplant/bilinear)")
    p.add_argument("--weights", help="input .caffemodel")
    p.add_argument("--weights-out", help="output .caffemodel (convolutionalize)")
    p.add_argument("--layers", help="comma-separated layer names to operate on")
    p.add_argument("--output-stride", type=int, default=8, help="atrous: 8 or 16")
    p.add_argument("--source-net", help="transplant: the net the --weights belong to")
    p.add_argument("--target-weights", help="transplant: start the target from these weights")


def run(args):
    if args.operation == "convolutionalize":
        net = Net(args.net, pb.TEST, weights=args.weights)
        param, weights = convolutionalize(net, args.layers.split(",") if args.layers else None)
        proto.write_text(param, args.output)
        if args.weights_out:
            proto.write_binary(weights, args.weights_out)
        print(f"wrote {args.output}" + (f" and {args.weights_out}" if args.weights_out else ""))
    elif args.operation == "atrous":
        param, _ = proto.read_net_text(args.net)
        proto.write_text(atrous(param, args.output_stride), args.output)
        print(f"wrote {args.output} (output stride {args.output_stride})")
    elif args.operation == "transplant":
        if not args.weights:
            raise NetdefError("transplant needs --weights (the source caffemodel) and --source-net")
        source = Net(args.source_net, pb.TEST, weights=args.weights)
        target = Net(args.net, pb.TEST, weights=args.target_weights)
        copied, skipped = transplant(target, source)
        target.save(args.weights_out or args.output)
        print(f"copied {len(copied)} layers, skipped {len(skipped)}: {', '.join(skipped) or '-'}")
    elif args.operation == "bilinear":
        net = Net(args.net, pb.TEST, weights=args.weights)
        done = bilinear(net, args.layers.split(",") if args.layers else None)
        net.save(args.weights_out or args.output)
        print(f"bilinear weights in {', '.join(done) or 'no layer'}")
    return 0
