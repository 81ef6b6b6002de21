"""`netdef plot` / netdef.plot: the figure's panels, series and data, read from the matplotlib
Figure (not its pixels), for hand-written logs whose values are known."""
import sys

import pytest

pytest.importorskip("matplotlib")

from netdef.cli import main  # noqa: E402
from netdef.errors import NetdefError  # noqa: E402
from netdef.logparse import parse_lines  # noqa: E402
from netdef.plot import plot_logs, save_figure  # noqa: E402
from test_parse_log import GLOG_LOG  # noqa: E402


def _log(name, scale=1.0):
    lines = GLOG_LOG.replace("= 3 (* 1 = 3 loss)", f"= {3 * scale} (* 1 = {3 * scale} loss)").splitlines()
    return parse_lines(lines, f"/runs/{name}")


def _axes(fig):
    return {ax.get_title(): ax for ax in fig.axes}


def test_panels_series_and_data():
    fig = plot_logs([_log("a.log")], smooth=2)
    axes = _axes(fig)
    assert list(axes) == ["train loss", "learning rate", "test net output: accuracy",
                          "test net output: loss", "test segmentation metrics"]
    assert "tinyseg" in fig.get_suptitle() and "a.log" in fig.get_suptitle()
    loss = {l.get_label(): l for l in axes["train loss"].get_lines()}
    raw = loss["train loss"]
    # total loss = loss + 0.5 * aux, at the displayed iterations
    assert list(raw.get_xdata()) == [0, 10] and list(raw.get_ydata()) == [3.5, 1.75]
    assert list(loss["train loss, mean of last 2 displays"].get_ydata()) == [3.5, (3.5 + 1.75) / 2]
    lr = axes["learning rate"]
    assert list(lr.get_lines()[0].get_ydata()) == [0.01, 0.001] and lr.get_yscale() == "log"
    acc = axes["test net output: accuracy"].get_lines()[0]
    assert list(acc.get_xdata()) == [0, 10] and list(acc.get_ydata()) == [0.25, 0.75]
    seg = {l.get_label(): list(l.get_ydata()) for l in axes["test segmentation metrics"].get_lines()}
    assert seg == {"pixel accuracy": [0.5, 0.9], "mean accuracy": [0.25, 0.8], "mean IU": [0.125, 0.7],
                   "fw IU": [0.375, 0.85]}
    for ax in fig.axes:
        assert ax.get_xlabel() == "iterations" and ax.get_ylabel() and ax.get_legend() is not None


def test_several_runs_one_colour_each_and_seconds():
    fig = plot_logs([_log("a.log"), _log("b.log", scale=2)], charts=["loss", "seg"], x="seconds", smooth=0)
    loss, seg = fig.axes
    assert loss.get_xlabel().startswith("seconds")
    labels = [l.get_label() for l in loss.get_lines()]
    assert labels == ["a.log: train loss", "b.log: train loss"]
    assert list(loss.get_lines()[0].get_xdata()) == [1.5, 4.0]
    assert list(loss.get_lines()[1].get_ydata()) == [6.5, 1.75]
    colour = {l.get_label().split(":")[0]: l.get_color() for l in seg.get_lines()}
    by_run = {}
    for l in seg.get_lines():
        by_run.setdefault(l.get_label().split(":")[0], set()).add(l.get_color())
    assert all(len(c) == 1 for c in by_run.values()) and colour["a.log"] != colour["b.log"]


def test_cli_writes_png_svg_pdf(tmp_path):
    (tmp_path / "x.log").write_text(GLOG_LOG)
    for ext, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        out = tmp_path / f"curves{ext}"
        assert main(["plot", str(tmp_path / "x.log"), "-o", str(out), "--charts", "loss,test"]) == 0
        assert out.read_bytes().startswith(magic)


def test_errors(tmp_path, monkeypatch, capsys):
    plain = parse_lines([l.split("] ", 1)[1] for l in GLOG_LOG.splitlines()[3:]], "plain.log")
    with pytest.raises(NetdefError, match="plain.log.*no glog timestamps"):
        plot_logs([plain], x="seconds")
    with pytest.raises(NetdefError, match="unknown chart.*bogus"):
        plot_logs([plain], charts=["bogus"])
    with pytest.raises(NetdefError, match="must end in"):
        save_figure(plot_logs([plain]), str(tmp_path / "x.jpg"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(NetdefError, match=r"netdef\[plot\]"):
        plot_logs([plain])
