"""The log file every `netdef train` writes (netdef/logfile.py): glog lines Caffe's tools read,
the console's lines whatever they look like, the command line and version at the top, appended
on resume, complete up to the last line when the run is SIGKILLed."""
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from netdef.logfile import GlogFormatter, LogFile
from netdef.logparse import parse_log
from test_cli_train import model, data_dir, run_cli  # noqa: F401  (fixtures)

GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.<>]+:\d+\] (.*)$")


def _record(msg="Iteration 5, loss = 0.25", level=logging.INFO):
    return logging.LogRecord("netdef", level, "/x/loop.py", 212, msg, (), None)


def test_glog_line_has_caffes_fields():
    r = _record()
    line = GlogFormatter("%(message)s").format(r)
    assert GLOG.match(line).group(1) == "Iteration 5, loss = 0.25"
    # Caffe's parse_log.sh takes the value as awk's $9; extract_seconds.py month/day from $1[1:5]
    fields = line.split()
    assert fields[8] == "0.25" and fields[0][0] == "I" and fields[0][1:3] == time.strftime("%m", time.localtime(r.created))


def test_records_before_open_are_kept_and_the_level_is_restored(tmp_path):
    logger = logging.getLogger("netdef.test_logfile")
    logger.setLevel(logging.WARNING)
    lf = LogFile(logger=logger, command_line="netdef train s.prototxt").attach()
    assert logger.level == logging.INFO
    logger.info("Use CPU.")
    logger.debug("not at INFO: not written")
    lf.open(tmp_path / "a.log")
    logger.warning("after open")
    lf.close()
    assert logger.level == logging.WARNING and lf not in logger.handlers
    logger.info("after close")
    lines = (tmp_path / "a.log").read_text().splitlines()
    assert lines[0].startswith("Log file created at: ") and lines[2].startswith("Log line format:")
    messages = [GLOG.match(l).group(1) for l in lines[3:]]
    assert messages[0].startswith("netdef ") and messages[1] == "Command line: netdef train s.prototxt"
    assert messages[2:] == ["Use CPU.", "after open"]
    assert lines[-1].startswith("W")


def test_train_writes_the_console_lines_in_glog_format_next_to_the_snapshots(model):
    solver = model()
    res = run_cli("train", solver, "--progress", "off")
    path = model.dir / "snapshots" / "tiny.log"
    lines = path.read_text().splitlines()
    assert lines[0].startswith("Log file created at: ")
    body = [GLOG.match(l) for l in lines[3:]]
    assert all(body), [l for l, m in zip(lines[3:], body) if not m]
    messages = [m.group(1) for m in body]
    assert messages[0].startswith("netdef 0.")
    assert messages[1].startswith("Command line: ") and messages[1].endswith(f"cli.py train {solver} --progress off")
    # the file has exactly the console's lines, in order, after its own two
    assert messages[2:] == res.stdout.splitlines()
    # what Caffe's parse_log.sh reads: awk $9 of the ', loss = ' and ', lr = ' lines
    loss_col = [l.split()[8] for l in lines if ", loss = " in l]
    assert loss_col == re.findall(r"^Iteration \d+, loss = (\S+)$", res.stdout, re.M)
    assert len([l for l in lines if "] Solving " in l]) == 1


def test_log_option_and_none(model):
    solver = model(max_iter=2, test_interval=100, snapshot=0)
    run_cli("train", solver, "--log", str(model.dir / "elsewhere.log"))
    assert (model.dir / "elsewhere.log").exists()
    assert not (model.dir / "snapshots" / "tiny.log").exists()
    run_cli("train", solver, "--log", "none")
    assert not (model.dir / "snapshots" / "tiny.log").exists()
    res = run_cli("train", solver, "--log", str(model.dir / "no" / "dir.log"), check=False)
    assert res.returncode == 1 and "no/dir.log" in res.stderr and "cannot write the log file" in res.stderr


def test_an_error_after_the_log_opened_is_in_it(model):
    res = run_cli("train", model(), "--weights", str(model.dir / "missing.caffemodel"), check=False)
    assert res.returncode == 1
    last = (model.dir / "snapshots" / "tiny.log").read_text().splitlines()[-1]
    assert last.startswith("E") and "missing.caffemodel" in last


def test_resumed_run_appends_and_parses_as_the_uninterrupted_run(model):
    solver = model()
    run_cli("train", solver)
    log = model.dir / "snapshots" / "tiny.log"
    whole = parse_log(log)
    first = log.read_text()
    # resume from the middle into the same log: what the first run logged after iteration 10 is
    # logged again by the resumed run and must replace, not duplicate, the first run's rows
    run_cli("train", solver, "--snapshot", str(model.dir / "snapshots" / "tiny_iter_10.solverstate"))
    text = log.read_text()
    assert text.startswith(first) and len(text) > len(first)
    assert text.count("Log file created at:") == 1 and text.count("] Command line: ") == 2
    resumed = parse_log(log)
    # the resumed run continues bit for bit: the same rows as the run never stopped
    drop = lambda rows: [{k: v for k, v in r.items() if k != "Seconds"} for r in rows]
    assert [r["NumIters"] for r in resumed.train] == [0, 5, 10, 15, 20]
    assert drop(resumed.train) == drop(whole.train)
    assert drop(resumed.test) == drop(whole.test)
    assert resumed.train[-1]["Seconds"] > whole.train[-1]["Seconds"]


def test_a_killed_run_leaves_a_log_that_parses(model):
    solver = model(max_iter=100000, display=1, snapshot=0, test_interval=3)
    log = model.dir / "snapshots" / "tiny.log"
    proc = subprocess.Popen([sys.executable, "-m", "netdef.cli", "train", solver], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if log.exists() and "Iteration 7, lr = " in log.read_text():
                break
            time.sleep(0.1)
        else:
            pytest.fail("training did not reach iteration 7")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    text = log.read_text()
    assert text.endswith("\n")
    parsed = parse_log(log)
    iters = [r["NumIters"] for r in parsed.train]
    assert iters[:8] == list(range(8)) and len(parsed.test) >= 3
    assert all(r["loss"] > 0 for r in parsed.train if "loss" in r)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_reported_once_and_training_goes_on(caplog):
    logger = logging.getLogger("netdef.test_logfile_full")
    with caplog.at_level(logging.INFO, logger="netdef.test_logfile_full"):
        lf = LogFile("/dev/full", logger=logger, command_line="x").attach()
        for i in range(3):
            logger.info("Iteration %d, loss = 1", i)
        lf.write_error("TrainingError: late")
        lf.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "/dev/full" in warnings[0] and "its lines stop here" in warnings[0]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO][-1] == "Iteration 2, loss = 1"
