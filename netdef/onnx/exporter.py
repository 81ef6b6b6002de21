"""A built netdef Net as an ONNX model: one mapping function per Caffe layer type (EXPORTERS).

Shapes come from the Net's blobs, weights from its layers' param blobs, and every geometry
(pads, crop offsets, slice bounds, axes) from what the layers computed at setup and reshape, so
the exported graph is the net netdef runs. What maps to what:

  Convolution -> Conv (pads, strides, dilations, group); Deconvolution -> ConvTranspose (Caffe's
  weight (C_in, C_out / group, kh, kw) is ONNX's layout: no transpose); InnerProduct -> Flatten +
  Gemm (+ Reshape for axis > 1); Pooling MAX / AVE -> MaxPool / AveragePool with explicit end
  pads that reproduce Caffe's ceil rounding, AVE's divisor being the window clipped to the
  padded image (count_include_pad, or Pad + count_include_pad 0 where a ceil window reaches past
  the padding), and Caffe's empty last window (stride > kernel, no pad) as a zero row padded on;
  global pooling -> Global*Pool; BatchNorm -> BatchNormalization (mean = blob0 / blob2, var =
  blob1 / blob2; a per-channel Scale reading only it folds into its scale and bias); Scale / Bias -> Mul / Add; ReLU -> Relu / LeakyRelu; PReLU -> PRelu; ELU, Sigmoid,
  TanH, AbsVal, BNLL (Softplus), Power / Exp / Log (their affine parts as Mul / Add), Threshold,
  Clip, Swish; Eltwise -> Sum (coeffs as Mul) / Mul / Max; Concat; Slice -> Slice per top; Split
  and Dropout -> the same value; Flatten / Reshape -> Reshape; Softmax -> Softmax (opset >= 13
  for a non-last axis: older opsets flatten the trailing axes and are refused); LRN -> LRN
  (ACROSS_CHANNELS: Caffe's alpha / n is ONNX's) or its formula (WITHIN_CHANNEL); Interp ->
  Resize (linear, align_corners); Crop -> Slice; ArgMax -> ArgMax / TopK; Tile; Reduction ->
  Reduce*; MVN -> its formula; Embed -> Gather; Parameter -> an initializer.
  Input and data layers become graph inputs; loss layers, Accuracy and Silence are left out
  (logged). Anything else is an error naming the layer, its type and its line.

Names: nodes are named after their layer (helper nodes '<layer>/<what>'), values after their
Caffe blob. A blob computed in place (top == bottom) is written several times; ONNX values are
written once, so the earlier versions are named '<blob>/<layer that wrote it>' and the last one
keeps the blob's name.

--dynamic: the batch and the H x W of every 4-D input are symbolic; whatever depends on them
(Crop's end, Interp's size, Flatten's and Reshape's shapes, Caffe's ceil rounding) is computed
in the graph from Shape, so the model runs at sizes it was not exported at.
"""
import logging
from collections import Counter

import numpy as np

from ..core import netdef_pb2 as pb
from ..core import proto
from ..errors import NetdefError
from ._deps import DEFAULT_OPSET, MIN_OPSET, registrar, require_onnx

log = logging.getLogger("netdef")

INT64_MAX = 2 ** 63 - 1
FLT_MAX = float(np.finfo(np.float32).max)

#: layers whose tops become graph inputs (their data comes from outside the model)
DATA_TYPES = {"Input", "Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData",
              "SegData", "SegmentationData"}
#: layers left out of an inference graph (besides every loss layer)
DROPPED_TYPES = {"Accuracy", "Silence", "HDF5Output"}
#: layers whose tops are their bottoms' values at inference
ALIAS_TYPES = {"Split", "Dropout"}

#: Caffe type -> function(g, layer, x, y): adds the nodes computing the tops' values y from x
EXPORTERS = {}
exports = registrar(EXPORTERS)


def export(net, path=None, *, opset=DEFAULT_OPSET, dynamic=False):
    """The ONNX ModelProto of a built netdef Net (written to `path` when given)."""
    onnx = require_onnx()
    model = _Graph(net, int(opset), bool(dynamic)).build()
    onnx.checker.check_model(model)
    if path is not None:
        proto.atomic_write(path, model.SerializeToString())
    return model


class _Graph:
    def __init__(self, net, opset, dynamic):
        onnx = require_onnx()
        self.h, self.nh, self.TP = onnx.helper, onnx.numpy_helper, onnx.TensorProto
        top = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= opset <= top:
            raise NetdefError(f"opset {opset}: the exporter writes opsets {MIN_OPSET} to {top} "
                              f"(the installed onnx's newest)")
        self.net, self.opset, self.dynamic = net, opset, dynamic
        self.nodes, self.initializers, self.inputs = [], [], []
        self.reserved = {b for lp in net.param.layer for b in list(lp.top) + list(lp.bottom)}
        self.used, self.node_names = set(), set()
        self.value = {}  # Caffe blob name -> its current ONNX value
        self.bn_rank = {}  # BatchNormalization output -> the rank of its input
        self.layer = None

    # ---- names ----------------------------------------------------------------------------
    def unique(self, name, claim=False):
        if claim and name not in self.used:
            self.used.add(name)
            return name
        base, i = name, 1
        while name in self.used or name in self.reserved:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def tmp(self, what):
        return self.unique(f"{self.layer}/{what}")

    # ---- graph pieces ---------------------------------------------------------------------
    def const(self, array, what, dtype=np.float32):
        name = self.tmp(what)
        self.initializers.append(self.nh.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def ints(self, values, what="shape"):
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), what, np.int64)

    def node(self, op, inputs, outputs=None, **attrs):
        """Adds a node; outputs: names, a count (temporary names) or None (one). Returns the
        output name (or the list of them)."""
        if outputs is None or isinstance(outputs, int):
            outputs = [self.tmp(op.lower()) for _ in range(outputs or 1)]
        name = self.layer if self.layer not in self.node_names else f"{self.layer}/{op}"
        base, i = name, 1
        while name in self.node_names:
            name, i = f"{base}_{i}", i + 1
        self.node_names.add(name)
        self.nodes.append(self.h.make_node(op, list(inputs), list(outputs), name=name, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def axes_op(self, op, x, axes, out=None, **attrs):
        """A node whose `axes` became an input: ReduceSum and Squeeze / Unsqueeze at opset 13,
        the other Reduce* at 18."""
        as_input = self.opset >= (13 if op in ("ReduceSum", "Squeeze", "Unsqueeze") else 18)
        if as_input:
            return self.node(op, [x, self.ints(axes, "axes")], out and [out], **attrs)
        return self.node(op, [x], out and [out], axes=list(axes), **attrs)

    def dims(self, x, start, end):
        """Shape(x)[start:end] as a 1-D int64 value."""
        if self.opset >= 15:
            return self.node("Shape", [x], start=start, end=end)
        return self.node("Slice", [self.node("Shape", [x]), self.ints([start], "start"),
                                   self.ints([end], "end"), self.ints([0], "axes")])

    def shape_value(self, parts):
        """A 1-D int64 value from parts: lists of ints and 1-D int64 values, concatenated."""
        names = [self.ints(p) if isinstance(p, (list, tuple)) else p for p in parts if
                 not isinstance(p, (list, tuple)) or len(p)]
        return names[0] if len(names) == 1 else self.node("Concat", names, axis=0)

    def slice(self, x, starts, ends, axes, out=None):
        ends = ends if isinstance(ends, str) else self.ints(ends, "ends")
        return self.node("Slice", [x, self.ints(starts, "starts"), ends, self.ints(axes, "axes")],
                         out and [out])

    def reshape(self, x, shape, out=None):
        shape = shape if isinstance(shape, str) else self.ints(shape)
        return self.node("Reshape", [x, shape], out and [out])

    def param(self, layer, i):
        return layer.blobs[i].to_numpy().astype(np.float32)

    # ---- the whole net ---------------------------------------------------------------------
    def error(self, message, lp):
        net = self.net
        line = proto.find_layer_line(net.filename, lp.name) if net.filename else None
        return NetdefError(f"{lp.type}: {message}", file=net.filename, line=line, layer=lp.name)

    def build(self):
        net = self.net
        net.reshape()  # the layers' geometry for the blobs' current shapes
        layers = list(zip(net.param.layer, net.layers))
        kept, dropped, data = [], [], []
        for lp, layer in layers:
            if lp.type in DATA_TYPES:
                data.append((lp, layer))
            elif layer.is_loss or lp.type in DROPPED_TYPES:
                dropped.append(lp)
            elif lp.type in ALIAS_TYPES or lp.type in EXPORTERS:
                kept.append((lp, layer))
            else:
                raise self.error("has no ONNX equivalent; the exporter maps "
                                 f"{', '.join(sorted(EXPORTERS))}", lp)
        if dropped:
            log.info("ONNX export: left out %s (not part of inference)",
                     ", ".join(f"{lp.name} ({lp.type})" for lp in dropped))
        writes = Counter(t for lp, _ in kept if lp.type not in ALIAS_TYPES for t in lp.top)
        dropped_tops = {t: lp for lp in dropped for t in lp.top}
        for lp, _ in data:
            for t in lp.top:
                self.add_input(t)
            if lp.type != "Input":
                log.info("ONNX export: data layer %s (%s) left out: its tops %s are graph inputs",
                         lp.name, lp.type, ", ".join(lp.top))
        last = {}  # blob -> "in" / "out": whether its last use was as a bottom or a top
        for lp, layer in kept:
            self.layer = lp.name
            for b in lp.bottom:
                if b in dropped_tops:
                    raise self.error(f"reads '{b}', the output of {dropped_tops[b].type} "
                                     f"'{dropped_tops[b].name}', which an inference graph leaves out", lp)
                last[b] = "in"
            x = [self.value[b] for b in lp.bottom]
            if lp.type in ALIAS_TYPES:
                for t in lp.top:
                    self.value[t] = x[0]
            else:
                y = []
                for t in lp.top:
                    writes[t] -= 1
                    y.append(self.unique(t if writes[t] == 0 else f"{t}/{lp.name}", claim=writes[t] == 0))
                try:
                    EXPORTERS[lp.type](self, layer, x, y)
                except NetdefError as e:
                    if e.layer is None:
                        raise self.error(e.detail, lp) from None
                    raise
                for t, v in zip(lp.top, y):
                    self.value[t] = v
            for t in lp.top:
                last[t] = "out"
        # The outputs: values last written, not read after (a dropped loss's bottoms among
        # them), once each (a Split's tops are one value), never a graph input (labels).
        input_names = {i.name for i in self.inputs}
        to_dropped = {b for lp in dropped for b in lp.bottom}
        outputs = {}
        for b, how in last.items():
            v = self.value[b]
            if how == "out" and (v not in input_names or (v != b and b not in to_dropped)):
                outputs.setdefault(v, b)
        self.layer = "output"
        out_info = []
        for v, b in outputs.items():
            if (v not in self.reserved or v in input_names) and self.unique(b, claim=True) == b:
                self.node("Identity", [v], [b])
                v = b
            out_info.append(self.tensor_info(v, net.blobs[b].shape, output=True))
        outputs = list(outputs)
        consumed = {i for n in self.nodes for i in n.input} | set(outputs)
        unused = [i for i in self.inputs if i.name not in consumed]
        if unused:
            log.info("ONNX export: inputs %s are not used by the exported graph (labels?): left out",
                     ", ".join(i.name for i in unused))
        inputs = [i for i in self.inputs if i.name in consumed]
        self.fold_batch_norm_scale(set(outputs) | {o.name for o in out_info})
        graph = self.h.make_graph(self.nodes, net.name or "netdef", inputs, out_info,
                                  initializer=self.initializers)
        opsets = [self.h.make_opsetid("", self.opset)]
        model = self.h.make_model(graph, opset_imports=opsets, producer_name="netdef",
                                  producer_version="0.1.0",
                                  ir_version=self.h.find_min_ir_version_for(opsets))
        return model

    def fold_batch_norm_scale(self, outputs):
        """BatchNorm followed by a per-channel Scale (ResNet's pair): one BatchNormalization
        whose scale and bias are the Scale's (what runtimes would fuse; fewer nodes to read)."""
        init = {t.name: t for t in self.initializers}
        readers = Counter(i for n in self.nodes for i in n.input)

        def sole_reader(value, op):
            if value in outputs or readers[value] != 1:
                return None
            node = next(n for n in self.nodes if value in n.input)
            if node.op_type != op or len(node.input) != 2:
                return None
            other = node.input[1] if node.input[0] == value else node.input[0]
            return (node, other) if other in init else None

        dropped = set()
        for bn in [n for n in self.nodes if n.op_type == "BatchNormalization"]:
            scale, bias = (self.nh.to_array(init[i]) for i in bn.input[1:3])
            C = scale.size
            if not (np.all(scale == 1) and np.all(bias == 0)) or readers[bn.input[1]] != 1:
                continue
            mul = sole_reader(bn.output[0], "Mul")
            rank = self.bn_rank.get(bn.output[0])
            if not mul or rank is None:
                continue
            s = self.nh.to_array(init[mul[1]])
            if s.shape != (C,) + (1,) * (rank - 2):  # per channel (axis 1)
                continue
            last, b = mul[0], np.zeros(C, np.float32)
            add = sole_reader(mul[0].output[0], "Add")
            if add and self.nh.to_array(init[add[1]]).shape == s.shape:
                b = self.nh.to_array(init[add[1]]).reshape(-1)
                last = add[0]
            for i, v in ((1, s.reshape(-1)), (2, b)):
                init[bn.input[i]].CopyFrom(self.nh.from_array(v.astype(np.float32), bn.input[i]))
            bn.output[0] = last.output[0]
            dropped.update(id(n) for n in (mul[0], last))
        self.nodes = [n for n in self.nodes if id(n) not in dropped]
        used = {i for n in self.nodes for i in n.input}
        self.initializers = [t for t in self.initializers if t.name in used]

    def tensor_info(self, name, shape, output=False):
        dims = list(shape)
        if self.dynamic:
            if output:
                dims = [None] * len(dims)
            elif len(dims) == 4:
                dims = ["N", dims[1], f"{name}_height", f"{name}_width"]
            elif dims:
                dims[0] = "N"
        return self.h.make_tensor_value_info(name, self.TP.FLOAT, dims)

    def add_input(self, name):
        self.used.add(name)
        self.value[name] = name
        self.inputs.append(self.tensor_info(name, self.net.blobs[name].shape))

    def shape(self, blob_value_index, which="bottom"):
        """Static shape of the layer's bottom/top i (from the Net's blobs)."""
        names = (self.net.bottom_names if which == "bottom" else self.net.top_names)[self.layer]
        return tuple(self.net.blobs[names[blob_value_index]].shape)


def _static(g, layer):
    """The static shapes (bottoms, tops) of a layer."""
    return ([g.shape(i) for i in range(len(layer.layer_param.bottom))],
            [g.shape(i, "top") for i in range(len(layer.layer_param.top))])


# ---- convolutions and products -----------------------------------------------------------------
@exports("Convolution", "Deconvolution")
def _convolution(g, layer, x, y):
    w = g.const(g.param(layer, 0), "weight")
    inputs = [w] + ([g.const(g.param(layer, 1), "bias")] if layer.bias_term else [])
    op = "ConvTranspose" if layer.transposed else "Conv"
    for xi, yi in zip(x, y):
        g.node(op, [xi] + inputs, [yi], kernel_shape=[layer.kh, layer.kw],
               strides=[layer.sh, layer.sw], pads=[layer.ph, layer.pw, layer.ph, layer.pw],
               dilations=[layer.dh, layer.dw], group=layer.group)


@exports("InnerProduct")
def _inner_product(g, layer, x, y):
    (shape,), _ = _static(g, layer)
    a = layer.axis
    w = g.const(g.param(layer, 0), "weight")
    inputs = [w] + ([g.const(g.param(layer, 1), "bias")] if len(layer.blobs) > 1 else [])
    flat = x[0] if a == 1 and len(shape) == 2 else g.node("Flatten", [x[0]], axis=a)
    if a == 1:
        g.node("Gemm", [flat] + inputs, [y[0]], transB=0 if layer.transpose else 1)
        return
    out = g.node("Gemm", [flat] + inputs, transB=0 if layer.transpose else 1)
    n_out = g.param(layer, 0).shape[1 if layer.transpose else 0]
    target = g.shape_value([g.dims(x[0], 0, a), [n_out]]) if g.dynamic else list(shape[:a]) + [n_out]
    g.reshape(out, target, y[0])


@exports("Embed")
def _embed(g, layer, x, y):
    idx = g.node("Cast", [x[0]], to=g.TP.INT64)
    w = g.const(g.param(layer, 0), "weight")
    if len(layer.blobs) > 1:
        rows = g.node("Gather", [w, idx], axis=0)
        g.node("Add", [rows, g.const(g.param(layer, 1), "bias")], [y[0]])
    else:
        g.node("Gather", [w, idx], [y[0]], axis=0)


# ---- pooling -----------------------------------------------------------------------------------
def _pool_axis(size, k, s, p, out):
    """Caffe's windows on one axis, as ONNX floor-mode pooling sees them: (windows touching the
    image, end pad that makes a floor-mode pool give exactly those, end pad past a zero-padded
    plane of size + 2p)."""
    touching = min(out, -(-(size + p) // s))
    end = max(0, (touching - 1) * s + k - size - p)
    beyond = max(0, (touching - 1) * s + k - size - 2 * p)
    return touching, end, beyond


@exports("Pooling")
def _pooling(g, layer, x, y):
    P = pb.PoolingParameter
    if layer.method == P.STOCHASTIC:
        raise NetdefError("STOCHASTIC pooling has no ONNX equivalent")
    if len(y) > 1:
        raise NetdefError("MAX pooling's mask top (Caffe's argmax positions) has no ONNX equivalent; "
                          "remove the second top for deployment")
    if layer.global_pooling:
        g.node("GlobalMaxPool" if layer.method == P.MAX else "GlobalAveragePool", x, y)
        return
    H, W, PH, PW, kh, kw, sh, sw, ph, pw = layer.geom
    op = "MaxPool" if layer.method == P.MAX else "AveragePool"
    common = dict(kernel_shape=[kh, kw], strides=[sh, sw])
    if g.dynamic:
        attrs = dict(common, pads=[ph, pw, ph, pw], ceil_mode=int(layer.ceil_mode))
        if op == "AveragePool":
            attrs["count_include_pad"] = int(ph > 0 or pw > 0)
        empty_last = layer.ceil_mode and ph == 0 and pw == 0 and (sh > kh or sw > kw)
        if not empty_last:
            g.node(op, x, y, **attrs)
            return
        # ONNX's ceil rounding drops a last window that starts past the image; Caffe keeps it
        # (netdef: as 0): pad the output up to Caffe's size, ceil((H - k) / s) + 1.
        pooled = g.node(op, x, **attrs)
        hw = g.dims(x[0], 2, 4)
        span = g.node("Add", [hw, g.ints([sh - kh - 1, sw - kw - 1], "s_minus_k")])
        want = g.node("Add", [g.node("Div", [span, g.ints([sh, sw], "stride")]), g.ints([1, 1], "one")])
        extra = g.node("Sub", [want, g.dims(pooled, 2, 4)])
        pads = g.shape_value([[0, 0, 0, 0, 0, 0], extra])
        g.node("Pad", [pooled, pads, g.const(np.float32(0), "zero")], y, mode="constant")
        return
    th, eh, bh = _pool_axis(H, kh, sh, ph, PH)
    tw, ew, bw = _pool_axis(W, kw, sw, pw, PW)
    pooled_out = y[0] if (th, tw) == (PH, PW) else None
    if op == "MaxPool":
        pooled = g.node(op, x, pooled_out and [pooled_out], pads=[ph, pw, eh, ew], **common)
    elif bh == 0 and bw == 0:
        # every window lies inside the zero-padded plane: the divisor is the whole kernel
        pooled = g.node(op, x, pooled_out and [pooled_out], pads=[ph, pw, ph, pw],
                        count_include_pad=int(ph > 0 or pw > 0), **common)
    else:
        # a ceil window reaches past the padding: Caffe's divisor counts the padding but not
        # what lies beyond it, i.e. the window clipped to the zero-padded plane
        src = x[0]
        if ph or pw:
            src = g.node("Pad", [src, g.ints([0, 0, ph, pw, 0, 0, ph, pw], "pads"),
                                 g.const(np.float32(0), "zero")], mode="constant")
        pooled = g.node(op, [src], pooled_out and [pooled_out], pads=[0, 0, bh, bw],
                        count_include_pad=0, **common)
    if pooled_out is None:
        # Caffe's ceil rounding keeps a last window that starts past the image (stride > kernel,
        # no padding); netdef gives it 0
        g.node("Pad", [pooled, g.ints([0, 0, 0, 0, 0, 0, PH - th, PW - tw], "pads"),
                       g.const(np.float32(0), "zero")], y, mode="constant")


# ---- normalization -----------------------------------------------------------------------------
def _channel_shape(rank, axis, shape):
    """A param of `shape` broadcast from `axis` of a rank-`rank` value."""
    return tuple(shape) + (1,) * (rank - axis - len(shape))


@exports("BatchNorm")
def _batch_norm(g, layer, x, y):
    (shape,), _ = _static(g, layer)
    if len(shape) < 2:
        raise NetdefError(f"a bottom of shape {shape}: ONNX's BatchNormalization needs (N, C, ...)")
    if layer.use_global_stats:
        s = g.param(layer, 2).reshape(-1)[0]
        f = 0.0 if s == 0 else 1.0 / s
        C = shape[1]
        g.node("BatchNormalization",
               [x[0], g.const(np.ones(C), "scale"), g.const(np.zeros(C), "bias"),
                g.const(g.param(layer, 0) * f, "mean"), g.const(g.param(layer, 1) * f, "var")],
               y, epsilon=layer.eps)
        g.bn_rank[y[0]] = len(shape)
        return
    axes = [0] + list(range(2, len(shape)))
    mean = g.axes_op("ReduceMean", x[0], axes, keepdims=1)
    d = g.node("Sub", [x[0], mean])
    var = g.axes_op("ReduceMean", g.node("Mul", [d, d]), axes, keepdims=1)
    std = g.node("Sqrt", [g.node("Add", [var, g.const(np.float32(layer.eps), "eps")])])
    g.node("Div", [d, std], y)


def _broadcast_operand(g, layer, x, k_axis, operand, shape, what):
    """operand (a param array or a second bottom's value) reshaped to broadcast over x from axis."""
    rank = len(shape)
    if isinstance(operand, np.ndarray):
        k = operand.ndim
        axis = 0 if k == 0 else (k_axis + rank if k_axis < 0 else k_axis)
        return g.const(operand.reshape(_channel_shape(rank, axis, operand.shape)), what)
    k = len(g.shape(1))
    axis = 0 if k == 0 else (k_axis + rank if k_axis < 0 else k_axis)
    trailing = rank - axis - k
    return g.axes_op("Unsqueeze", operand, list(range(k, k + trailing))) if trailing else operand


@exports("Scale")
def _scale(g, layer, x, y):
    (shape, *_), _ = _static(g, layer)
    p = layer.layer_param.scale_param
    s = g.param(layer, 0) if len(x) == 1 else x[1]
    s = _broadcast_operand(g, layer, x[0], p.axis, s, shape, "scale")
    if not layer.bias_term:
        g.node("Mul", [x[0], s], y)
        return
    b = _broadcast_operand(g, layer, x[0], p.axis, g.param(layer, layer.bias_index), shape, "bias")
    g.node("Add", [g.node("Mul", [x[0], s]), b], y)


@exports("Bias")
def _bias(g, layer, x, y):
    (shape, *_), _ = _static(g, layer)
    b = g.param(layer, 0) if len(x) == 1 else x[1]
    g.node("Add", [x[0], _broadcast_operand(g, layer, x[0], layer.layer_param.bias_param.axis, b,
                                            shape, "bias")], y)


@exports("LRN")
def _lrn(g, layer, x, y):
    if layer.region == pb.LRNParameter.ACROSS_CHANNELS:
        # Caffe's scale k + alpha / n sum x^2 over n channels is ONNX's bias + alpha / size sum
        g.node("LRN", x, y, size=layer.size, alpha=layer.alpha, beta=layer.beta, bias=layer.k)
        return
    # WITHIN_CHANNEL: 1 + alpha / n^2 * (sum of x^2 over the zero-padded n x n window)
    sq = g.node("Mul", [x[0], x[0]])
    h = layer.half
    mean = g.node("AveragePool", [sq], kernel_shape=[layer.size] * 2, pads=[h] * 4, strides=[1, 1],
                  count_include_pad=1)
    scale = g.node("Add", [g.node("Mul", [mean, g.const(np.float32(layer.alpha), "alpha")]),
                           g.const(np.float32(1.0), "one")])
    g.node("Mul", [x[0], g.node("Pow", [scale, g.const(np.float32(-layer.beta), "minus_beta")])], y)


@exports("MVN")
def _mvn(g, layer, x, y):
    (shape,), _ = _static(g, layer)
    axes = list(range(1 if layer.across_channels else 2, len(shape)))
    d = g.node("Sub", [x[0], g.axes_op("ReduceMean", x[0], axes, keepdims=1)],
               None if layer.normalize_variance else y)
    if layer.normalize_variance:
        # Caffe adds eps to the standard deviation, not to the variance
        std = g.node("Sqrt", [g.axes_op("ReduceMean", g.node("Mul", [d, d]), axes, keepdims=1)])
        g.node("Div", [d, g.node("Add", [std, g.const(np.float32(layer.eps), "eps")])], y)


@exports("Softmax")
def _softmax(g, layer, x, y):
    (shape,), _ = _static(g, layer)
    axis = layer.layer_param.softmax_param.axis % len(shape)
    trailing = int(np.prod(shape[axis + 1:], dtype=np.int64))
    if g.opset < 13 and axis != len(shape) - 1 and (g.dynamic or trailing != 1):
        raise NetdefError(f"softmax over axis {axis} of a {len(shape)}-D blob {shape}: before opset 13 "
                          "ONNX's Softmax normalizes over all the axes from `axis` on together, "
                          "not per position; export with --opset 13 or later")
    g.node("Softmax", x, y, axis=axis)


# ---- elementwise -------------------------------------------------------------------------------
@exports("ReLU")
def _relu(g, layer, x, y):
    slope = float(layer.layer_param.relu_param.negative_slope)
    if slope:
        g.node("LeakyRelu", x, y, alpha=slope)
    else:
        g.node("Relu", x, y)


@exports("PReLU")
def _prelu(g, layer, x, y):
    (shape,), _ = _static(g, layer)
    a = g.param(layer, 0)
    a = a.reshape(1) if layer.shared else a.reshape(_channel_shape(len(shape) - 1, 0, a.shape))
    g.node("PRelu", [x[0], g.const(a, "slope")], y)


def _simple(op, **attrs):
    def fn(g, layer, x, y):
        g.node(op, x, y, **{k: v(layer) if callable(v) else v for k, v in attrs.items()})
    return fn


EXPORTERS.update({
    "Sigmoid": _simple("Sigmoid"), "TanH": _simple("Tanh"), "AbsVal": _simple("Abs"),
    "BNLL": _simple("Softplus"),
    "ELU": _simple("Elu", alpha=lambda layer: float(layer.layer_param.elu_param.alpha)),
})


def _affine(g, x, scale, shift, out=None):
    """shift + scale * x, leaving out what is the identity."""
    v = x
    if scale != 1.0:
        v = g.node("Mul", [v, g.const(np.float32(scale), "scale")],
                   out if shift == 0.0 else None)
    if shift != 0.0:
        v = g.node("Add", [v, g.const(np.float32(shift), "shift")], out)
    if v == x and out:
        v = g.node("Identity", [x], out)
    return v


@exports("Power")
def _power(g, layer, x, y):
    if layer.power == 1.0:
        _affine(g, x[0], layer.scale, layer.shift, y)
        return
    base = _affine(g, x[0], layer.scale, layer.shift)
    g.node("Pow", [base, g.const(np.float32(layer.power), "power")], y)


@exports("Exp")
def _exp(g, layer, x, y):
    e = g.node("Exp", [_affine(g, x[0], layer.inner, 0.0)], None if layer.outer != 1.0 else y)
    if layer.outer != 1.0:
        g.node("Mul", [e, g.const(np.float32(layer.outer), "outer")], y)


@exports("Log")
def _log(g, layer, x, y):
    ln = g.node("Log", [_affine(g, x[0], layer.scale, layer.shift)],
                None if layer.base_scale != 1.0 else y)
    if layer.base_scale != 1.0:
        g.node("Mul", [ln, g.const(np.float32(layer.base_scale), "base_scale")], y)


@exports("Threshold")
def _threshold(g, layer, x, y):
    t = float(layer.layer_param.threshold_param.threshold)
    g.node("Cast", [g.node("Greater", [x[0], g.const(np.float32(t), "threshold")])], y,
           to=g.TP.FLOAT)


@exports("Clip")
def _clip(g, layer, x, y):
    p = layer.layer_param.clip_param
    g.node("Clip", [x[0], g.const(np.float32(p.min), "min"), g.const(np.float32(p.max), "max")], y)


@exports("Swish")
def _swish(g, layer, x, y):
    beta = float(layer.layer_param.swish_param.beta)
    g.node("Mul", [x[0], g.node("Sigmoid", [_affine(g, x[0], beta, 0.0)])], y)


@exports("Eltwise")
def _eltwise(g, layer, x, y):
    E = pb.EltwiseParameter
    if layer.op == E.MAX:
        g.node("Max", x, y)
    elif layer.op == E.PROD:
        v = x[0]
        for i, xi in enumerate(x[1:], 1):
            v = g.node("Mul", [v, xi], y if i == len(x) - 1 else None)
    else:
        c = layer.coeff
        if len(x) == 2 and c == [1.0, -1.0]:
            g.node("Sub", x, y)
            return
        terms = [xi if ci == 1.0 else g.node("Mul", [xi, g.const(np.float32(ci), "coeff")])
                 for xi, ci in zip(x, c)]
        g.node("Sum", terms, y)


# ---- shapes ------------------------------------------------------------------------------------
@exports("Concat")
def _concat(g, layer, x, y):
    g.node("Concat", x, y, axis=layer.axis)


@exports("Slice")
def _slice(g, layer, x, y):
    b, axis = layer.bounds, layer.axis
    if g.dynamic and axis != 1 and not layer.slice_points:
        attrs = {"num_outputs": len(y)} if g.opset >= 18 else {}
        g.node("Split", x, y, axis=axis, **attrs)
        return
    for k, yk in enumerate(y):
        end = INT64_MAX if g.dynamic and axis != 1 and k == len(y) - 1 else b[k + 1]
        g.slice(x[0], [b[k]], [end], [axis], yk)


@exports("Crop")
def _crop(g, layer, x, y):
    src, ref = g.shape(0), g.shape(1)
    axis = layer.layer_param.crop_param.axis % len(src)
    offs = list(layer.offsets)
    axes = list(range(axis, len(src)))
    if g.dynamic:
        ends = g.node("Add", [g.ints(offs, "offsets"), g.dims(x[1], axis, len(src))])
    else:
        ends = [o + r for o, r in zip(offs, ref[axis:])]
    g.slice(x[0], offs, ends, axes, y[0])


def _reshape_axes(g, x, y, start, end, dims):
    """Axes [start, end) of x replaced by `dims` (Caffe's 0: copy, -1: infer); with --dynamic
    computed from x's Shape, since ONNX's 0 copies the input's dimension at the same index, as
    Caffe's does from `start`."""
    if not g.dynamic:
        g.reshape(x[0], g.shape(0, "top"), y[0])
        return
    n = len(g.shape(0))
    parts = [[0] * start + list(dims)] + ([g.dims(x[0], end, n)] if end < n else [])
    g.reshape(x[0], g.shape_value(parts), y[0])


@exports("Flatten")
def _flatten(g, layer, x, y):
    p = layer.layer_param.flatten_param
    rank = len(g.shape(0))
    _reshape_axes(g, x, y, p.axis % rank, p.end_axis % rank + 1, [-1])


@exports("Reshape")
def _reshape(g, layer, x, y):
    p = layer.layer_param.reshape_param
    n = len(g.shape(0))
    start = p.axis if p.axis >= 0 else n + p.axis + 1
    _reshape_axes(g, x, y, start, n if p.num_axes == -1 else start + p.num_axes, layer.dims)


@exports("Tile")
def _tile(g, layer, x, y):
    shape = g.shape(0)
    reps = [1] * len(shape)
    reps[layer.layer_param.tile_param.axis % len(shape)] = layer.tiles
    g.node("Tile", [x[0], g.ints(reps, "repeats")], y)


@exports("Reduction")
def _reduction(g, layer, x, y):
    R = pb.ReductionParameter
    shape = g.shape(0)
    axis = layer.axis_param % len(shape) if shape else 0
    axes = list(range(axis, len(shape)))
    scale = layer.coeff
    if not axes:  # nothing to reduce: f(x) itself
        v = {R.SUM: x[0], R.MEAN: x[0]}.get(layer.op)
        if layer.op == R.ASUM:
            v = g.node("Abs", x)
        elif layer.op == R.SUMSQ:
            v = g.node("Mul", [x[0], x[0]])
    else:
        op = {R.SUM: "ReduceSum", R.ASUM: "ReduceL1", R.SUMSQ: "ReduceSumSquare",
              R.MEAN: "ReduceMean"}[layer.op]
        v = g.axes_op(op, x[0], axes, None if scale != 1.0 else y[0], keepdims=0)
        if scale == 1.0:
            return
    if scale != 1.0:
        g.node("Mul", [v, g.const(np.float32(scale), "coeff")], y)
    else:
        g.node("Identity", [v], y)


@exports("ArgMax")
def _argmax(g, layer, x, y):
    k = layer.top_k
    src, axis = x[0], None
    if layer.has_axis:
        axis = layer.axis
    else:
        src, axis = g.node("Flatten", [x[0]], axis=1), 1

    def indices(out=None):
        if k == 1:  # Caffe puts the larger index first among equal values
            extra = {"select_last_index": 1} if g.opset >= 12 else {}
            idx = g.node("ArgMax", [src], axis=axis, keepdims=1, **extra)
        else:
            idx = g.node("TopK", [src, g.ints([k], "k")], 2, axis=axis, largest=1, sorted=1)[1]
        return g.node("Cast", [idx], out and [out], to=g.TP.FLOAT)

    def values(out=None):
        return g.node("TopK", [src, g.ints([k], "k")], [out or g.tmp("values"), g.tmp("indices")],
                      axis=axis, largest=1, sorted=1)[0]

    if layer.has_axis:
        values(y[0]) if layer.out_max_val else indices(y[0])
        return
    # (N, k) -> (N, 1, k, 1...) or, with the values, (N, 2, k, 1...)
    rank = len(g.shape(0, "top"))
    parts = [g.axes_op("Unsqueeze", indices(), [1])]
    if layer.out_max_val:
        parts.append(g.axes_op("Unsqueeze", values(), [1]))
    v = parts[0] if len(parts) == 1 else g.node("Concat", parts, axis=1)
    g.reshape(v, [0, 0, 0] + [1] * (rank - 3), y[0])


@exports("Interp")
def _interp(g, layer, x, y):
    src = x[0]
    pb_, pe = layer.pad_beg, layer.pad_end
    if pb_ or pe:
        src = g.slice(src, [-pb_, -pb_], [pe if pe < 0 else INT64_MAX] * 2, [2, 3])
    p = layer.layer_param.interp_param
    if not g.dynamic:
        sizes = g.ints(g.shape(0, "top"), "sizes")
    elif len(x) > 1:
        sizes = g.shape_value([g.dims(x[0], 0, 2), g.dims(x[1], 2, 4)])
    elif p.HasField("height") and not (p.HasField("zoom_factor") or p.HasField("shrink_factor")):
        sizes = g.shape_value([g.dims(x[0], 0, 2), [int(p.height), int(p.width)]])
    else:
        hw = g.dims(src, 2, 4)
        one = g.ints([1, 1], "one")
        if p.HasField("shrink_factor"):
            s = int(p.shrink_factor)
            hw = g.node("Add", [g.node("Div", [g.node("Sub", [hw, one]), g.ints([s, s], "shrink")]), one])
        if p.HasField("zoom_factor"):
            z = int(p.zoom_factor)
            hw = g.node("Add", [hw, g.node("Mul", [g.node("Sub", [hw, one]), g.ints([z - 1] * 2, "zoom")])])
        sizes = g.shape_value([g.dims(x[0], 0, 2), hw])
    if g.opset >= 13:
        roi = scales = ""
    else:
        roi, scales = g.const(np.zeros(0), "roi"), g.const(np.zeros(0), "scales")
    g.node("Resize", [src, roi, scales, sizes], y, mode="linear",
           coordinate_transformation_mode="align_corners")


@exports("Parameter")
def _parameter(g, layer, x, y):
    g.node("Identity", [g.const(g.param(layer, 0), "value")], y)
