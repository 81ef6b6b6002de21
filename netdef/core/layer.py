"""The Layer contract, as in Caffe.

    setup(bottom, top)      read parameters, create the learnable blobs in self.blobs
    reshape(bottom, top)    check bottom shapes, give every top its shape
    forward(bottom, top)    top.data from bottom.data
    backward(top, propagate_down, bottom)
                            bottom.diff from top.diff (written, not added, for every bottom i
                            with propagate_down[i]); the gradients of self.blobs are *added* to
                            their diff, so that shared params and iter_size accumulate, and the
                            solver clears them between iterations.

A layer never asks which device it is on: it uses self.xp (numpy or cupy) for array
operations and self.kernels(family) for the kernels of kernels/<family>.cu.
User Python layers (type "Python") subclass this class, as pycaffe's caffe.Layer.

Everything the Net or the Solver reads from or calls on a layer is declared below with its
default, so that they call it directly: class attributes a layer type overrides (is_loss,
in_place_ok, the blob-count limits), attributes the Net sets (loss_weights,
param_propagate_down, need_backward, net_filename, epilogue), and the hooks below the four
contract methods (allow_backward, adapt_param, get_state / set_state, close, and those of the
Net's inference fusion: epilogue_dims, affine_dims, channel_map, relu_slope).
"""
import contextlib

import numpy as np

from . import netdef_pb2 as pb
from ..backend import get_backend
from .blob import Blob
from .precision import FP32
from ..errors import LayerSetupError, ShapeError

TRAIN, TEST = pb.TRAIN, pb.TEST
_NO_BLOCK = contextlib.nullcontext()


class Layer:
    #: Caffe's type name ("Convolution"), set by @register_layer; "Python" for user layers
    type = None
    #: Bottom/top count constraints (Caffe's ExactNum/MinNum/MaxNum{Bottom,Top}Blobs); None = any.
    exact_num_bottom = None
    min_bottom = None
    max_bottom = None
    exact_num_top = None
    min_top = None
    max_top = None
    #: Loss layers get loss_weight 1 on top[0] unless the prototxt says otherwise.
    is_loss = False
    #: May this layer compute top[i] in place of bottom[i] (top and bottom the same blob)?
    in_place_ok = False
    #: The prototxt the layer was read from, or None (set by create_layer; data layers resolve
    #: relative paths against its directory).
    net_filename = None
    #: Can backward run after a forward (Caffe's layer_need_backward)? The Net sets it from its
    #: analysis after setup: False for a layer no loss gradient reaches and that learns nothing,
    #: e.g. every layer of a TEST net without force_backward. A layer then keeps nothing that
    #: only backward reads (a copy of an input computed in place, an argmax mask). True outside
    #: a Net, where a caller may run backward at any time.
    need_backward = True
    #: The Net's inference fusion (netdef/core/fusion.py) sets it on a layer whose top the
    #: layers after it change by per-channel maps and a ReLU: a fusion.Epilogue with `affine`
    #: (those layers, in order: each has channel_map()), `slope` (the ReLU's negative slope, or
    #: None) and `target` (None when they compute in place on the top, else the Blob their
    #: result goes to while the top keeps the layer's own value). The layer's forward then
    #: applies them as it writes its top (layers/scale.py's channel_epilogue) and the Net skips
    #: them. None: the layer computes only itself.
    epilogue = None
    #: The format of the operands of the layer's products (precision.LayerPrecision; the Net sets
    #: it from its precision.Plan). Only the GEMM layers read it, through operand().
    precision = FP32

    @classmethod
    def from_layer_param(cls, layer_param, phase, backend, dtype, net_filename=None):
        """The instance create_layer returns for `layer_param` (a registered type may return
        an instance of another class: the Python layer returns the user's)."""
        return cls(layer_param, phase, backend, dtype)

    def __init__(self, layer_param=None, phase=TEST, backend=None, dtype=np.float32):
        if layer_param is None:
            layer_param = pb.LayerParameter()
        self.layer_param = layer_param
        self.phase = phase
        self.backend = backend or get_backend()
        self.xp = self.backend.xp
        self.dtype = np.dtype(dtype)
        self.blobs = []
        #: per learnable blob: whether it gets a gradient (lr_mult != 0, set by the Net)
        self.param_propagate_down = []
        #: per top: its weight in the net's loss (set by the Net: loss_weight, or 1 on top[0]
        #: of an is_loss layer; empty until the layer is in a Net)
        self.loss_weights = []

    # ---- helpers for layer implementations ---------------------------------------------
    @property
    def name(self):
        return self.layer_param.name

    def kernels(self, family):
        return self.backend.kernels(family)

    #: Tests set a fixed row tile to compare tilings (None: the backend's choice).
    tile = None

    def row_tile(self, width, rows):
        """The `tile` argument of the kernels that take one (see Backend.row_tile)."""
        return self.tile if self.tile is not None else self.backend.row_tile(width, rows)

    def row_launch(self, count, width):
        """(iterations, tile) of a kernel taking `tile` elements per iteration along rows of
        `width` (count // width rows)."""
        width = max(1, width)
        tile = self.row_tile(width, count // width)
        return count // width * -(-width // tile), tile

    def plane_launch(self, planes, height, width):
        """(iterations, tile, rows) of a kernel taking `rows` rows of `tile` elements of
        `planes` planes height x width per iteration: whole planes where the backend takes
        rows of that length and there are enough planes (the CPU: one call into a vectorized
        row loop per plane, not per row), else rows = 1 and row_tile's segments."""
        area = height * width
        if self.tile is None and area > 0 and self.backend.row_tile(area, planes) >= area:
            return planes, width, height
        iters, tile = self.row_launch(planes * height * width, width)
        return iters, tile, 1

    def operand(self, array, direction, slot):
        """`array` as this layer's products take it in `direction` ('forward' / 'backward'):
        itself in float32, else a copy rounded to the layer's reduced format (bf16 / fp16, see
        netdef/core/precision.py) in the backend's workspace `slot`, shaped like `array`. The
        copy lives until the next layer asks for that slot: take it, use it, let it go."""
        fmt = self.precision.operands(direction)
        if fmt is None or array.size == 0:
            return array
        out = self.backend.workspace(self.dtype, array.size, "operand_" + slot).reshape(array.shape)
        iters, tile = self.row_launch(array.size, array.size)
        getattr(self.kernels("precision"), "round_" + fmt)(iters, array, out, array.size, tile)
        return out

    def product_operand(self, array, direction, slot):
        """Layer.operand for an array that only products take (inside Layer.products): itself
        where the backend's products round their operands (Backend.rounds_operands), which
        spares a pass over it (FCN-8s's fc6 weights: 103 M floats each forward)."""
        fmt = self.precision.operands(direction)
        if fmt is not None and self.backend.rounds_operands(fmt):
            return array
        return self.operand(array, direction, slot)

    def products(self, direction):
        """The block in which the layer's products run for `direction`: the backend told that
        their operands are the rounded ones (Backend.operands), or nothing in float32."""
        fmt = self.precision.operands(direction)
        return self.backend.operands(fmt) if fmt is not None else _NO_BLOCK

    def make_blob(self, shape, name=None):
        return Blob(shape, dtype=self.dtype, backend=self.backend, name=name or self.name)

    def error(self, message, cls=LayerSetupError):
        return cls(f"{self.type or type(self).__name__}: {message}", layer=self.name)

    def shape_error(self, message):
        return self.error(message, ShapeError)

    def param_needs_grad(self, i):
        return i < len(self.param_propagate_down) and self.param_propagate_down[i]

    def check_blob_counts(self, bottom, top):
        def check(kind, n, exact, lo, hi):
            if exact is not None and n != exact:
                raise self.error(f"takes exactly {exact} {kind} blob(s), got {n}")
            if lo is not None and n < lo:
                raise self.error(f"takes at least {lo} {kind} blob(s), got {n}")
            if hi is not None and n > hi:
                raise self.error(f"takes at most {hi} {kind} blob(s), got {n}")

        check("bottom", len(bottom), self.exact_num_bottom, self.min_bottom, self.max_bottom)
        check("top", len(top), self.exact_num_top, self.min_top, self.max_top)

    # ---- the contract -------------------------------------------------------------------
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__}.reshape")

    def forward(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, top, propagate_down, bottom):
        pass

    def adapt_param(self, index, values):
        """Offered a stored value (numpy) for self.blobs[index] whose shape differs from the
        blob's, return it converted to the blob's layout, or None to refuse (the default)."""
        return None

    # ---- the inference fusion's questions (netdef/core/fusion.py) --------------------------
    def epilogue_dims(self, bottom, top):
        """(outer, D, inner) of top[0] when forward can finish it with per-channel maps and a
        ReLU (honouring self.epilogue), D the channels; () when it can take a ReLU only (no
        per-channel map matches it); None (the default) when it cannot."""
        return None

    def affine_dims(self, bottom, top):
        """(outer, D, inner) when forward is y = x * s[d] + b[d] per channel d of the bottom
        seen as (outer, D, inner), with (s, b) = channel_map(); None (the default) otherwise."""
        return None

    def channel_map(self):
        """(s, b) of the per-channel map affine_dims() announced (arrays of D values, or None
        for a scale of 1 / a bias of 0), from the layer's current params."""
        raise NotImplementedError

    def relu_slope(self):
        """The negative slope when forward is ReLU's y = x > 0 ? x : slope x, else None."""
        return None

    def allow_backward(self, bottom_index):
        """Can backward reach bottom[bottom_index]? (Caffe's AllowForceBackward; False for
        labels.)"""
        return True

    def get_state(self):
        """The layer's position in its input, JSON-able, for the solver's snapshots; None (the
        default) when it has none to resume (every layer that is not a reader)."""
        return None

    def set_state(self, state):
        """Go on from a state get_state() returned (the default has none: nothing to do)."""

    def close(self):
        """Release what the layer holds besides its blobs (a reader's prefetch thread); it may
        not run afterwards. The default holds nothing. Net.close() calls it on every layer."""
