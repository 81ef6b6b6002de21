"""Passes over a NetParameter, run in this order before a Net builds its layers:

1. upgrade_net(net)          legacy formats to the current one, in place, as Caffe's
                             UpgradeNetAsNeeded: V0 `layers { layer { type: "conv" ... } }`
                             become V1 layers (flat V0 fields → the type's *_param, "padding"
                             layers folded into the pad of the conv / pool they feed); V1
                             `layers {}` become `layer {}` (enum type → type string, blobs_lr /
                             weight_decay / param names → ParamSpec, the data layers' scale /
                             mean_file / crop_size / mirror → transform_param); and the
                             deprecated net-level `input` / `input_shape` / `input_dim` become
                             an Input layer in front. Loading a net and `netdef upgrade-net`
                             both run it.
2. filter_net(net, state)    a copy holding only the layers whose include / exclude NetStateRules
                             admit the NetState (phase, level, stages).
3. insert_splits(net)        a copy where every top read by more than one bottom (a loss-weighted
                             top counts as one more reader) feeds a Split layer with one top per
                             reader, so that each reader's gradient gets its own diff and the
                             Split adds them up.

Each pass takes and gives protobuf messages only; none creates a layer or a blob.
"""
from . import netdef_pb2 as pb
from ..errors import ParseError

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


# V0LayerParameter.type → V1LayerParameter.LayerType name (Caffe's UpgradeV0LayerType).
_V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS", "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT", "im2col": "IM2COL",
    "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS", "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN", "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}

# Where each flat V0 field goes: {V0 field: {V0 type: (V1 *_param, its field)}}; the type "*"
# stands for every type (the transformation fields). The V0 `pool` enum has the values of
# PoolingParameter.PoolMethod, so numbers copy as they are.
_CONV_IP = {"conv": "convolution_param", "innerproduct": "inner_product_param"}
_V0_FIELDS = {
    "num_output": {t: (p, "num_output") for t, p in _CONV_IP.items()},
    "biasterm": {t: (p, "bias_term") for t, p in _CONV_IP.items()},
    "weight_filler": {t: (p, "weight_filler") for t, p in _CONV_IP.items()},
    "bias_filler": {t: (p, "bias_filler") for t, p in _CONV_IP.items()},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"), "pool": ("pooling_param", "kernel_size")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "group": {"conv": ("convolution_param", "group")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {"data": ("data_param", "source"), "hdf5_data": ("hdf5_data_param", "source"),
               "images": ("image_data_param", "source"),
               "window_data": ("window_data_param", "source"),
               "infogain_loss": ("infogain_loss_param", "source")},
    "batchsize": {"data": ("data_param", "batch_size"), "hdf5_data": ("hdf5_data_param", "batch_size"),
                  "images": ("image_data_param", "batch_size"),
                  "window_data": ("window_data_param", "batch_size")},
    "rand_skip": {"data": ("data_param", "rand_skip"), "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", None)},
    "scale": {"*": ("transform_param", "scale")},
    "meanfile": {"*": ("transform_param", "mean_file")},
    "cropsize": {"*": ("transform_param", "crop_size")},
    "mirror": {"*": ("transform_param", "mirror")},
}
# Copied onto the V1 layer itself rather than into a *_param.
_V0_LAYER_FIELDS = ("name", "type", "blobs", "blobs_lr", "weight_decay")

# The V1 data layers whose *_param once held the transformation (Caffe's
# UpgradeNetDataTransformation moves it into transform_param).
_DATA_PARAMS = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                "WINDOW_DATA": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def net_needs_upgrade(net):
    """Which legacy formats `net` uses, in the order upgrade_net handles them: a list of
    "V0", "V1", "input" (empty when the net is current)."""
    found = []
    if any(v1.HasField("layer") for v1 in net.layers):
        found.append("V0")
    if net.layers:
        found.append("V1")
    if net.input:
        found.append("input")
    return found


def upgrade_net(net, filename=None):
    """Bring a NetParameter to the current format in place (see the module docstring): V0
    layers become V1, V1 `layers` become `layer`, and the deprecated `input` / `input_shape` /
    `input_dim` fields become an Input layer. Errors name the file, the line and the layer."""
    if net.layers:
        if net.layer:
            raise ParseError("both 'layer' and legacy 'layers' fields are used; use only 'layer'", file=filename)
        if any(v1.HasField("layer") for v1 in net.layers):
            _upgrade_v0_net(net, filename)
        for v1 in net.layers:
            net.layer.add().CopyFrom(_upgrade_v1_layer(v1, filename))
        del net.layers[:]
    if net.input:
        _upgrade_inputs(net, filename)
    return net


def _error(message, filename, layer):
    """A ParseError naming the file, the line of the layer's name in it (text files) and the layer."""
    line = None
    if filename and layer:
        from ..errors import find_layer_line

        line = find_layer_line(filename, layer)
    return ParseError(message, file=filename, line=line, layer=layer or None)


def _upgrade_v0_net(net, filename):
    """V0 layers (a V1 `layers` entry holding a V0LayerParameter `layer`) to V1 layers, in place."""
    for v1 in net.layers:
        if not v1.HasField("layer"):
            raise _error("this layer is in the V1 format while others are in the V0 format "
                         "(layers { layer { ... } }); a net uses one format", filename, v1.name)
    kept = _fold_padding_layers(net, filename)
    upgraded = [_upgrade_v0_layer(v1, filename) for v1 in kept]
    del net.layers[:]
    net.layers.extend(upgraded)


def _fold_padding_layers(net, filename):
    """The V0 layers without their "padding" layers: a padding layer's `pad` moves into the conv
    or pool layer that reads its top, which reads the padding layer's bottom instead
    (Caffe's UpgradeV0PaddingLayers)."""
    producer = {name: None for name in net.input}  # blob -> the V0 layer that wrote it last
    kept = []
    for v1 in net.layers:
        v0 = v1.layer
        out = pb.V1LayerParameter()
        out.CopyFrom(v1)
        for j, blob in enumerate(v1.bottom):
            if blob not in producer:
                raise _error(f"bottom '{blob}' is not the top of an earlier layer nor a net input",
                             filename, v0.name)
            source = producer[blob]
            if source is None or source.layer.type != "padding":
                continue
            if v0.type not in ("conv", "pool"):
                raise _error(f"reads the top of padding layer '{source.layer.name}', but only conv and "
                             f"pool layers can take their padding from one (this is '{v0.type}')",
                             filename, v0.name)
            if len(v1.bottom) != 1 or len(source.bottom) != 1 or len(source.top) != 1:
                raise _error(f"padding layer '{source.layer.name}' and the '{v0.type}' layer reading it "
                             "must each have one bottom and one top", filename, v0.name)
            out.layer.pad = source.layer.pad
            out.bottom[j] = source.bottom[0]
        if v0.type != "padding":
            kept.append(out)
        for blob in v1.top:
            producer[blob] = v1
    return kept


def _upgrade_v0_layer(v1, filename):
    v0 = v1.layer
    if v0.type not in _V0_TYPES:
        raise _error(f"unknown V0 layer type '{v0.type}'; V0 types: {', '.join(sorted(_V0_TYPES))}",
                     filename, v0.name)
    out = pb.V1LayerParameter(name=v0.name, type=pb.V1LayerParameter.LayerType.Value(_V0_TYPES[v0.type]))
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for field, value in v0.ListFields():
        if field.name in _V0_LAYER_FIELDS:
            continue
        targets = _V0_FIELDS.get(field.name, {})
        target = targets.get(v0.type) or targets.get("*")
        if target is None:
            # Caffe logs this and drops the field; a dropped setting changes the net silently.
            where = ", ".join(f"'{t}'" for t in targets) or "no type (it has no counterpart today)"
            raise _error(f"V0 field '{field.name}' does not apply to a '{v0.type}' layer (it belongs "
                         f"to {where}); remove it", filename, v0.name)
        param_name, name = target
        param = getattr(out, param_name)
        if name is None:
            param.CopyFrom(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(param, name).CopyFrom(value)
        elif param.DESCRIPTOR.fields_by_name[name].is_repeated:
            getattr(param, name).append(value)
        else:
            setattr(param, name, value)
    return out


def _upgrade_v1_layer(v1, filename):
    if v1.HasField("layer"):
        raise _error("holds a V0 layer (layers { layer { ... } }) next to V1 fields; a net uses one "
                     "format", filename, v1.name or v1.layer.name)
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
    data_param = _DATA_PARAMS.get(pb.V1LayerParameter.LayerType.Name(v1.type)) if v1.HasField("type") else None
    if data_param and layer.HasField(data_param):
        legacy = getattr(layer, data_param)
        for f in _TRANSFORM_FIELDS:
            if legacy.HasField(f):
                setattr(layer.transform_param, f, getattr(legacy, f))
                legacy.ClearField(f)
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
