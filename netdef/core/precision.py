"""Precision as data: which layers compute in which precision, decided in this one place.

The rule. netdef stores every blob, param and solver state in the Net's dtype (float32; float64
with dtype=np.float64). Reduced precision - bf16 or fp16 - applies to the *operands of the
products*: the layers that are GEMMs (REDUCED_LAYERS: Convolution, Deconvolution, InnerProduct)
round their inputs and weights (forward) or their top diffs, inputs and weights (backward) to the
format, and multiply and add in float32. That is, product for product, what a bf16 / fp16 GEMM
with fp32 accumulation computes (kernels/precision.cu says why), and what mixed precision
training keeps from the format: the rounding of the operands, fp16's range (an operand beyond
65504 becomes inf; a gradient below 2^-24 becomes 0, hence loss scaling). Everything else -
losses, softmax, BatchNorm and its statistics, reductions, pooling, the elementwise layers, the
update - computes in float32 on float32 values, and the master weights stay float32, so that
snapshots stay Caffe's float caffemodels.

Where the precision comes from, highest first:
  1. netdef.set_precision('bf16' | 'fp16' | 'fp32'), `--precision` of netdef train / test /
     time, or Net(..., precision=...): every GEMM layer of the net, forward and backward;
  2. NVCaffe's fields in the prototxt: LayerParameter.forward_type / forward_math (and
     backward_*), else NetParameter.default_forward_type / default_forward_math (and backward).
     As in NVCaffe a math type defaults to the storage type; a layer's operands are reduced when
     either asks for FLOAT16 / BFLOAT16 (the math type first): NVCaffe's FLOAT16 storage with
     FLOAT math feeds fp16 values to an fp32 product, which is what netdef computes;
  3. float32.
BFLOAT16 is netdef's value of NVCaffe's enum Type (100). DOUBLE in a float32 net and FLOAT16 /
BFLOAT16 in a float64 net are not honoured, with one warning. INT, UINT and BOOL are not types a
layer computes in: an error naming the file, the layer and the field.

Loss scaling (the solver's, netdef/solver/loop.py): NetParameter.global_grad_scale, when set, is a
static scale (the loss gradient is multiplied by it and the param gradients divided by it before
the update); a net with an fp16 backward and no global_grad_scale gets a dynamic one (DYNAMIC_*:
start at 2^16, halve on a step whose gradients overflow - that step is skipped and logged -
double after DYNAMIC_INTERVAL clean steps), bf16 none (its range is float32's).
"""
import logging
from dataclasses import dataclass

import numpy as np

from . import netdef_pb2 as pb
from ..errors import NetdefError

log = logging.getLogger("netdef")

#: The formats, by the names of --precision / set_precision
FORMATS = ("fp32", "bf16", "fp16")
_ALIASES = {"fp32": "fp32", "float32": "fp32", "float": "fp32", "bf16": "bf16", "bfloat16": "bf16",
            "fp16": "fp16", "float16": "fp16", "half": "fp16"}
#: The layer types whose products take reduced operands
REDUCED_LAYERS = ("Convolution", "Deconvolution", "InnerProduct")
_REDUCED_TYPE = {pb.FLOAT16: "fp16", pb.BFLOAT16: "bf16"}
_NOT_COMPUTE_TYPES = (pb.INT, pb.UINT, pb.BOOL)
DIRECTIONS = ("forward", "backward")

DYNAMIC_START = 2.0 ** 16
DYNAMIC_INTERVAL = 1000

_state = {"override": None}


def format_name(value):
    """The format ('fp32', 'bf16', 'fp16') a user's name stands for; an error naming the others."""
    name = _ALIASES.get(str(value).strip().lower())
    if name is None:
        raise NetdefError(f"precision {value!r} is not one netdef computes in; use one of {', '.join(FORMATS)}")
    return name


def set_precision(value):
    """netdef.set_precision('bf16' | 'fp16' | 'fp32'): the precision of the GEMM layers of every
    Net built afterwards, overriding their files' NVCaffe fields; None goes back to the files."""
    _state["override"] = None if value is None else format_name(value)


def get_precision():
    """What set_precision set (None: the files decide)."""
    return _state["override"]


@dataclass(frozen=True)
class LayerPrecision:
    """The format of a layer's product operands, forward and backward ('fp32', 'bf16', 'fp16')."""
    forward: str = "fp32"
    backward: str = "fp32"

    def operands(self, direction):
        """The format to round to for `direction` ('forward' / 'backward'), None for float32."""
        fmt = self.forward if direction == "forward" else self.backward
        return None if fmt == "fp32" else fmt

    @property
    def reduced(self):
        return self.forward != "fp32" or self.backward != "fp32"

    def __str__(self):
        return self.forward if self.forward == self.backward else f"{self.forward}/{self.backward}"


FP32 = LayerPrecision()


def _asked(lp, param, direction):
    """(type, math) of a layer for `direction`, with where each came from, NVCaffe's way."""
    def field(kind):
        name = f"{direction}_{kind}"
        if lp.HasField(name):
            return getattr(lp, name), f"layer '{lp.name}' {name}"
        if param.HasField("default_" + name):
            return getattr(param, "default_" + name), "net default_" + name
        return None, None

    storage, where_s = field("type")
    math, where_m = field("math")
    if math is None:
        math, where_m = storage, where_s
    return (storage, where_s), (math, where_m)


class Plan:
    """The precision of each layer of a net: layers {name: LayerPrecision} (the layers with a
    reduced direction only; of(name) gives FP32 for the others), loss_scale (None, ('static', s)
    or ('dynamic', start)), source (what decided: the precision argument, set_precision, or the
    file), and describe() for netdef info and the log."""

    def __init__(self, layers, loss_scale, source, dtype):
        self.layers, self.loss_scale, self.source, self.dtype = layers, loss_scale, source, dtype

    def of(self, name):
        return self.layers.get(name, FP32)

    @property
    def reduced(self):
        return any(p.reduced for p in self.layers.values())

    def describe(self):
        """One line: what computes in which precision, and the loss scaling."""
        dt = "float64" if np.dtype(self.dtype) == np.float64 else "float32"
        counts = {}
        for p in self.layers.values():
            if p.reduced:
                counts[str(p)] = counts.get(str(p), 0) + 1
        if not counts:
            text = f"every layer in {dt}"
        else:
            parts = [f"{n} GEMM layer{'s' if n > 1 else ''} with {fmt} operands"
                     + (" (forward/backward)" if "/" in fmt else "") for fmt, n in counts.items()]
            text = (", ".join(parts) + f", {dt} accumulation; every other layer, blob and param "
                    f"in {dt}")
        if self.loss_scale is not None:
            kind, value = self.loss_scale
            text += f"; loss scale {kind} {value:g}"
        return f"precision ({self.source}): {text}"


def plan(param, dtype=np.float32, override=None, filename=None):
    """The Plan of a NetParameter for a Net of `dtype`: override (a format name, or None for
    set_precision's, then the file's NVCaffe fields). Warns once for what it cannot honour;
    raises NetdefError for a type that is not a compute type."""
    where_file = filename or f"net '{param.name}'"
    if override is not None:
        override, source = format_name(override), "Net(precision=) / --precision"
    elif get_precision() is not None:
        override, source = get_precision(), "netdef.set_precision / --precision"
    else:
        source = where_file
    float64 = np.dtype(dtype) == np.float64
    layers, ignored, not_honoured = {}, [], []
    for lp in param.layer:
        formats = {}
        for direction in DIRECTIONS:
            (storage, where_s), (math, where_m) = _asked(lp, param, direction)
            for value, where in ((storage, where_s), (math, where_m)):
                if value in _NOT_COMPUTE_TYPES:
                    raise NetdefError(f"{where}: {pb.Type.Name(value)} is not a type a layer computes "
                                      "in; use FLOAT, DOUBLE, FLOAT16 or BFLOAT16", file=filename)
                if value == pb.DOUBLE and not float64 and override is None:
                    not_honoured.append(f"{where}: DOUBLE")
            fmt = _REDUCED_TYPE.get(math) or _REDUCED_TYPE.get(storage) or "fp32"
            if override is not None:
                fmt = override
            if fmt != "fp32" and lp.type not in REDUCED_LAYERS:
                if override is None and (lp.HasField(f"{direction}_type") or lp.HasField(f"{direction}_math")):
                    ignored.append(lp.name)
                fmt = "fp32"
            if fmt != "fp32" and float64:
                not_honoured.append(f"layer '{lp.name}' {direction}: {fmt}")
                fmt = "fp32"
            formats[direction] = fmt
        if formats["forward"] != "fp32" or formats["backward"] != "fp32":
            layers[lp.name] = LayerPrecision(formats["forward"], formats["backward"])
    dt = "float64" if float64 else "float32"
    if not_honoured:
        shown = sorted(set(not_honoured))
        more = f" and {len(shown) - 6} more" if len(shown) > 6 else ""
        log.warning("%s: asks for %s%s, which a %s net does not compute in: those layers compute "
                    "in %s (float64: build the Net with dtype=np.float64)", where_file,
                    "; ".join(shown[:6]), more, dt, dt)
    if ignored:
        names = sorted(set(ignored))
        log.info("%s: layers %s ask for reduced precision and compute in %s: netdef reduces only "
                 "the operands of %s (netdef/core/precision.py)", where_file,
                 ", ".join(f"'{n}'" for n in names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else ""),
                 dt, ", ".join(REDUCED_LAYERS))
    loss_scale = None
    if param.HasField("global_grad_scale") and param.global_grad_scale != 1.0:
        if not param.global_grad_scale > 0:
            raise NetdefError(f"global_grad_scale must be > 0, got {param.global_grad_scale:g}", file=filename)
        loss_scale = ("static", float(param.global_grad_scale))
    elif any(p.backward == "fp16" for p in layers.values()):
        loss_scale = ("dynamic", DYNAMIC_START)
    result = Plan(layers, loss_scale, source, dtype)
    if result.reduced or loss_scale is not None:
        log.info("%s: %s", where_file, result.describe())
    return result
