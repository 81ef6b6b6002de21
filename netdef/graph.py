"""Passes over a NetParameter, run in this order before a Net builds its layers:

1. upgrade_net(net)          legacy formats to the current one, in place: V1 `layers {}` become
                             `layer {}` (enum type → type string, blobs_lr / weight_decay /
                             param names → ParamSpec), and the deprecated net-level `input` /
                             `input_shape` / `input_dim` become an Input layer in front.
2. filter_net(net, state)    a copy holding only the layers whose include / exclude NetStateRules
                             admit the NetState (phase, level, stages).
3. insert_splits(net)        a copy where every top read by more than one bottom (a loss-weighted
                             top counts as one more reader) feeds a Split layer with one top per
                             reader, so that each reader's gradient gets its own diff and the
                             Split adds them up.

Each pass takes and gives protobuf messages only; none creates a layer or a blob.
"""
from . import netdef_pb2 as pb
from .errors import ParseError

# ---------------------------------------------------------------------------------------------
# 1. Upgrade of legacy formats

# V1LayerParameter.LayerType value → V2 type string (Caffe's UpgradeV1LayerType).
_V1_TYPE_NAMES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


def upgrade_net(net, filename=None):
    """Bring a NetParameter to the current format in place: V1 `layers` become `layer`, and
    the deprecated `input`/`input_shape`/`input_dim` fields become an Input layer."""
    if net.layers:
        if net.layer:
            raise ParseError("both 'layer' and legacy 'layers' fields are used; use only 'layer'", file=filename)
        for v1 in net.layers:
            net.layer.add().CopyFrom(_upgrade_v1_layer(v1, filename))
        del net.layers[:]
    if net.input:
        _upgrade_inputs(net, filename)
    return net


def _upgrade_v1_layer(v1, filename):
    if v1.HasField("layer"):
        raise ParseError(
            f"layer '{v1.name or v1.layer.name}' uses the V0 format (layers {{ layer {{ ... }} }}), "
            "which netdef does not read; upgrade it with Caffe's upgrade_net_proto_text", file=filename)
    layer = pb.LayerParameter()
    layer.name = v1.name
    if v1.HasField("type"):
        enum_name = pb.V1LayerParameter.LayerType.Name(v1.type)
        layer.type = _V1_TYPE_NAMES[enum_name]
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.blobs.extend(v1.blobs)
    layer.loss_weight.extend(v1.loss_weight)
    nparams = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(nparams):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    # Every other V1 *_param has the same message type and name as its V2 counterpart.
    for field, value in v1.ListFields():
        if field.name.endswith("_param"):
            getattr(layer, field.name).CopyFrom(value)
    return layer


def _upgrade_inputs(net, filename):
    n = len(net.input)
    if net.input_dim and len(net.input_dim) != 4 * n:
        raise ParseError(f"input_dim has {len(net.input_dim)} values; expected 4 per input ({4 * n})",
                         file=filename)
    if net.input_shape and len(net.input_shape) not in (1, n):
        raise ParseError(f"{len(net.input_shape)} input_shape for {n} inputs", file=filename)
    layer = pb.LayerParameter(name="input", type="Input")
    layer.top.extend(net.input)
    for i in range(n):
        shape = layer.input_param.shape.add()
        if net.input_shape:
            shape.CopyFrom(net.input_shape[i if len(net.input_shape) == n else 0])
        elif net.input_dim:
            shape.dim.extend(net.input_dim[4 * i:4 * i + 4])
        else:
            raise ParseError(f"input '{net.input[i]}' has no input_shape or input_dim", file=filename)
    layers = [layer] + list(net.layer)
    del net.layer[:]
    net.layer.extend(layers)
    del net.input[:]
    del net.input_shape[:]
    del net.input_dim[:]


# ---------------------------------------------------------------------------------------------
# 2. NetState filtering


def state_meets_rule(state, rule):
    """Does NetState `state` satisfy NetStateRule `rule` (every condition the rule sets)?"""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def filter_net(net, state, filename=None):
    """A copy of `net` with only the layers whose include/exclude rules admit `state`."""
    out = pb.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    for layer in net.layer:
        if layer.include and layer.exclude:
            raise ParseError("a layer may have include or exclude rules, not both",
                             file=filename, layer=layer.name)
        if layer.include:
            keep = any(state_meets_rule(state, r) for r in layer.include)
        else:
            keep = not any(state_meets_rule(state, r) for r in layer.exclude)
        if keep:
            out.layer.add().CopyFrom(layer)
    out.state.CopyFrom(state)
    return out


# ---------------------------------------------------------------------------------------------
# 3. Split insertion


def split_layer_name(blob, layer, top_index):
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(blob, layer, top_index, k):
    return f"{blob}_{layer}_{top_index}_split_{k}"


def insert_splits(net):
    """A copy of `net` where every top consumed by more than one bottom (a loss-weighted top
    counts as one more consumer) goes through a Split layer with one top per consumer."""
    producer = {}  # blob name -> (layer index, top index) of its latest producer
    consumers = {}  # (layer index, top index) -> list of (layer index, bottom index)
    for li, layer in enumerate(net.layer):
        for bi, b in enumerate(layer.bottom):
            if b in producer:
                consumers.setdefault(producer[b], []).append((li, bi))
        for ti, t in enumerate(layer.top):
            producer[t] = (li, ti)

    def has_loss(li, ti):
        lw = net.layer[li].loss_weight
        return ti < len(lw) and lw[ti] != 0

    out = pb.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    rename = {}  # (consumer layer, bottom index) -> split blob name
    splits_after = {}
    for (li, ti), cons in consumers.items():
        n = len(cons) + (1 if has_loss(li, ti) else 0)
        if n <= 1:
            continue
        layer = net.layer[li]
        blob = layer.top[ti]
        sp = pb.LayerParameter(name=split_layer_name(blob, layer.name, ti), type="Split")
        sp.bottom.append(blob)
        for k in range(n):
            sp.top.append(split_blob_name(blob, layer.name, ti, k))
        for k, (cl, cb) in enumerate(cons):
            rename[(cl, cb)] = sp.top[k]
        if has_loss(li, ti):
            # The loss weight moves onto the split's last top, which nothing else consumes.
            sp.loss_weight.extend([0] * (n - 1) + [layer.loss_weight[ti]])
        splits_after.setdefault(li, []).append(sp)
    for li, layer in enumerate(net.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for bi in range(len(layer.bottom)):
            if (li, bi) in rename:
                new.bottom[bi] = rename[(li, bi)]
        for sp in splits_after.get(li, []):
            ti = list(layer.top).index(sp.bottom[0])
            if ti < len(new.loss_weight) and new.loss_weight[ti] != 0:
                new.loss_weight[ti] = 0
            out.layer.add().CopyFrom(sp)
    return out
