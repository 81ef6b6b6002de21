"""Caffe's logging, as pycaffe users see it: glog's line format, and log lines on stderr
without any setup.

pycaffe scripts (`solver = caffe.SGDSolver(...); solver.step(20)`) print Caffe's progress lines
on stderr because glog does so by default. netdef logs through the `netdef` logger of Python's
logging; default_logging() gives it that behaviour unless logging is configured elsewhere:

  - if the root logger or the `netdef` logger already has a handler (the `netdef` command logs
    to stdout; a user's logging.basicConfig), it does nothing;
  - otherwise it adds one stderr handler with glog's prefix to the `netdef` logger, at INFO
    unless the logger has a level, and that handler stays silent from the moment the root
    logger gets a handler (so configuring logging later never prints a line twice).

init_log(level, stderr) and log(msg) are pycaffe's caffe.init_log / caffe.log: level is glog's
minloglevel (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL).
"""
import logging
import sys
import time

logger = logging.getLogger("netdef")

#: glog's minloglevel -> Python's logging level
GLOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.CRITICAL}


class GlogFormatter(logging.Formatter):
    """glog's line prefix, as Caffe writes it: `I1129 21:31:15.123456 12345 loop.py:212] msg`
    (level letter, month and day, local time to the microsecond, process id, file:line). Caffe's
    parse_log.py reads the time from the first two fields; parse_log.sh finds '] Solving ' and
    takes values by column ($9 of ', loss = ' lines), so the prefix must stay exactly four fields.
    Used by the console (--log-format glog), the run's log file (netdef.logfile) and the stderr
    lines of a Solver made from Python (default_logging)."""

    def format(self, record):
        t = time.localtime(record.created)
        micros = int((record.created % 1) * 1e6)
        prefix = (f"{record.levelname[:1]}{time.strftime('%m%d %H:%M:%S', t)}.{micros:06d} "
                  f"{record.process:5d} {record.filename}:{record.lineno}] ")
        return prefix + super().format(record)


class _DefaultHandler(logging.StreamHandler):
    """The stderr handler default_logging() installs; quiet once the root logger has one."""

    def __init__(self):
        super().__init__()  # sys.stderr looked up per record (pytest and users swap it)
        self.setFormatter(GlogFormatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass

    def filter(self, record):
        return not logging.getLogger().handlers and super().filter(record)


def installed_handler():
    """The handler default_logging() installed, or None."""
    return next((h for h in logger.handlers if isinstance(h, _DefaultHandler)), None)


def default_logging():
    """Log the `netdef` logger's INFO lines to stderr in glog's format, unless logging is
    configured (see the module docstring). Idempotent."""
    if logging.getLogger().handlers or logger.handlers:
        return
    logger.addHandler(_DefaultHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def init_log(level=0, stderr=True):
    """pycaffe's caffe.init_log: log messages of glog level >= `level` (0 INFO, 1 WARNING,
    2 ERROR, 3 FATAL); stderr: to stderr (the default handler above, unless logging is
    configured elsewhere); False: netdef adds no handler of its own."""
    if level not in GLOG_LEVELS:
        from ..errors import NetdefError

        raise NetdefError(f"init_log: level must be 0 (INFO), 1 (WARNING), 2 (ERROR) or 3 (FATAL), got {level!r}")
    logger.setLevel(GLOG_LEVELS[level])
    if stderr:
        default_logging()
    elif (h := installed_handler()) is not None:
        logger.removeHandler(h)


def log(message):
    """pycaffe's caffe.log: one INFO line through Caffe's log."""
    default_logging()
    logger.info("%s", message)
