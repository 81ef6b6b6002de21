"""NetSpec: write nets in Python, in the style of pycaffe's caffe.NetSpec.

    from netdef.net_spec import NetSpec, L, P
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 32, 32]))
    n.conv = L.Convolution(n.data, num_output=8, kernel_size=3, weight_filler=dict(type='msra'))
    n.relu = L.ReLU(n.conv, in_place=True)
    n.pool = L.Pooling(n.relu, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    text = str(n.to_proto())

Keyword arguments that are LayerParameter fields (param, loss_weight, include, propagate_down,
...) or end in `_param` go on the layer; the others go into the layer type's own parameter
message (ConvolutionParameter for Convolution and Deconvolution, ...). A layer is named after
the attribute its first top is assigned to; unnamed tops get generated names.
"""
from collections import OrderedDict

from google.protobuf import text_format

from . import netdef_pb2 as pb
from .errors import NetdefError


def _param_field_by_type():
    out = {}
    for f in pb.LayerParameter.DESCRIPTOR.fields:
        if f.name.endswith("_param") and f.message_type is not None:
            out[f.message_type.name[: -len("Parameter")]] = f.name
    out["Deconvolution"] = "convolution_param"
    return out


_PARAM_FIELD = _param_field_by_type()


def _assign(msg, name, value):
    field = msg.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise NetdefError(f"{msg.DESCRIPTOR.name} has no field '{name}'")
    repeated = field.is_repeated
    if field.message_type is not None:
        values = value if isinstance(value, (list, tuple)) else [value]
        if not repeated and len(values) != 1:
            raise NetdefError(f"{msg.DESCRIPTOR.name}.{name} takes one message")
        for v in values:
            target = getattr(msg, name).add() if repeated else getattr(msg, name)
            if isinstance(v, dict):
                for k, x in v.items():
                    _assign(target, k, x)
            else:
                target.CopyFrom(v)
    elif repeated:
        getattr(msg, name).extend(value if isinstance(value, (list, tuple)) else [value])
    else:
        setattr(msg, name, value)


class Top:
    """One output of a layer function; pass it as the bottom of later layers."""

    def __init__(self, fn, index):
        self.fn, self.index = fn, index

    def to_proto(self):
        return to_proto(self)


class Function:
    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        self.tops = tuple(Top(self, i) for i in range(self.ntop))

    def _top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] = autonames.get(top.fn.type_name, 0) + 1
            names[top] = f"{top.fn.type_name.lower()}{autonames[top.fn.type_name]}"
        return names[top]

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottoms = []
        for inp in self.inputs:
            inp.fn._to_proto(layers, names, autonames)
            bottoms.append(layers[inp.fn].top[inp.index])
        layer = pb.LayerParameter(type=self.type_name)
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(bottoms)
        else:
            layer.top.extend(self._top_name(t, names, autonames) for t in self.tops)
        layer.name = self._top_name(self.tops[0], names, autonames) if self.tops else \
            f"{self.type_name.lower()}_{len(layers)}"
        for k, v in self.params.items():
            if k.endswith("_param") or k in pb.LayerParameter.DESCRIPTOR.fields_by_name:
                _assign(layer, k, v)
            else:
                field = _PARAM_FIELD.get(self.type_name)
                if field is None:
                    raise NetdefError(f"{self.type_name}: no parameter message for '{k}'; "
                                      f"pass it inside an explicit *_param dict")
                _assign(getattr(layer, field), k, v)
        layers[self] = layer


def to_proto(*tops, name=None, names=None):
    layers, autonames = OrderedDict(), {}
    names = dict(names or {})
    for t in tops:
        t.fn._to_proto(layers, names, autonames)
    net = pb.NetParameter()
    if name:
        net.name = name
    net.layer.extend(layers.values())
    return net


class NetSpec:
    """Named tops, assigned as attributes, in assignment order."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    __setitem__ = __setattr__
    __getitem__ = __getattr__

    def to_proto(self, name=None):
        names = {v: k for k, v in self.tops.items()}
        return to_proto(*self.tops.values(), name=name, names=names)

    def to_prototxt(self, name=None):
        return text_format.MessageToString(self.to_proto(name))


class _Layers:
    def __getattr__(self, type_name):
        def layer_fn(*args, **kwargs):
            fn = Function(type_name, args, kwargs)
            if fn.ntop == 0:
                return fn
            return fn.tops[0] if fn.ntop == 1 else fn.tops

        return layer_fn


class _Parameters:
    """P.Pooling.MAX, P.Eltwise.SUM, P.Loss.VALID ...: the enum values of each *Parameter."""

    def __getattr__(self, type_name):
        msg = getattr(pb, type_name + "Parameter", None)
        if msg is None:
            raise AttributeError(type_name)
        return msg


L = _Layers()
P = _Parameters()
