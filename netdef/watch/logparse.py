"""Reading a training log into rows, and writing Caffe's parse_log.py CSV files.

    log = parse_log('snapshots/fcn8s-mini.log')   # a TrainingLog
    write_csv(log, 'out/')                         # out/fcn8s-mini.log.train, .test

Contract:
  * Input: the lines of a netdef or Caffe training log, in glog format (`I1129 21:31:15.123456
    pid file:line] msg`, as netdef's log file and `--log-format glog` write them) or plain
    (`Iteration 20, loss = 0.5`, netdef's console), mixed freely. Other lines are ignored.
  * Train rows: one per `Iteration N, loss = x` line (Caffe's later `Iteration N (x iter/s, ...),
    loss = x` too), with the `Train net output #k: name = v` lines that follow it, and the
    `Iteration N, lr = x` line of the same iteration.
    Test rows: one per `Iteration N, Testing net (#i)` line with its `Test net output #k` lines
    and netdef's `Test net #i segmentation: pixel accuracy = ..., mean accuracy = ..., mean IU
    = ..., fw IU = ...` line. A test row's LearningRate is the one logged for the latest
    iteration <= N (the rate at a test's iteration is logged after the test); so is a train
    row's without an lr line (the final `Iteration N, loss = x` after training).
  * Columns (Caffe's parse_log.py order): NumIters, Seconds, LearningRate, then one per output in
    the order logged (a name logged twice in a row, as multi-valued outputs are: name, name_1,
    ...); then netdef's extras: train SmoothedLoss (the `loss =` value: Caffe's average over
    average_loss iterations); test pixel_accuracy, mean_accuracy, mean_iu, fw_iu when logged,
    and TestNet when the log has more than one test net.
  * Seconds: from the glog timestamps, relative to the log's first timestamped line. glog
    omits the year: it is taken from the file's "Log file created at:" header, else from the
    file's modification time, and a date running backwards (31 Dec -> 1 Jan) adds a year.
    Plain lines carry no time: their Seconds is None in memory, an empty CSV field (pandas and
    numpy's genfromtxt read it as NaN).
  * A run resumed into the same log (a second `Solving` line, as `netdef train --snapshot`
    appends) replaces what the first run logged from the resumed iteration on, so the rows
    describe one training curve.
  * Values are floats (nan / inf included); NumIters ints.
"""
import csv
import datetime
import math
import os
import re
from dataclasses import dataclass, field

from ..errors import NetdefError

NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)"
GLOG = re.compile(r"^([IWEF])(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) +\d+ [^\]]*\] ?(.*)$")
CREATED = re.compile(r"^Log file created at: (\d{4})/(\d\d)/(\d\d)")
SOLVING = re.compile(r"Solving (\S*)")
COMMAND = re.compile(r"^Command line: (.*)$")
RESTORING = re.compile(r"Restoring previous solver status from")
LOSS = re.compile(rf"Iteration (\d+)(?: \([^)]*\))?, loss = ({NUM})")
LR = re.compile(rf"Iteration (\d+), lr = ({NUM})")
TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
OUTPUT = re.compile(rf"(Train|Test) net output #(\d+): (\S+) = ({NUM})(?: \(\* ({NUM}) = {NUM} loss\))?")
SEGMENTATION = re.compile(rf"Test net #(\d+) segmentation: pixel accuracy = ({NUM}), mean accuracy = "
                          rf"({NUM}), mean IU = ({NUM}), fw IU = ({NUM})")
SEGMENTATION_COLUMNS = ("pixel_accuracy", "mean_accuracy", "mean_iu", "fw_iu")
FIXED = ("NumIters", "Seconds", "LearningRate")


@dataclass
class TrainingLog:
    """What parse_log read. Rows are dicts keyed by column name."""

    path: str
    train: list = field(default_factory=list)
    test: list = field(default_factory=list)
    #: the net's name (from `Solving <name>`), or ''
    net_name: str = ""
    #: the command line netdef's log file records, or ''
    command_line: str = ""
    #: train output name -> loss weight (from `(* w = ... loss)`): the outputs that are losses
    loss_weights: dict = field(default_factory=dict)
    #: True when the log's lines carry glog timestamps
    timed: bool = False

    @property
    def name(self):
        return os.path.basename(self.path)

    @property
    def train_columns(self):
        return _columns(self.train, FIXED, ("SmoothedLoss",))

    @property
    def test_columns(self):
        multi = len({r.get("TestNet") for r in self.test}) > 1
        return _columns(self.test, FIXED, SEGMENTATION_COLUMNS + (("TestNet",) if multi else ()),
                        drop=() if multi else ("TestNet",))

    def column(self, rows, name):
        """[(NumIters, Seconds or nan, value)] of the rows that have `name`."""
        out = []
        for r in rows:
            v = r.get(name)
            if v is not None:
                s = r.get("Seconds")
                out.append((r["NumIters"], math.nan if s is None else s, v))
        return out

    def train_loss(self):
        """[(NumIters, Seconds, loss)]: the displayed iterations' total loss, sum of w * v over the
        Train net outputs that are losses; the `loss =` values when no train output is a loss."""
        out = []
        for r in self.train:
            if self.loss_weights:
                parts = [w * r[k] for k, w in self.loss_weights.items() if r.get(k) is not None]
                loss = sum(parts) if parts else None
            else:
                loss = r.get("SmoothedLoss")
            if loss is not None:
                s = r.get("Seconds")
                out.append((r["NumIters"], math.nan if s is None else s, loss))
        return out


def _columns(rows, head, tail, drop=()):
    cols = list(head)
    tail = [c for c in tail if c not in drop]
    for r in rows:
        for k in r:
            if k not in cols and k not in tail and k not in drop:
                cols.append(k)
    present = {k for r in rows for k in r}
    return cols + [c for c in tail if c in present]


def parse_log(path):
    """Read the log at `path` (see the module's contract)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        mtime = os.path.getmtime(path)
    except OSError as e:
        raise NetdefError(f"cannot read the log: {e.strerror}", file=path) from None
    return parse_lines(lines, path, year=datetime.datetime.fromtimestamp(mtime).year)


def parse_lines(lines, path="<lines>", year=None):
    log = TrainingLog(path)
    year = year or datetime.date.today().year
    start = prev = None
    iteration = None
    train_row = test_row = None
    lrs = {}
    runs = 0
    truncate = False
    for line in lines:
        line = line.rsplit("\r", 1)[-1]  # a console capture: keep what follows the progress bar
        m = CREATED.match(line)
        if m:
            year = int(m.group(1))
            continue
        seconds = None
        g = GLOG.match(line)
        if g:
            t = datetime.datetime(year, *(int(g.group(i)) for i in range(2, 7)), int(g.group(7)))
            if prev is not None and t < prev - datetime.timedelta(days=1):
                year += 1
                t = t.replace(year=year)
            prev = t
            start = start or t
            seconds = (t - start).total_seconds()
            msg = g.group(8)
            log.timed = True
        else:
            msg = line
        if "Solving " in msg and (m := SOLVING.search(msg)):
            log.net_name = log.net_name or m.group(1)
            runs += 1
            truncate = runs > 1
            continue
        if RESTORING.search(msg):
            truncate = True
            continue
        if (m := COMMAND.match(msg)) and not log.command_line:
            log.command_line = m.group(1)
            continue
        m = TESTING.search(msg) or LOSS.search(msg) or LR.search(msg)
        if m and truncate:
            # the resumed run starts at this iteration: what the first run logged from here is void
            cut = int(m.group(1))
            log.train[:] = [r for r in log.train if r["NumIters"] < cut]
            log.test[:] = [r for r in log.test if r["NumIters"] < cut]
            lrs = {k: v for k, v in lrs.items() if k < cut}
            train_row = test_row = None
            truncate = False
        if (m := TESTING.search(msg)):
            iteration = int(m.group(1))
            test_row = {"NumIters": iteration, "Seconds": seconds, "LearningRate": None,
                        "TestNet": int(m.group(2))}
            log.test.append(test_row)
        elif (m := LOSS.search(msg)):
            iteration = int(m.group(1))
            train_row = {"NumIters": iteration, "Seconds": seconds, "LearningRate": None,
                         "SmoothedLoss": float(m.group(2))}
            log.train.append(train_row)
        elif (m := LR.search(msg)):
            it, lr = int(m.group(1)), float(m.group(2))
            lrs[it] = lr
            if train_row is not None and train_row["NumIters"] == it:
                train_row["LearningRate"] = lr
        elif (m := OUTPUT.search(msg)):
            kind, name, value = m.group(1), m.group(3), float(m.group(4))
            if kind == "Train":
                if train_row is None:
                    if iteration is None:
                        continue
                    train_row = {"NumIters": iteration, "Seconds": seconds, "LearningRate": None}
                    log.train.append(train_row)
                row = train_row
                if m.group(5) is not None:
                    log.loss_weights.setdefault(name, float(m.group(5)))
            else:
                if test_row is None:
                    if iteration is None:
                        continue
                    test_row = {"NumIters": iteration, "Seconds": seconds, "LearningRate": None,
                                "TestNet": 0}
                    log.test.append(test_row)
                row = test_row
                if seconds is not None:
                    row["Seconds"] = seconds  # a test row is timed by its end, as Caffe's
            key, j = name, 0
            while key in row and key not in FIXED:
                j += 1
                key = f"{name}_{j}"
            if key not in FIXED:
                row[key] = value
        elif (m := SEGMENTATION.search(msg)):
            if test_row is None or test_row["TestNet"] != int(m.group(1)):
                continue
            for k, v in zip(SEGMENTATION_COLUMNS, m.groups()[1:]):
                test_row[k] = float(v)
            if seconds is not None:
                test_row["Seconds"] = seconds
    for r in log.train + log.test:
        if r["LearningRate"] is not None:
            continue
        known = [k for k in lrs if k <= r["NumIters"]]
        if known:
            r["LearningRate"] = lrs[max(known)]
    return log


def write_csv(log, output_dir=None, delimiter=","):
    """Caffe's parse_log.py files: <output_dir>/<log name>.train and .test (output_dir: the log's
    directory by default). A kind without rows is not written, as in Caffe. Returns the paths
    written."""
    output_dir = output_dir if output_dir is not None else (os.path.dirname(log.path) or ".")
    if len(delimiter) != 1:
        raise NetdefError(f"the delimiter must be one character, not {delimiter!r}")
    written = []
    for kind, rows, columns in (("train", log.train, log.train_columns), ("test", log.test, log.test_columns)):
        if not rows:
            continue
        path = os.path.join(output_dir, f"{log.name}.{kind}")
        try:
            with open(path, "w", newline="") as f:
                w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
                w.writerow(columns)
                for r in rows:
                    w.writerow(["" if r.get(c) is None else r[c] for c in columns])
        except OSError as e:
            raise NetdefError(f"cannot write: {e.strerror}", file=path) from None
        written.append(path)
    return written
