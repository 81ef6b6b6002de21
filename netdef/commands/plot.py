"""`netdef plot LOG... -o curves.png`: training curves of one or more logs (glog or plain lines),
the runs overlaid, one colour each: train loss, learning rate, every test output, the
segmentation metrics (netdef/plot.py). Needs matplotlib: pip install 'netdef[plot]'."""
from ..watch.logparse import parse_log
from ..watch.plot import CHARTS, plot_logs, save_figure

HELP = "plot training curves (loss, lr, test outputs, mean IU) from logs to PNG/SVG/PDF"


def configure(p):
    p.add_argument("logs", nargs="+", metavar="LOG", help="training logs (several: overlaid)")
    p.add_argument("-o", "--output", required=True, help="image file: .png, .svg or .pdf")
    p.add_argument("--charts", help=f"comma-separated panels among {','.join(CHARTS)} "
                   "(default: every one with data)")
    p.add_argument("--x", choices=["iters", "seconds"], default="iters", help="x axis (default iters)")
    p.add_argument("--smooth", type=int, default=10, metavar="N",
                   help="also draw the train loss's mean over the last N displays (0: off)")
    p.add_argument("--title", help="the figure's title (default: the nets and logs)")


def run(args):
    charts = [c.strip() for c in args.charts.split(",") if c.strip()] if args.charts else None
    logs = [parse_log(path) for path in args.logs]
    fig = plot_logs(logs, charts=charts, x=args.x, smooth=args.smooth, title=args.title)
    save_figure(fig, args.output)
    print(args.output)
    return 0
