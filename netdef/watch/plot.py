"""Training curves from logs: one figure of panels, several runs overlaid (one colour per run).

    fig = plot_logs([parse_log('a.log'), parse_log('b.log')], charts=['loss', 'test'])
    save_figure(fig, 'curves.png')                 # .png, .svg or .pdf

Contract:
  * Panels (`charts`, in this order, default: every one the logs have data for):
      loss  train loss at each displayed iteration (raw: the sum of w * v of the Train net
            outputs that are losses) and its trailing mean over `smooth` displays;
      lr    learning rate (log scale when it spans a factor of 10 or more);
      test  one panel per Test net output name (Caffe's test accuracy / test loss charts);
      seg   netdef's segmentation metrics: pixel accuracy, mean accuracy, mean IU, fw IU.
    Caffe's eight plot_training_log.py chart types are these panels with x = 'iters' or
    'seconds'.
  * x: 'iters' (NumIters) or 'seconds' (the glog timestamps; a log without them is refused).
  * Line labels: the series, prefixed by the log's file name when several logs are drawn;
    each panel has a legend, the x axis its unit, the y axis its quantity; the figure's title
    names the net(s) and log(s).
  * matplotlib is an optional extra (`pip install 'netdef[plot]'`), used without pyplot
    (Agg canvas): no display and no global state is touched.
"""
import math
import os

from ..errors import NetdefError

CHARTS = ("loss", "lr", "test", "seg")
FORMATS = (".png", ".svg", ".pdf")
SEG_SERIES = (("pixel_accuracy", "pixel accuracy", "-"), ("mean_accuracy", "mean accuracy", "--"),
              ("mean_iu", "mean IU", "-."), ("fw_iu", "fw IU", ":"))


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NetdefError("plotting needs matplotlib: pip install 'netdef[plot]'") from None
    return matplotlib, Figure, FigureCanvasAgg


def _trailing_mean(values, n):
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= n:
            acc -= values[i - n]
        out.append(acc / min(i + 1, n))
    return out


def _test_outputs(logs):
    names = []
    for log in logs:
        for c in log.test_columns:
            if c not in ("NumIters", "Seconds", "LearningRate", "TestNet") and c not in \
                    [s[0] for s in SEG_SERIES] and c not in names:
                names.append(c)
    return names


def panels(logs, charts=None):
    """[(chart kind, test output name or None)] that plot_logs draws for `charts`."""
    charts = list(charts) if charts else list(CHARTS)
    bad = [c for c in charts if c not in CHARTS]
    if bad:
        raise NetdefError(f"unknown chart(s) {', '.join(bad)}; choose from {', '.join(CHARTS)}")
    out = []
    explicit = charts != list(CHARTS)
    for c in CHARTS:
        if c not in charts:
            continue
        if c == "loss" and (explicit or any(log.train_loss() for log in logs)):
            out.append(("loss", None))
        elif c == "lr" and (explicit or any(log.column(log.train, "LearningRate") for log in logs)):
            out.append(("lr", None))
        elif c == "test":
            out += [("test", n) for n in _test_outputs(logs)]
        elif c == "seg" and any(log.column(log.test, "mean_iu") for log in logs):
            out.append(("seg", None))
    if not out:
        raise NetdefError("nothing to plot: no training lines in " + ", ".join(log.path for log in logs))
    return out


def plot_logs(logs, charts=None, x="iters", smooth=10, title=None):
    """A matplotlib Figure of the logs' curves (see the module's contract)."""
    matplotlib, Figure, FigureCanvasAgg = _matplotlib()
    if x not in ("iters", "seconds"):
        raise NetdefError(f"x must be 'iters' or 'seconds', not {x!r}")
    if x == "seconds":
        untimed = [log.path for log in logs if not log.timed]
        if untimed:
            raise NetdefError("no glog timestamps to plot against seconds (a plain console log); "
                              "use --x iters", file=", ".join(untimed))
    chosen = panels(logs, charts)
    cols = 1 if len(chosen) == 1 else 2
    rows = math.ceil(len(chosen) / cols)
    fig = Figure(figsize=(6.4 * cols, 3.6 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    xi = 0 if x == "iters" else 1
    xlabel = "iterations" if x == "iters" else "seconds since the log's start"
    several = len(logs) > 1
    for k, (kind, name) in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, k + 1)
        for r, log in enumerate(logs):
            colour = colours[r % len(colours)]
            prefix = f"{log.name}: " if several else ""
            if kind == "loss":
                pts = log.train_loss()
                xs, ys = [p[xi] for p in pts], [p[2] for p in pts]
                ax.plot(xs, ys, color=colour, alpha=0.35, linewidth=0.9, label=prefix + "train loss")
                if smooth and smooth > 1 and ys:
                    ax.plot(xs, _trailing_mean(ys, smooth), color=colour, linewidth=1.8,
                            label=prefix + f"train loss, mean of last {smooth} displays")
                ax.set_title("train loss")
                ax.set_ylabel("loss")
            elif kind == "lr":
                pts = log.column(log.train, "LearningRate")
                ax.plot([p[xi] for p in pts], [p[2] for p in pts], color=colour, label=prefix + "learning rate")
                ax.set_title("learning rate")
                ax.set_ylabel("learning rate")
            elif kind == "test":
                pts = log.column(log.test, name)
                ax.plot([p[xi] for p in pts], [p[2] for p in pts], color=colour, marker="o",
                        markersize=3, label=prefix + f"test {name}")
                ax.set_title(f"test net output: {name}")
                ax.set_ylabel(name)
            else:
                for key, label, style in SEG_SERIES:
                    pts = log.column(log.test, key)
                    ax.plot([p[xi] for p in pts], [p[2] for p in pts], color=colour, linestyle=style,
                            marker="o", markersize=3, label=prefix + label)
                ax.set_title("test segmentation metrics")
                ax.set_ylabel("score (0 to 1)")
        if kind == "lr":
            ys = [y for line in ax.get_lines() for y in line.get_ydata() if y > 0]
            if ys and max(ys) >= 10 * min(ys):
                ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
    if title is None:
        nets = sorted({log.net_name for log in logs if log.net_name})
        title = ("training of " + ", ".join(nets) if nets else "training") + \
            " (" + ", ".join(log.name for log in logs) + ")"
    fig.suptitle(title)
    return fig


def save_figure(fig, path):
    """Write the figure as PNG, SVG or PDF, chosen by the file's extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise NetdefError(f"the output must end in {', '.join(FORMATS)}", file=path)
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise NetdefError(f"cannot write: {e.strerror}", file=path) from None
    return path
