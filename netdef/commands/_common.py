"""What several subcommands share: the command's file as a positional or the caffe tool's option
(--solver / --model), the device options (--gpu / --cpu / --tf32 / --precision) and choosing the device from them, --log-format and Caffe's glog line prefix, --phase, and plain-text tables."""
import logging

from .. import backend as be
from ..core import netdef_pb2 as pb
from ..core.precision import FORMATS, set_precision
from ..errors import NetdefError
from ..watch.glog import GlogFormatter

log = logging.getLogger("netdef")


def add_file_argument(p, dest, option, help):
    """The command's file as a positional argument or as the `caffe` tool's --option (`netdef
    train --solver=S`, `netdef test --model=M`); file_argument() reads it."""
    p.add_argument(dest, nargs="?", help=f"{help} (or --{option})")
    p.add_argument(f"--{option}", dest=f"{option}_option", metavar="FILE",
                   help="the same, as the caffe tool spells it")


def file_argument(args, dest, option):
    given = [v for v in (getattr(args, dest), getattr(args, f"{option}_option")) if v]
    if not given:
        raise NetdefError(f"no {option} given: netdef {args.command} {dest.upper()}, or --{option}=FILE")
    if len(set(given)) > 1:
        raise NetdefError(f"two {option}s given: '{given[0]}' and --{option}={given[1]}; give one")
    return given[0]


def gpu_id(text):
    """--gpu as the caffe tool takes it, for commands that run on one device: a device id; 'all'
    or a list (0,1) only when they name a single device (several: `netdef train` only)."""
    ids = gpu_ids(text)
    if len(ids) > 1:
        raise NetdefError(f"--gpu {text}: this command runs on one device, not {len(ids)}; give one "
                          "device id (training on several GPUs: netdef train --gpu 0,1)")
    return ids[0]


def gpu_ids(text):
    """--gpu's device ids: one id, a list (0,1) or 'all' (every GPU cupy sees); duplicates
    dropped, order kept."""
    text = str(text).strip()
    if text == "all":
        count = 0
        try:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
        except Exception:
            pass
        if count == 0:
            raise NetdefError("--gpu all: no GPU found (is cupy installed? pip install 'netdef[cuda12]')")
        ids = list(range(count))
    else:
        try:
            ids = [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise NetdefError(f"--gpu takes a device id, a list of them (0,1) or 'all'; got '{text}'") from None
        if not ids or any(i < 0 for i in ids):
            raise NetdefError(f"--gpu takes device ids >= 0; got '{text}'")
    return list(dict.fromkeys(ids))


def add_device_arguments(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--gpu", metavar="N", help="run on GPU N (the caffe tool's 'all' and '0,1': "
                   "data-parallel training on several GPUs, netdef train only)")
    g.add_argument("--cpu", action="store_true", help="run on the CPU")
    p.add_argument("--tf32", action="store_true",
                   help="GPU: float32 GEMMs on TF32 tensor cores (faster, 10-bit mantissas; "
                        "off by default, as in Caffe)")
    add_precision_argument(p, "the operands of the GEMM layers (Convolution, Deconvolution, "
                              "InnerProduct) in bf16 or fp16, float32 accumulation, everything else "
                              "float32; overrides the prototxt's NVCaffe type fields (default: those, "
                              "else fp32)")


def add_precision_argument(p, help):
    p.add_argument("--precision", choices=FORMATS, type=str.lower, help=help)


def select_device(args, solver_param=None):
    """--cpu / --gpu N, else the solver's solver_mode if the file sets it (Caffe: GPU only when
    asked), else the CPU. Logs the choice."""
    gpu = None
    if getattr(args, "gpu", None) is not None:
        gpu = gpu_id(args.gpu)
    elif not getattr(args, "cpu", False) and solver_param is not None and \
            solver_param.HasField("solver_mode") and solver_param.solver_mode == pb.SolverParameter.GPU:
        gpu = solver_param.device_id
    if gpu is None:
        be.set_mode_cpu()
        log.info("Use CPU.")
    else:
        be.set_device(gpu)
        be.set_mode_gpu()
        name = ""
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(gpu)
            name = f": {props['name'].decode() if isinstance(props['name'], bytes) else props['name']}"
        except Exception:
            pass
        log.info("Using GPU %d%s", gpu, name)
    if getattr(args, "tf32", False):
        if gpu is None:
            log.warning("--tf32 has no effect on the CPU: its GEMMs are always float32")
        else:
            be.set_tf32(True)
            log.info("TF32 on: float32 GEMMs run on tensor cores")
    if getattr(args, "precision", None):
        set_precision(args.precision)
        log.info("Precision %s: the GEMM layers' operands in %s, float32 accumulation", args.precision,
                 args.precision)


def add_log_format_argument(p):
    p.add_argument("--log-format", choices=["plain", "glog"], default="plain",
                   help="glog: prefix every line as Caffe does (level, date, time, pid, "
                        "file:line), for Caffe's parse_log.py / parse_log.sh")


def set_log_format(args):
    if getattr(args, "log_format", "plain") == "glog":
        for h in logging.getLogger().handlers:
            h.setFormatter(GlogFormatter("%(message)s"))


def add_phase_argument(p, default):
    p.add_argument("--phase", default=default, choices=["train", "test", "TRAIN", "TEST"])


def add_fuse_argument(p):
    p.add_argument("--no-fuse", dest="fuse", action="store_false",
                   help="run every layer on its own: no inference fusion of BatchNorm / Scale / "
                        "ReLU into the layer before them (netdef/core/fusion.py)")


def phase(name):
    """pb.TRAIN or pb.TEST from 'train' / 'test' (any case)."""
    return {"train": pb.TRAIN, "test": pb.TEST}[name.lower()]


def format_table(rows, header):
    """Left-aligned columns, a dashed rule under the header."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
