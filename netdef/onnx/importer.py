"""An ONNX model as a Caffe net: a NetParameter and the weights of its layers (IMPORTERS, one
function per ONNX operator).

The graph must have static shapes (give `input_shapes` for symbolic inputs): ONNX's shape
inference gives every value's shape, which Caffe's fixed parameters (pooling rounding, Interp's
size, Reshape's dims) are derived from. Values keep their names as blobs, nodes as layers.
What maps: Conv / ConvTranspose (symmetric pads; a zero Pad before them or before an
AveragePool is folded into their padding), MaxPool / AveragePool (the Caffe round_mode that gives
ONNX's output size; AveragePool only where Caffe's divisor, the window clipped to the padded
image, is ONNX's), Global*Pool, Gemm / MatMul with constant weights (InnerProduct), Flatten,
Reshape, Squeeze / Unsqueeze (Reshape), BatchNormalization (BatchNorm + Scale), Relu /
LeakyRelu / PRelu / Elu / Sigmoid / Tanh / Abs / Softplus / Exp / Log / Sqrt / Pow (Power),
Add / Sub / Mul / Div (Eltwise between two values of one shape; Power with a scalar constant;
Scale / Bias with a broadcast constant), Sum / Max, Concat, Split and single-axis Slice (Slice),
Slice over trailing axes (Crop to a DummyData reference), Softmax, LRN, Resize (linear,
align_corners: Interp), ArgMax, Greater with a constant (Threshold), Cast to float, Tile,
ReduceSum / ReduceL1 / ReduceSumSquare / ReduceMean over trailing axes without keepdims
(Reduction), Clip, Identity / Dropout. Anything else is an error listing the operators that
have no Caffe equivalent.
"""
import numpy as np

from ..core import netdef_pb2 as pb
from ..errors import NetdefError
from ._deps import registrar, require_onnx

#: ONNX op -> function(c, node): adds the layers computing the node's outputs
IMPORTERS = {}
imports = registrar(IMPORTERS)


def import_model(model, input_shapes=None):
    """(NetParameter, {layer name: [weight arrays]}) of an ONNX model (a ModelProto or a path)."""
    onnx = require_onnx()
    if not isinstance(model, onnx.ModelProto):
        try:
            model = onnx.load(str(model))
        except Exception as e:
            raise NetdefError(f"could not read the ONNX model: {e}", file=str(model)) from None
    return _Converter(onnx, model, input_shapes or {}).run()


def to_caffe(model, prototxt, caffemodel=None, input_shapes=None):
    """Writes the imported net as a prototxt and its weights as a .caffemodel; returns the Net."""
    from ..core import proto
    from ..core.net import TEST, Net

    param, weights = import_model(model, input_shapes)
    proto.write_text(param, prototxt)
    net = Net(param, TEST)
    for lname, arrays in weights.items():
        blobs = net.layer_dict[lname].blobs
        for b, a in zip(blobs, arrays):
            if a.size != b.count:
                raise NetdefError(f"layer '{lname}': a weight of shape {a.shape} for a param of shape "
                                  f"{b.shape}")
            a = a.reshape(b.shape)
            b.data[...] = net.backend.asarray(a.astype(net.dtype))
    if caffemodel:
        net.save(caffemodel)
    return net


class _Converter:
    def __init__(self, onnx, model, input_shapes):
        self.onnx, self.nh = onnx, onnx.numpy_helper
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.consts = {t.name: self.nh.to_array(t) for t in graph.initializer}
        model = self._static(model, input_shapes)
        self.graph = model.graph
        self.shapes = {}
        for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
            dims = vi.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                self.shapes[vi.name] = tuple(d.dim_value for d in dims)
        self.param = pb.NetParameter(name=graph.name or "onnx")
        self.weights = {}
        self.layer_names = {"input"}
        self.alias = {}  # ONNX value -> the blob holding it
        self.pads = {}  # value made by a zero Pad -> (source, (ph, pw))
        self.consumers = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.graph.output}

    def _static(self, model, input_shapes):
        model_copy = self.onnx.ModelProto()
        model_copy.CopyFrom(model)
        for vi in model_copy.graph.input:
            if vi.name in self.consts:
                continue
            dims = vi.type.tensor_type.shape.dim
            if vi.name in input_shapes:
                shape = input_shapes[vi.name]
                del dims[:]
                for d in shape:
                    dims.add().dim_value = int(d)
            elif not all(d.HasField("dim_value") for d in dims):
                raise NetdefError(f"input '{vi.name}' has symbolic dimensions; give its shape "
                                  f"(--input-shape {vi.name}=N,C,H,W)")
        try:
            return self.onnx.shape_inference.infer_shapes(model_copy, strict_mode=True)
        except Exception as e:
            raise NetdefError(f"ONNX shape inference failed: {e}") from None

    # ---- helpers ----------------------------------------------------------------------------
    def blob(self, value):
        if value in self.pads:
            raise NetdefError(f"the Pad making '{value}' has no Caffe equivalent (Caffe pads only "
                              "inside Convolution, Deconvolution and Pooling)")
        return self.alias.get(value, value)

    def shape(self, value):
        if value not in self.shapes:
            raise NetdefError(f"no static shape for '{value}' (ONNX shape inference gave none)")
        return self.shapes[value]

    def const(self, value, what="input"):
        if value not in self.consts:
            raise NetdefError(f"{what} '{value}' must be a constant (an initializer or a Constant node)")
        return self.consts[value]

    def attrs(self, node):
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def layer(self, node, type_, bottoms, tops, name=None, weights=()):
        base = name = name or node.name or (tops[0] if tops else type_)
        i = 1
        while name in self.layer_names:  # node names need not be unique in ONNX
            name, i = f"{base}_{i}", i + 1
        self.layer_names.add(name)
        lp = self.param.layer.add(name=name, type=type_)
        lp.bottom.extend(self.blob(b) for b in bottoms)
        lp.top.extend(tops)
        if weights:
            self.weights[lp.name] = [np.asarray(w, dtype=np.float32) for w in weights]
        return lp

    def run(self):
        missing = sorted({n.op_type for n in self.graph.node if n.op_type not in IMPORTERS})
        if missing:
            raise NetdefError(f"ONNX operators without a Caffe equivalent: {', '.join(missing)}")
        inputs = [vi for vi in self.graph.input if vi.name not in self.consts]
        if inputs:
            lp = self.param.layer.add(name="input", type="Input")
            for vi in inputs:
                lp.top.append(vi.name)
                lp.input_param.shape.add().dim.extend(self.shape(vi.name))
        for node in self.graph.node:
            try:
                IMPORTERS[node.op_type](self, node)
            except NetdefError as e:
                raise NetdefError(f"{node.op_type} node '{node.name}': {e.detail}") from None
        return self.param, self.weights


def _symmetric(pads, what):
    half = len(pads) // 2
    if list(pads[:half]) != list(pads[half:]):
        raise NetdefError(f"asymmetric pads {list(pads)}: Caffe's {what} pads both sides alike")
    return list(pads[:half])


def _spatial(c, node, a):
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise NetdefError(f"auto_pad {a['auto_pad']}: give explicit pads")
    if len(c.shape(node.input[0])) != 4:
        raise NetdefError(f"input of shape {c.shape(node.input[0])}: Caffe's layers here are 2-D (N, C, H, W)")


# ---- convolutions and products -----------------------------------------------------------------
@imports("Conv", "ConvTranspose")
def _conv(c, node):
    a = c.attrs(node)
    _spatial(c, node, a)
    w = c.const(node.input[1], "weight")
    x = node.input[0]
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if x in c.pads and node.op_type == "Conv":
        x, (ph, pw) = c.pads[x]
        pads = [pads[0] + ph, pads[1] + pw, pads[2] + ph, pads[3] + pw]
    ph, pw = _symmetric(pads, "convolution")
    if any(a.get("output_padding", [])) or "output_shape" in a:
        raise NetdefError("output_padding / output_shape: Caffe's Deconvolution has neither")
    group = int(a.get("group", 1))
    transposed = node.op_type == "ConvTranspose"
    num_output = w.shape[1] * group if transposed else w.shape[0]
    weights = [w] + ([c.const(node.input[2], "bias")] if len(node.input) > 2 and node.input[2] else [])
    lp = c.layer(node, "Deconvolution" if transposed else "Convolution", [x], [node.output[0]],
                 weights=weights)
    p = lp.convolution_param
    p.num_output, p.group, p.bias_term = num_output, group, len(weights) > 1
    p.kernel_h, p.kernel_w = w.shape[2:]
    p.stride_h, p.stride_w = a.get("strides", [1, 1])
    p.pad_h, p.pad_w = ph, pw
    p.dilation.extend(a.get("dilations", [1, 1]))


@imports("Gemm", "MatMul")
def _gemm(c, node):
    a = c.attrs(node)
    if a.get("transA", 0) or len(c.shape(node.input[0])) != 2:
        raise NetdefError("only (M, K) x constant (K, N) products map to InnerProduct")
    w = c.const(node.input[1], "weight").astype(np.float64) * a.get("alpha", 1.0)
    w = w if a.get("transB", 0) else w.T
    weights = [w]
    if len(node.input) > 2 and node.input[2]:
        b = np.broadcast_to(c.const(node.input[2], "bias") * a.get("beta", 1.0), (w.shape[0],))
        weights.append(b)
    lp = c.layer(node, "InnerProduct", [node.input[0]], [node.output[0]], weights=weights)
    lp.inner_product_param.num_output = w.shape[0]
    lp.inner_product_param.bias_term = len(weights) > 1


# ---- pooling -----------------------------------------------------------------------------------
@imports("MaxPool", "AveragePool")
def _pool(c, node):
    from ..layers.pooling import pooled_size

    a = c.attrs(node)
    _spatial(c, node, a)
    if len(node.output) > 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise NetdefError("MaxPool's indices output and dilated pooling have no Caffe equivalent")
    x = node.input[0]
    (kh, kw), (sh, sw) = a["kernel_shape"], a.get("strides", [1, 1])
    pads = list(a.get("pads", [0, 0, 0, 0]))
    ave = node.op_type == "AveragePool"
    include = bool(a.get("count_include_pad", 0))
    if ave and x in c.pads and pads[:2] == [0, 0] and not include:
        # a zero Pad, then a pool counting only what is inside the padded tensor: Caffe's divisor
        x, (ph, pw) = c.pads[x]
    else:
        ph, pw = pads[:2]
        if ave and not include and (ph or pw):
            raise NetdefError("count_include_pad 0 with padding: Caffe's AVE divisor counts the padding")
    H, W = c.shape(x)[2:]
    OH, OW = c.shape(node.output[0])[2:]
    any_pad = ph > 0 or pw > 0
    for mode in (pb.PoolingParameter.CEIL, pb.PoolingParameter.FLOOR):
        ceil = mode == pb.PoolingParameter.CEIL
        if (pooled_size(H, kh, sh, ph, ceil, any_pad), pooled_size(W, kw, sw, pw, ceil, any_pad)) == (OH, OW):
            break
    else:
        raise NetdefError(f"no Caffe rounding gives its output {OH} x {OW} from {H} x {W}")
    if ave and include:
        for size, k, s, p, e, o in ((H, kh, sh, ph, pads[2], OH), (W, kw, sw, pw, pads[3], OW)):
            last_end = (o - 1) * s - p + k
            if e != p and last_end > size + min(p, e):
                raise NetdefError("its windows' divisor is clipped at other pads than Caffe's")
    lp = c.layer(node, "Pooling", [x], [node.output[0]])
    p = lp.pooling_param
    p.pool = pb.PoolingParameter.AVE if ave else pb.PoolingParameter.MAX
    p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w = kh, kw, sh, sw, ph, pw
    p.round_mode = mode


@imports("GlobalMaxPool", "GlobalAveragePool")
def _global_pool(c, node):
    lp = c.layer(node, "Pooling", [node.input[0]], [node.output[0]])
    lp.pooling_param.pool = pb.PoolingParameter.MAX if node.op_type == "GlobalMaxPool" else pb.PoolingParameter.AVE
    lp.pooling_param.global_pooling = True


@imports("Pad")
def _pad(c, node):
    a = c.attrs(node)
    pads = list(c.const(node.input[1], "pads")) if len(node.input) > 1 else list(a.get("pads", []))
    value = float(c.const(node.input[2], "constant_value")) if len(node.input) > 2 and node.input[2] else 0.0
    mode = a.get("mode", b"constant")
    rank = len(pads) // 2
    if (mode not in (b"constant", "constant") or value != 0 or rank != 4 or any(pads[:2]) or any(pads[4:6])
            or pads[2:4] != pads[6:8]):
        raise NetdefError(f"Pad {pads} (mode {mode}, value {value}): Caffe pads only zeros, alike on "
                          "both sides of H and W, inside Convolution and Pooling")
    c.pads[node.output[0]] = (node.input[0], (int(pads[2]), int(pads[3])))


# ---- normalization -----------------------------------------------------------------------------
@imports("BatchNormalization")
def _batch_norm(c, node):
    a = c.attrs(node)
    if a.get("training_mode", 0) or len(node.output) > 1:
        raise NetdefError("only inference BatchNormalization maps to Caffe's BatchNorm")
    scale, bias, mean, var = (c.const(i, "statistics") for i in node.input[1:5])
    plain = np.all(scale == 1) and np.all(bias == 0)
    bn_top = node.output[0] if plain else f"{node.output[0]}/normalized"
    lp = c.layer(node, "BatchNorm", [node.input[0]], [bn_top], weights=[mean, var, np.ones(1)])
    lp.batch_norm_param.use_global_stats = True
    lp.batch_norm_param.eps = float(a.get("epsilon", 1e-5))
    if not plain:
        sp = c.layer(node, "Scale", [bn_top], [node.output[0]], name=f"{lp.name}/scale",
                     weights=[scale, bias])
        sp.scale_param.bias_term = True


@imports("LRN")
def _lrn(c, node):
    a = c.attrs(node)
    if a["size"] % 2 == 0:
        raise NetdefError(f"size {a['size']}: Caffe's LRN needs an odd size")
    p = c.layer(node, "LRN", [node.input[0]], [node.output[0]]).lrn_param
    p.local_size, p.alpha, p.beta, p.k = a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)


@imports("Softmax")
def _softmax(c, node):
    rank = len(c.shape(node.input[0]))
    axis = c.attrs(node).get("axis", -1 if c.opset >= 13 else 1) % rank
    if c.opset < 13 and axis != rank - 1 and int(np.prod(c.shape(node.input[0])[axis + 1:])) != 1:
        raise NetdefError(f"opset {c.opset} Softmax over axis {axis} normalizes all the axes from it "
                          "on together, which Caffe's Softmax does not")
    c.layer(node, "Softmax", [node.input[0]], [node.output[0]]).softmax_param.axis = axis


# ---- elementwise -------------------------------------------------------------------------------
def _neuron(type_, setter=None):
    def fn(c, node):
        lp = c.layer(node, type_, [node.input[0]], [node.output[0]])
        if setter:
            setter(lp, c.attrs(node))
    return fn


IMPORTERS.update({
    "Relu": _neuron("ReLU"), "Sigmoid": _neuron("Sigmoid"), "Tanh": _neuron("TanH"),
    "Abs": _neuron("AbsVal"), "Softplus": _neuron("BNLL"), "Exp": _neuron("Exp"), "Log": _neuron("Log"),
    "LeakyRelu": _neuron("ReLU", lambda lp, a: setattr(lp.relu_param, "negative_slope", a.get("alpha", 0.01))),
    "Elu": _neuron("ELU", lambda lp, a: setattr(lp.elu_param, "alpha", a.get("alpha", 1.0))),
    "Sqrt": _neuron("Power", lambda lp, a: setattr(lp.power_param, "power", 0.5)),
})


@imports("PRelu")
def _prelu(c, node):
    slope = c.const(node.input[1], "slope")
    lp = c.layer(node, "PReLU", [node.input[0]], [node.output[0]], weights=[slope.reshape(-1)])
    lp.prelu_param.channel_shared = slope.size == 1 and c.shape(node.input[0])[1] != 1


@imports("Identity", "Dropout", "Cast")
def _identity(c, node):
    if node.op_type == "Cast" and c.attrs(node)["to"] != c.onnx.TensorProto.FLOAT:
        raise NetdefError("Caffe's blobs are float: only a Cast to float maps")
    if node.output[0] in c.outputs:  # keep the output's name: an identity Power
        c.layer(node, "Power", [node.input[0]], [node.output[0]])
    else:
        c.alias[node.output[0]] = c.blob(node.input[0])


@imports("Clip")
def _clip(c, node):
    a = c.attrs(node)
    lo = c.const(node.input[1], "min") if len(node.input) > 1 and node.input[1] else a.get("min")
    hi = c.const(node.input[2], "max") if len(node.input) > 2 and node.input[2] else a.get("max")
    if lo is None or hi is None:
        raise NetdefError("Caffe's Clip needs both bounds")
    p = c.layer(node, "Clip", [node.input[0]], [node.output[0]]).clip_param
    p.min, p.max = float(lo), float(hi)


def _scalar(c, node, what, type_):
    v = c.const(node.input[1], what)
    if v.size != 1:
        raise NetdefError(f"only a scalar {what} maps to {type_}")
    return c.layer(node, type_, [node.input[0]], [node.output[0]]), float(v.reshape(()))


@imports("Greater")
def _greater(c, node):
    lp, t = _scalar(c, node, "threshold", "Threshold")
    lp.threshold_param.threshold = t


@imports("Pow")
def _pow(c, node):
    lp, e = _scalar(c, node, "exponent", "Power")
    lp.power_param.power = e


@imports("Add", "Sub", "Mul", "Div")
def _arith(c, node):
    op = node.op_type
    x, y = node.input
    cx, cy = x in c.consts, y in c.consts
    if not cx and not cy:
        if c.shape(x) != c.shape(y) or op == "Div":
            raise NetdefError(f"{op} of {c.shape(x)} and {c.shape(y)}: Caffe's Eltwise takes two blobs "
                              "of one shape (SUM, PROD; Div has none)")
        lp = c.layer(node, "Eltwise", [x, y], [node.output[0]])
        lp.eltwise_param.operation = pb.EltwiseParameter.PROD if op == "Mul" else pb.EltwiseParameter.SUM
        if op == "Sub":
            lp.eltwise_param.coeff.extend([1.0, -1.0])
        return
    if cx and cy:
        raise NetdefError("an operation on two constants")
    value, k = (y, c.consts[x]) if cx else (x, c.consts[y])
    k = k.astype(np.float64)
    if op in ("Sub", "Div") and cx:  # k - v, k / v
        if op == "Div":
            raise NetdefError("a constant divided by a blob has no Caffe layer")
        scale, shift = -1.0, k
    elif op in ("Add", "Sub"):
        scale, shift = 1.0, (k if op == "Add" else -k)
    else:
        scale, shift = (k if op == "Mul" else 1.0 / k), 0.0
    if np.size(k) == 1:
        p = c.layer(node, "Power", [value], [node.output[0]]).power_param
        p.scale, p.shift = float(np.reshape(scale, ())), float(np.reshape(shift, ()))
        return
    if np.ndim(scale) == 0 and scale != 1.0:
        raise NetdefError("a blob subtracted from a broadcast constant has no Caffe layer")
    operand = scale if np.ndim(scale) else shift
    shape = c.shape(value)
    full = (1,) * (len(shape) - operand.ndim) + operand.shape
    nz = [i for i, d in enumerate(full) if d != 1]
    axis, end = nz[0], nz[-1] + 1
    if any(full[i] != shape[i] for i in range(axis, end)):
        raise NetdefError(f"a constant of shape {operand.shape} broadcast over {shape} in a way "
                          "Caffe's Scale / Bias cannot")
    type_ = "Scale" if np.ndim(scale) else "Bias"
    lp = c.layer(node, type_, [value], [node.output[0]], weights=[operand.reshape(full[axis:end])])
    p = lp.scale_param if type_ == "Scale" else lp.bias_param
    p.axis, p.num_axes = axis, end - axis


@imports("Sum", "Max")
def _variadic(c, node):
    shapes = {c.shape(i) for i in node.input}
    if len(shapes) != 1:
        raise NetdefError(f"inputs of shapes {sorted(shapes)}: Caffe's Eltwise takes one shape")
    if len(node.input) == 1:
        _identity(c, node)
        return
    lp = c.layer(node, "Eltwise", list(node.input), [node.output[0]])
    lp.eltwise_param.operation = pb.EltwiseParameter.SUM if node.op_type == "Sum" else pb.EltwiseParameter.MAX


# ---- shapes ------------------------------------------------------------------------------------
@imports("Concat")
def _concat(c, node):
    axis = c.attrs(node)["axis"] % len(c.shape(node.output[0]))
    c.layer(node, "Concat", list(node.input), [node.output[0]]).concat_param.axis = axis


@imports("Split")
def _split(c, node):
    shape = c.shape(node.input[0])
    axis = c.attrs(node).get("axis", 0) % len(shape)
    sizes = [c.shape(o)[axis] for o in node.output]
    lp = c.layer(node, "Slice", [node.input[0]], list(node.output))
    lp.slice_param.axis = axis
    lp.slice_param.slice_point.extend(np.cumsum(sizes)[:-1].tolist())


@imports("Slice")
def _slice(c, node):
    x, shape, out = node.input[0], c.shape(node.input[0]), c.shape(node.output[0])
    rank = len(shape)
    starts = c.const(node.input[1], "starts")
    axes = c.const(node.input[3], "axes") if len(node.input) > 3 and node.input[3] else range(len(starts))
    steps = c.const(node.input[4], "steps") if len(node.input) > 4 and node.input[4] else [1] * len(starts)
    if any(s != 1 for s in steps):
        raise NetdefError("strided slices have no Caffe layer")
    begin = [0] * rank
    for a, s in zip(axes, starts):
        a = int(a) % rank
        begin[a] = int(min(max(s + shape[a] if s < 0 else s, 0), shape[a]))
    cut = [d for d in range(rank) if out[d] != shape[d]]
    if not cut:
        _identity(c, node)
        return
    if len(cut) == 1:
        d = cut[0]
        points = [p for p in (begin[d], begin[d] + out[d]) if 0 < p < shape[d]]
        pieces = [f"{node.output[0]}/before"] if begin[d] > 0 else []
        pieces.append(node.output[0])
        if begin[d] + out[d] < shape[d]:
            pieces.append(f"{node.output[0]}/after")
        lp = c.layer(node, "Slice", [x], pieces)
        lp.slice_param.axis = d
        lp.slice_param.slice_point.extend(points)
        rest = [p for p in pieces if p != node.output[0]]
        c.layer(node, "Silence", [], [], name=f"{lp.name}/silence").bottom.extend(rest)
        return
    # several axes: Caffe's Crop from the first of them, to a reference blob of the output's shape
    first = cut[0]
    ref = f"{node.output[0]}/shape"
    dummy = c.layer(node, "DummyData", [], [ref], name=f"{node.name or node.output[0]}/shape")
    dummy.dummy_data_param.shape.add().dim.extend(list(shape[:first]) + list(out[first:]))
    lp = c.layer(node, "Crop", [x, ref], [node.output[0]])
    lp.crop_param.axis = first
    lp.crop_param.offset.extend(begin[first:])


@imports("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def _reshape(c, node):
    out = c.shape(node.output[0])
    a = c.attrs(node)
    if node.op_type == "Flatten" and a.get("axis", 1) == 1 and len(out) == 2:
        c.layer(node, "Flatten", [node.input[0]], [node.output[0]])
        return
    lp = c.layer(node, "Reshape", [node.input[0]], [node.output[0]])
    dims = list(out)
    if node.op_type == "Reshape" and not a.get("allowzero", 0):
        spec = [int(d) for d in c.const(node.input[1], "shape")]
        if all(d >= -1 for d in spec):
            dims = spec  # Caffe's 0 and -1 are ONNX's: keeps the batch free
    lp.reshape_param.shape.dim.extend(dims)


@imports("Tile")
def _tile(c, node):
    reps = [int(r) for r in c.const(node.input[1], "repeats")]
    axes = [i for i, r in enumerate(reps) if r != 1]
    if len(axes) > 1:
        raise NetdefError(f"repeats {reps}: Caffe's Tile repeats one axis")
    if not axes:
        _identity(c, node)
        return
    p = c.layer(node, "Tile", [node.input[0]], [node.output[0]]).tile_param
    p.axis, p.tiles = axes[0], reps[axes[0]]


@imports("ReduceSum", "ReduceL1", "ReduceSumSquare", "ReduceMean")
def _reduce(c, node):
    R = pb.ReductionParameter
    a = c.attrs(node)
    rank = len(c.shape(node.input[0]))
    axes = a.get("axes")
    if len(node.input) > 1 and node.input[1]:
        axes = c.const(node.input[1], "axes")
    axes = sorted(int(x) % rank for x in axes) if axes is not None and len(axes) else list(range(rank))
    if a.get("keepdims", 1) or axes != list(range(axes[0], rank)):
        raise NetdefError(f"axes {axes}, keepdims {a.get('keepdims', 1)}: Caffe's Reduction reduces "
                          "all the trailing axes from one on and drops them")
    p = c.layer(node, "Reduction", [node.input[0]], [node.output[0]]).reduction_param
    p.operation = {"ReduceSum": R.SUM, "ReduceL1": R.ASUM, "ReduceSumSquare": R.SUMSQ,
                   "ReduceMean": R.MEAN}[node.op_type]
    p.axis = axes[0]


@imports("ArgMax")
def _argmax(c, node):
    a = c.attrs(node)
    if not a.get("keepdims", 1):
        raise NetdefError("keepdims 0: Caffe's ArgMax keeps the axis")
    rank = len(c.shape(node.input[0]))
    c.layer(node, "ArgMax", [node.input[0]], [node.output[0]]).argmax_param.axis = a.get("axis", 0) % rank


@imports("Resize")
def _resize(c, node):
    a = c.attrs(node)
    mode, ctm = a.get("mode", b"nearest"), a.get("coordinate_transformation_mode", b"half_pixel")
    shape, out = c.shape(node.input[0]), c.shape(node.output[0])
    if (mode not in (b"linear", "linear") or ctm not in (b"align_corners", "align_corners")
            or len(shape) != 4 or shape[:2] != out[:2]):
        raise NetdefError(f"mode {mode}, coordinate_transformation_mode {ctm}: only a linear resize of "
                          "H x W with align_corners maps to Interp")
    p = c.layer(node, "Interp", [node.input[0]], [node.output[0]]).interp_param
    p.height, p.width = out[2:]


@imports("Constant")
def _constant(c, node):
    c.consts[node.output[0]] = c.nh.to_array(c.attrs(node)["value"])
