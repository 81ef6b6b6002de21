"""The `netdef` command: `netdef <subcommand> ...`.

Errors from bad input are printed in one or two lines (no traceback) with exit status 1;
`--debug` shows the traceback.
"""
import argparse
import logging
import sys

from .errors import NetdefError

SUBCOMMANDS = {}


def subcommand(name, help, configure=None):
    """Register `fn(args)` as a subcommand; `configure(parser)` adds its arguments."""

    def deco(fn):
        if configure is not None:
            fn.configure = configure
        SUBCOMMANDS[name] = (fn, help)
        return fn

    return deco


def _count_params(layer):
    return sum(b.count for b in layer.blobs)


def format_table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _phase(name):
    from . import TEST, TRAIN

    return {"train": TRAIN, "test": TEST}[name.lower()]


def _configure_info(p):
    p.add_argument("net", help="net .prototxt")
    p.add_argument("--phase", default="test", choices=["train", "test", "TRAIN", "TEST"])


@subcommand("info", "print every layer of a net: type, bottoms, tops with shapes, params, "
            "receptive field, stride and offset", _configure_info)
def cmd_info(args):
    from .net import Net

    from . import coord_map

    net = Net(args.net, _phase(args.phase))
    maps = coord_map.compute(net.param)

    def geometry(top):
        m = maps.get(top)
        if m is None:
            return ["", "", ""]
        fmt = lambda a, b: str(a) if a == b else f"{a}x{b}"
        return [fmt(m[0].rf, m[1].rf), fmt(m[0].jump, m[1].jump), fmt(m[0].offset, m[1].offset)]

    rows = []
    for name, layer in net.layer_dict.items():
        tops = net.top_names[name]
        shapes = ", ".join(f"{t} {'x'.join(map(str, net.blobs[t].shape))}" for t in tops)
        rows.append([name, layer.type, ", ".join(net.bottom_names[name]), shapes, f"{_count_params(layer):,}"]
                    + geometry(tops[0] if tops else None))
    print(format_table(rows, ["layer", "type", "bottoms", "tops", "params", "rf", "stride", "offset"]))
    total = sum(b.count for b in net.learnable_params)
    print(f"\n{len(net.layers)} layers, {total:,} learnable parameters, phase {args.phase.upper()}")



def build_parser():
    parser = argparse.ArgumentParser(prog="netdef", description="Caffe-style networks with netdef's own kernels")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    _load_subcommands()
    for name, (fn, help) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        getattr(fn, "configure", lambda p: None)(p)
        p.set_defaults(func=fn)
    return parser


def _load_subcommands():
    """Subcommands defined in other modules register themselves when imported."""
    import importlib

    for mod in ("netdef.solver", "netdef.surgery", "netdef.segment", "netdef.draw", "netdef.timing"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except NetdefError as e:
        if args.debug:
            raise
        print(f"netdef {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"netdef {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run netdef.cli's main, not this copy's: subcommand modules register into netdef.cli.
    from netdef.cli import main as _main

    sys.exit(_main())
