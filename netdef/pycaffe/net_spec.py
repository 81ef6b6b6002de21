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
the attribute its first top is assigned to; unnamed tops get pycaffe's generated names, the
type and a count per type ("Convolution1", "ReLU2"). As in pycaffe: `ntop=0` returns the layer
function itself (assign it to the spec to name it), `in_place=True` writes the tops over the
bottoms, a bottom that is not a Top raises TypeError (NetSpecTypeError), and the module function
to_proto(*tops) writes every layer those tops need.
"""
from collections import OrderedDict

from google.protobuf import text_format

from ..core import netdef_pb2 as pb
from ..errors import NetdefError


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


class NetSpecTypeError(NetdefError, TypeError):
    """A layer function was given something other than a Top as a bottom (pycaffe: TypeError)."""


class Top:
    """One output of a layer function; pass it as the bottom of later layers."""

    def __init__(self, fn, n):
        self.fn, self.n = fn, n

    @property
    def index(self):
        return self.n

    def to_proto(self):
        return to_proto(self)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)

    def __repr__(self):
        return f"<Top {self.n} of {self.fn.type_name}>"


class Function:
    """One layer: its type, bottoms (Tops), parameters, and its `ntop` Tops."""

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        for i, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                what = ("a layer without tops (ntop=0)" if isinstance(inp, Function)
                        else type(inp).__name__)
                raise NetSpecTypeError(f"{type_name} input {i} is not a Top (type is {what}); pass "
                                       "the outputs of layer functions as bottoms, parameters as keywords")
        self.inputs = tuple(inputs)
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        if not isinstance(self.ntop, int) or self.ntop < 0:
            raise NetSpecTypeError(f"{type_name}: ntop must be a non-negative int, got {self.ntop!r}")
        self.in_place = self.params.pop("in_place", False)
        if self.in_place and len(self.inputs) < self.ntop:
            raise NetdefError(f"{type_name}: in_place needs a bottom for each of its {self.ntop} tops, "
                              f"got {len(self.inputs)}")
        self.tops = tuple(Top(self, i) for i in range(self.ntop))

    def _get_name(self, names, autonames):
        """The layer's name: its first top's, or (no tops) the name it was assigned to in a
        NetSpec, or an automatic one."""
        if self not in names and self.ntop > 0:
            names[self] = self._get_top_name(self.tops[0], names, autonames)
        elif self not in names:
            autonames[self.type_name] = autonames.get(self.type_name, 0) + 1
            names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def _get_top_name(self, top, names, autonames):
        # pycaffe's spelling: the type name and a count per type, "Convolution1", "ReLU2"
        if top not in names:
            autonames[top.fn.type_name] = autonames.get(top.fn.type_name, 0) + 1
            names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
        return names[top]

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottoms = []
        for inp in self.inputs:
            inp._to_proto(layers, names, autonames)
            bottoms.append(layers[inp.fn].top[inp.n])
        layer = pb.LayerParameter(type=self.type_name)
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(bottoms[: self.ntop])
        else:
            layer.top.extend(self._get_top_name(t, names, autonames) for t in self.tops)
        layer.name = self._get_name(names, autonames)
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


def _node(x):
    if isinstance(x, (Top, Function)):
        return x
    raise NetSpecTypeError(f"to_proto takes Tops (or layers without tops), got {type(x).__name__}")


def to_proto(*tops, name=None, names=None):
    """NetParameter of the layers the given tops (and layers without tops) depend on, each once,
    bottoms first (pycaffe's caffe.net_spec.to_proto)."""
    layers, autonames = OrderedDict(), {}
    names = dict(names or {})
    for t in tops:
        _node(t)._to_proto(layers, names, autonames)
    net = pb.NetParameter()
    if name:
        net.name = name
    net.layer.extend(layers.values())
    return net


class NetSpec:
    """Named tops, assigned as attributes (or items), in assignment order. A layer without tops
    (ntop=0, e.g. Silence) may be assigned too: it is then named after the attribute."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, key, value):
        self.__setattr__(key, value)

    def __getitem__(self, item):
        return self.tops[item]

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops)

    def vals(self):
        return list(self.tops.values())

    def update(self, name, value):
        self.__setattr__(name, value)

    def to_proto(self, name=None):
        for k, v in self.tops.items():
            if not isinstance(v, (Top, Function)):
                raise NetSpecTypeError(f"NetSpec.{k} is a {type(v).__name__}, not a Top; assign "
                                       "each top of a multi-top layer to its own name")
        names = {v: k for k, v in self.tops.items()}
        return to_proto(*self.tops.values(), name=name, names=names)

    def to_prototxt(self, name=None):
        return text_format.MessageToString(self.to_proto(name))


class _Layers:
    """L.<Type>(*bottoms, **params): one Top, a tuple of ntop Tops, or (ntop=0) the Function."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

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
