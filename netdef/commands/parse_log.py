"""`netdef parse-log LOG [OUTDIR]`: Caffe's tools/extra/parse_log.py for netdef's and Caffe's logs
(glog format or netdef's plain lines): writes OUTDIR/<LOG name>.train and .test, CSV files with
NumIters, Seconds, LearningRate and one column per output (netdef/logparse.py)."""
import os

from ..errors import NetdefError
from ..watch.logparse import parse_log, write_csv

HELP = "training log -> LOG.train / LOG.test CSV files, as Caffe's parse_log.py"


def configure(p):
    p.add_argument("logfile_path", metavar="LOG", help="a training log (netdef's log file, a captured console)")
    p.add_argument("output_dir", metavar="OUTDIR", nargs="?",
                   help="where LOG.train and LOG.test go (default: the log's directory)")
    p.add_argument("--delimiter", default=",", help="column delimiter (default ',')")
    p.add_argument("--verbose", action="store_true", help="print the files' names and row counts")


def run(args):
    if args.output_dir is not None and not os.path.isdir(args.output_dir):
        raise NetdefError("no such directory", file=args.output_dir)
    log = parse_log(args.logfile_path)
    if not log.train and not log.test:
        raise NetdefError("no training lines (`Iteration N, loss = x`, `Test net output #k: ...`) "
                          "in this file", file=args.logfile_path)
    written = write_csv(log, args.output_dir, args.delimiter)
    for path in written:
        rows = log.train if path.endswith(".train") else log.test
        print(f"{path}: {len(rows)} rows" if args.verbose else path)
    if not log.test:
        print(f"no test lines in {args.logfile_path}: no .test file written")
    if not log.timed:
        print("the log has no glog timestamps: the Seconds column is empty")
    return 0
