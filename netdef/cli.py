"""The `netdef` command: `netdef <subcommand> ...`, its subcommands being netdef/commands/.

The caffe tool's spellings are accepted beside netdef's own: `netdef train --solver=S`,
`netdef test --model=M --weights=W --iterations=N`, and gflags' single-dash forms of the long
options (`-solver S`, `-gpu 0`), which main() turns into --options before parsing.

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


def long_options(parser):
    """Every --option of the parser and its subcommands."""
    found = set()
    for action in parser._actions:
        found.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= long_options(sub)
    return found


def caffe_spellings(argv, known):
    """gflags' single-dash spellings of the caffe tool (`-solver S`, `-gpu=0`, `-weights W`) as
    argparse's --options; only for names in `known`, so short options and negative numbers
    pass unchanged."""
    out = []
    for i, a in enumerate(argv):
        if a == "--":
            return out + list(argv[i:])
        if len(a) > 2 and a[0] == "-" and a[1] != "-" and f"-{a.split('=', 1)[0]}" in known:
            a = "-" + a
        out.append(a)
    return out


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(caffe_spellings(argv, long_options(parser)))
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
