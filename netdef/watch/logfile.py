"""A training run's log file: Caffe's lines in glog's format, whatever the terminal shows.

    with LogFile('snapshots/fcn8s-mini.log') as lf:      # attaches to the 'netdef' logger
        solver.solve()

Contract:
  * Every record of the `netdef` logger (and its children) at INFO or above is written as one
    glog line, `I1129 21:31:15.123456 12345 loop.py:212] Iteration 20, loss = 0.5`
    (GlogFormatter), so Caffe's tools/extra/parse_log.py, parse_log.sh and
    plot_training_log.py read the file unchanged, and so does `netdef parse-log`.
  * Each line is flushed as it is written (line-buffered): a run killed by SIGKILL leaves every
    line logged before the kill.
  * A new file starts with glog's own header lines ("Log file created at: YYYY/MM/DD ...",
    which also gives parsers the year the glog prefix lacks); append=True (a resumed run) adds
    to an existing file instead. Either way the run's command line and netdef's version follow,
    as glog lines, in the file only.
  * path=None holds the records (in memory) until open(path): `netdef train` learns the file's
    name (next to the snapshots) only once the solver is built, and the lines logged before
    that (device, nets created) still belong at the top of the file.
  * A write that fails (disk full) is reported once, as a warning on the other handlers, and
    the file is not written any more; training goes on.
  * attach() lowers the logger's level to INFO when it is higher (else nothing would reach the
    file); detach() / close() restore it.
"""
import logging
import os
import shlex
import socket
import sys
import time

from ..errors import NetdefError
from .glog import GlogFormatter


def netdef_version():
    from .._version import __version__

    return __version__


class LogFile(logging.Handler):
    """A logging handler that writes glog-format lines to a file, flushed per line."""

    def __init__(self, path=None, append=False, command_line=None, logger="netdef"):
        super().__init__(level=logging.INFO)
        self.setFormatter(GlogFormatter("%(message)s"))
        self.path = None
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.command_line = command_line if command_line is not None else shlex.join(sys.argv)
        self._stream = None
        self._failed = False
        # made now, so that their time is the run's start, before any record held for the file
        self._held = [self._header_record(f"netdef {netdef_version()} (Python {sys.version.split()[0]}), "
                                          f"pid {os.getpid()}"),
                      self._header_record(f"Command line: {self.command_line}")]
        self._old_level = None
        self._attached = False
        if path is not None:
            self.open(path, append)

    def open(self, path, append=False):
        """Start writing to `path` (the held records first)."""
        if self._stream is not None:
            raise NetdefError("the log file is already open", file=self.path)
        path = os.fspath(path)
        existed = append and os.path.exists(path) and os.path.getsize(path) > 0
        try:
            self._stream = open(path, "a" if append else "w", buffering=1, encoding="utf-8")
        except OSError as e:
            raise NetdefError(f"cannot write the log file: {e.strerror}", file=path) from None
        self.path = path
        if not existed:
            now = time.time()
            self._write_line(f"Log file created at: {time.strftime('%Y/%m/%d %H:%M:%S', time.localtime(now))}\n"
                             f"Running on machine: {socket.gethostname()}\n"
                             "Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg")
        for record in self._held:
            self._write_record(record)
        self._held = []
        return self

    def _header_record(self, message, level=logging.INFO):
        # the prefix's file:line names the code that opened the log (the command), not this module
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back
        return self.logger.makeRecord(self.logger.name, level, frame.f_code.co_filename,
                                      frame.f_lineno, message, (), None)

    def _write_record(self, record):
        self._write_line(self.format(record))

    def _write_line(self, text):
        if self._failed:
            return
        try:
            self._stream.write(text + "\n")
        except OSError as e:
            # a full disk must not stop training, nor print a traceback per line: say it once
            # (on the console, through the logger, which no longer reaches this file)
            self._failed = True
            self.logger.warning("Cannot write the log file %s (%s): its lines stop here.", self.path,
                                e.strerror or e)

    def emit(self, record):
        if self._stream is None:
            self._held.append(record)
        else:
            self._write_record(record)

    def write_error(self, message):
        """An E-level glog line in the file only (the command prints errors on stderr itself)."""
        record = self._header_record(message, logging.ERROR)
        if self._stream is None:
            self._held.append(record)
        else:
            self._write_record(record)

    def attach(self):
        if not self._attached:
            if self.logger.getEffectiveLevel() > logging.INFO:
                self._old_level = self.logger.level
                self.logger.setLevel(logging.INFO)
            self.logger.addHandler(self)
            self._attached = True
        return self

    def detach(self):
        if self._attached:
            self.logger.removeHandler(self)
            if self._old_level is not None:
                self.logger.setLevel(self._old_level)
                self._old_level = None
            self._attached = False

    def close(self):
        self.detach()
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass  # the buffered rest of a failed file: already reported
            self._stream = None
        self._held = []
        super().close()

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc):
        self.close()
