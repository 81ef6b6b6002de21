"""The `netdef` command: `netdef <subcommand> ...`, its subcommands being netdef/commands/.

Errors from bad input are printed in one or two lines (no traceback) with exit status 1;
`--debug` shows the traceback.
"""
import argparse
import logging
import sys

from .commands import COMMANDS
from .errors import NetdefError


def build_parser():
    parser = argparse.ArgumentParser(prog="netdef", description="Caffe-style networks with netdef's own kernels")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.HELP, description=command.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        command.configure(p)
        p.set_defaults(func=command.run)
    return parser


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
    sys.exit(main())
