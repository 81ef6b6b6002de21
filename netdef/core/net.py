"""Net: builds the layer graph of a NetParameter and runs it forward and backward.

Building follows Caffe: the passes of netdef.graph (upgrade, NetState filtering, Split
insertion) prepare the NetParameter, then for each layer in file order the Net creates its top
blobs (a top named like one of the layer's bottoms is computed in place), sets it up and
reshapes it. As in Caffe, whose Layer::Forward reshapes every layer first, a blob that changes
shape (the user's net.blobs['data'].reshape(...), a data layer's batch of another size) reshapes
the layers after it at the next forward or backward; the blobs tick the net's ShapeClock, so
when nothing changed that costs one comparison per call. Which layers need backward is decided from the learnable params (lr_mult != 0),
the bottoms' needs, propagate_down and whether the layer contributes to a loss. The diff
memory shared during training (share_diffs) is planned by netdef.memory.
"""
import contextlib
import logging
import os
from collections import OrderedDict

import numpy as np

from . import fusion, graph
from .precision import plan as precision_plan
from . import netdef_pb2 as pb
from . import proto
from ..backend import get_backend
from .blob import Blob, ShapeClock
from ..errors import LayerSetupError, NetdefError, ShapeError
from ..layers import create_layer
from .memory import DiffPool, diff_lifetimes

log = logging.getLogger("netdef")

TRAIN, TEST = pb.TRAIN, pb.TEST


class Net:
    """pycaffe-compatible network.

    Net(network, phase, level=0, stages=None, weights=None)   network: path, prototxt text or
    NetParameter; also the legacy form Net(network, weights_file, phase).
    fuse (default on; NETDEF_FUSE=0 turns the default off): fold BatchNorm / Scale / Bias and
    ReLU chains into the layer before them where no backward can run (netdef/core/fusion.py);
    the blobs and params the user sees are the same either way.
    forward_only: the caller never runs backward (netdef test, extract-features): no layer
    keeps anything for a backward pass, even under a loss, and backward() raises.
    precision ('fp32' / 'bf16' / 'fp16'; default netdef.set_precision's, else the file's NVCaffe
    fields): the operands of the GEMM layers (netdef/core/precision.py; net.precision the plan)."""

    def __init__(self, network, phase=None, *legacy, level=0, stages=None, weights=None,
                 dtype=np.float32, backend=None, fuse=None, forward_only=False, precision=None):
        if isinstance(phase, (str, os.PathLike)) and legacy:  # Net(file, weights, phase)
            weights, phase = phase, legacy[0]
        elif legacy:
            raise TypeError("Net(network, phase, level=0, stages=None, weights=None)")
        if phase is None:
            phase = TEST
        if phase not in (TRAIN, TEST):
            raise NetdefError(f"phase must be netdef.TRAIN (0) or netdef.TEST (1), got {phase!r}")
        self.backend = backend or get_backend()
        self.dtype = np.dtype(dtype)
        if isinstance(network, pb.NetParameter):
            param, self.filename = pb.NetParameter(), None
            param.CopyFrom(network)
            graph.upgrade_net(param)
        else:
            param, self.filename = proto.read_net_text(network)
        state = pb.NetState()
        state.CopyFrom(param.state)
        state.phase = phase
        state.level = level
        state.stage.extend(stages or [])
        self.phase = phase
        #: the NetParameter the net is built from: filtered for its state, Splits inserted
        self.param = graph.insert_splits(graph.filter_net(param, state, self.filename))
        self.name = self.param.name
        #: which layers compute in which precision (netdef/core/precision.py), and the loss scale
        self.precision = precision_plan(self.param, self.dtype, override=precision, filename=self.filename)
        #: the weighted loss of the last forward() (None before the first)
        self.last_loss = None
        self._share_diffs = False
        self.forward_only = bool(forward_only)
        self._diff_pool = DiffPool(self.backend, self.dtype)
        self._build()
        #: the chains the inference fusion runs as one layer (fusion.Epilogue, in layer order)
        self.fused = (fusion.plan(self.layers, self._bottom_ids, self._top_ids)
                      if fusion.fusion_enabled(fuse) else [])
        self._fusion_ranges = {}
        if weights is not None:
            self.copy_from(weights)

    # ---- building -----------------------------------------------------------------------
    def _error(self, message, layer=None, cls=LayerSetupError):
        return cls(message, file=self.filename, layer=layer)

    def _build(self):
        self.layers = []
        self._layer_names = []
        self.blobs = OrderedDict()
        self.bottom_names = OrderedDict()
        self.top_names = OrderedDict()
        self._bottom_ids = []  # per layer: list of Blob
        self._top_ids = []
        # Reshape propagation: every blob of the net ticks this clock when its shape changes;
        # _seen_ticks is its value when all layers were last consistent with their blobs, and
        # _shapes[li] the (bottom shapes, top shapes) of layer li at its last reshape.
        self._clock = ShapeClock()
        self._seen_ticks = -1
        self._shapes = []
        # Loss weights are recorded once, per layer and top, in layer.loss_weights; these are
        # views of that record made while building:
        #: pycaffe's: every blob name's loss weight (0 for blobs that are no loss; as in Caffe,
        #: a layer computing in place on a loss top writes its own 0 over the name's entry)
        self.blob_loss_weights = OrderedDict()
        self._layer_losses = []  # per layer: (top Blob, weight) of its loss-weighted tops
        self._loss_tops = []  # all of them, in layer order: the diffs backward starts from
        self.inputs = []
        self.learnable_params = []
        self.params_lr = []
        self.params_weight_decay = []
        self._param_owner = {}  # ParamSpec name -> (Blob, layer name, index)
        self.params = OrderedDict()
        available = OrderedDict()  # blobs produced and not yet consumed
        blob_need_backward = {}
        bottom_need_backward = []
        self._layer_need_backward = []
        seen_names = set()
        for lp in self.param.layer:
            lname = lp.name
            if lname in seen_names:
                raise self._error(f"duplicate layer name '{lname}'", lname)
            seen_names.add(lname)
            try:
                self._add_layer(lp, available, blob_need_backward, bottom_need_backward)
            except NetdefError as e:
                raise self._annotate(e, lname) from None
        self._analyze_backward(bottom_need_backward)
        self.outputs = list(available)
        self.layer_dict = OrderedDict(zip(self._layer_names, self.layers))
        #: pycaffe's: the blob names in the order they were created
        self._blob_names = list(self.blobs)
        self._loss_tops = [pair for pairs in self._layer_losses for pair in pairs]
        self._shapes = [self._current_shapes(li) for li in range(len(self.layers))]
        self._seen_ticks = self._clock.ticks

    def _annotate(self, e, lname):
        """Complete an error with the file, the layer and the layer's line in the prototxt."""
        if e.layer is None:
            e.layer = lname
        if e.file is None and self.filename:
            e.file = self.filename
        if e.file == self.filename and e.line is None and self.filename and e.layer:
            e.line = proto.find_layer_line(self.filename, e.layer)
        e.args = (e._format(),)
        return e

    def _add_layer(self, lp, available, blob_need_backward, bottom_need_backward):
        lname = lp.name
        layer = create_layer(lp, self.phase, self.backend, self.dtype, net_filename=self.filename)
        layer.precision = self.precision.of(lp.name)
        bottoms = []
        for b in lp.bottom:
            if b not in self.blobs:
                raise self._error(f"bottom blob '{b}' is not produced by any earlier layer", lname)
            bottoms.append(self.blobs[b])
            available.pop(b, None)
        tops = []
        for t in lp.top:
            if t in self.blobs:
                if t in lp.bottom:
                    if not layer.in_place_ok:
                        raise self._error(f"{lp.type} cannot compute top '{t}' in place", lname)
                    tops.append(self.blobs[t])
                else:
                    raise self._error(f"top blob '{t}' is produced by more than one layer "
                                      "(only in-place layers may reuse a name)", lname)
            else:
                blob = Blob((), dtype=self.dtype, backend=self.backend, name=t)
                blob.clock = self._clock
                self.blobs[t] = blob
                tops.append(blob)
            available[t] = self.blobs[t]
        layer.check_blob_counts(bottoms, tops)
        self._setup_layer(layer, lp, bottoms, tops)
        if lp.type == "Input":
            self.inputs.extend(lp.top)
        self.layers.append(layer)
        self._layer_names.append(lname)
        self.bottom_names[lname] = list(lp.bottom)
        self.top_names[lname] = list(lp.top)
        self._bottom_ids.append(bottoms)
        self._top_ids.append(tops)
        # Losses: explicit loss_weight, or 1 on top[0] of a loss layer.
        weights = list(lp.loss_weight)
        if weights and len(weights) != len(tops):
            raise self._error(f"{len(weights)} loss_weight values for {len(tops)} tops", lname)
        if not weights and layer.is_loss:
            weights = [1.0] + [0.0] * (len(tops) - 1)
        layer.loss_weights = [float(w) for w in weights] or [0.0] * len(tops)
        for name, w in zip(lp.top, layer.loss_weights):
            self.blob_loss_weights[name] = w
        self._layer_losses.append([(b, w) for b, w in zip(tops, layer.loss_weights) if w != 0])
        # Backward needs (forward pass of Caffe's analysis).
        need = any(blob_need_backward.get(b, False) for b in lp.bottom)
        need = need or any(layer.param_propagate_down)
        pd = list(lp.propagate_down)
        if pd and len(pd) != len(bottoms):
            raise self._error(f"{len(pd)} propagate_down values for {len(bottoms)} bottoms", lname)
        bnb = [blob_need_backward.get(b, False) and (not pd or pd[i]) and layer.allow_backward(i)
               for i, b in enumerate(lp.bottom)]
        bottom_need_backward.append(bnb)
        for t in lp.top:
            blob_need_backward[t] = need
        self._layer_need_backward.append(need)

    def _analyze_backward(self, bottom_need_backward):
        # Backward pass of the analysis: layers not under a loss need no backward.
        under_loss, skip_backp = set(), set()
        for li in reversed(range(len(self.layers))):
            lp = self.param.layer[li]
            layer = self.layers[li]
            contributes, skip = False, True
            for ti, t in enumerate(lp.top):
                if layer.loss_weights[ti] != 0 or t in under_loss:
                    contributes = True
                if t not in skip_backp:
                    skip = False
                if contributes and not skip:
                    break
            if self._layer_need_backward[li] and skip:
                self._layer_need_backward[li] = False
                bottom_need_backward[li] = [False] * len(lp.bottom)
            if not contributes:
                self._layer_need_backward[li] = False
            for bi, b in enumerate(lp.bottom):
                if contributes:
                    under_loss.add(b)
                else:
                    bottom_need_backward[li][bi] = False
                if not bottom_need_backward[li][bi]:
                    skip_backp.add(b)
        if self.forward_only:
            self._layer_need_backward = [False] * len(self.layers)
            bottom_need_backward = [[False] * len(b) for b in bottom_need_backward]
        elif self.param.force_backward:
            for li, layer in enumerate(self.layers):
                self._layer_need_backward[li] = True
                bottom_need_backward[li] = [bnb or layer.allow_backward(i)
                                            for i, bnb in enumerate(bottom_need_backward[li])]
        self._bottom_need_backward = bottom_need_backward
        for layer, need in zip(self.layers, self._layer_need_backward):
            layer.need_backward = need

    def _setup_layer(self, layer, lp, bottoms, tops):
        try:
            layer.setup(bottoms, tops)
            self._attach_params(layer, lp)
            layer.reshape(bottoms, tops)
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError, MemoryError) as e:
            if lp.type == "Python" and not type(layer).__module__.startswith("netdef."):
                raise  # the user's own layer code: its traceback is what they need
            shapes = ", ".join(str(b.shape) for b in bottoms)
            raise self._error(f"{lp.type} failed to set up with bottom shapes [{shapes}]: "
                              f"{type(e).__name__}: {e}", lp.name, ShapeError) from e

    def _attach_params(self, layer, lp):
        n = len(layer.blobs)
        if len(lp.param) > n:
            raise self._error(f"{len(lp.param)} param specs given but the layer has {n} learnable blobs",
                              lp.name)
        if lp.blobs and len(lp.blobs) != n:
            raise self._error(f"prototxt carries {len(lp.blobs)} blobs, the layer has {n}", lp.name)
        layer.param_propagate_down = []
        own = []
        for i in range(n):
            spec = lp.param[i] if i < len(lp.param) else pb.ParamSpec()
            blob = layer.blobs[i]
            blob.name = f"{lp.name}[{i}]"
            if i < len(lp.blobs):
                self._load_blob(layer, blob, lp.blobs[i], i)
            layer.param_propagate_down.append(spec.lr_mult != 0)
            if spec.name and spec.name in self._param_owner:
                owner, oname, oi = self._param_owner[spec.name]
                strict = not spec.HasField("share_mode") or spec.share_mode == pb.ParamSpec.STRICT
                if (strict and owner.shape != blob.shape) or owner.count != blob.count:
                    raise self._error(
                        f"cannot share param '{spec.name}' of shape {blob.shape} with layer "
                        f"'{oname}' param {oi} of shape {owner.shape}", lp.name, ShapeError)
                layer.blobs[i] = owner
                continue
            if spec.name:
                self._param_owner[spec.name] = (blob, lp.name, i)
            self.learnable_params.append(blob)
            self.params_lr.append(spec.lr_mult)
            self.params_weight_decay.append(spec.decay_mult)
            own.append(blob)
        if n:
            self.params[lp.name] = layer.blobs

    # ---- running ------------------------------------------------------------------------
    def _index(self, name, default):
        if name is None:
            return default
        if name not in self.layer_dict:
            raise NetdefError(f"no layer named '{name}' in the net")
        return self._layer_names.index(name)

    def reshape(self):
        """Reshape every layer to its bottoms' current shapes (pycaffe's net.reshape()).
        forward() and backward() do it themselves, for the layers whose blobs changed shape."""
        for li in range(len(self.layers)):
            self._reshape_layer(li)
        self._seen_ticks = self._clock.ticks

    def _current_shapes(self, li):
        return (tuple(b._shape for b in self._bottom_ids[li]),
                tuple(t._shape for t in self._top_ids[li]))

    def _reshape_layer(self, li):
        layer = self.layers[li]
        try:
            layer.reshape(self._bottom_ids[li], self._top_ids[li])
        except NetdefError as e:
            raise self._annotate(e, layer.name) from None
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError, MemoryError) as e:
            if layer.type == "Python" and not type(layer).__module__.startswith("netdef."):
                raise
            shapes = ", ".join(str(b.shape) for b in self._bottom_ids[li])
            raise self._error(f"{layer.type} cannot reshape to bottom shapes [{shapes}]: "
                              f"{type(e).__name__}: {e}", layer.name, ShapeError) from e
        self._shapes[li] = self._current_shapes(li)

    def _propagate(self, first, last):
        """Reshape the layers first..last whose bottoms or tops changed shape since their last
        reshape, in order (so a change travels down the net), as Caffe's Layer::Forward
        reshapes every layer before its forward. Layers without bottoms are left alone: their
        tops are the user's or their own to shape (Input, data layers: Caffe's Reshape of
        those does nothing), and a layer whose forward reshapes its tops did so itself."""
        for li in range(first, last + 1):
            if self._bottom_ids[li] and self._current_shapes(li) != self._shapes[li]:
                self._reshape_layer(li)

    def _sync_shapes(self, first, last):
        """Propagate any shape change into first..last; the whole net counts as consistent
        again only once all of it was checked."""
        self._propagate(first, last)
        if first == 0 and last == len(self.layers) - 1:
            self._seen_ticks = self._clock.ticks

    def _fusion_for(self, first, last):
        key = (first, last)
        if key not in self._fusion_ranges:
            if len(self._fusion_ranges) > 64:
                self._fusion_ranges.clear()
            self._fusion_ranges[key] = fusion.active(self.fused, first, last)
        return self._fusion_ranges[key]

    def forward_range(self, start=0, end=None, as_part_of=None):
        """Run layers start..end (indices, inclusive); returns the weighted loss. Layers whose
        bottoms changed shape (an input reshaped by the user, a batch of another size from a
        data layer) are reshaped first; when nothing changed this costs one comparison.
        A fused chain (self.fused) runs as one layer when the range holds all of it, or, given
        as_part_of=(first, last), when that range does (netdef time runs one layer at a time
        as part of the whole net: a layer folded into the one before it then does nothing)."""
        end = len(self.layers) - 1 if end is None else end
        layers, bottoms, tops, losses = self.layers, self._bottom_ids, self._top_ids, self._layer_losses
        clock = self._clock
        if clock.ticks != self._seen_ticks:
            self._sync_shapes(start, end)
        skip, heads = self._fusion_for(*(as_part_of or (start, end)))
        loss = 0.0
        for li in range(start, end + 1):
            if li in skip:
                continue
            layer = layers[li]
            if li in heads:
                layer.epilogue = heads[li]
            ticks = clock.ticks
            layer.forward(bottoms[li], tops[li])
            if clock.ticks != ticks:  # the layer gave its tops new shapes (a data layer's batch)
                self._shapes[li] = self._current_shapes(li)
                self._propagate(li + 1, end)
                if start == 0 and end == len(layers) - 1 and ticks == self._seen_ticks:
                    self._seen_ticks = clock.ticks
            for blob, w in losses[li]:
                loss += w * float(blob.data.sum())
        return loss

    def backward_range(self, start=None, end=0):
        if self.forward_only:
            raise NetdefError(f"net '{self.name}' was built with forward_only=True: no layer kept "
                              "what backward needs; build it without forward_only to run backward",
                              file=self.filename)
        start = len(self.layers) - 1 if start is None else start
        if self._clock.ticks != self._seen_ticks:
            self._sync_shapes(end, start)
        layers, bottoms, tops = self.layers, self._bottom_ids, self._top_ids
        need, propagate = self._layer_need_backward, self._bottom_need_backward
        for li in range(start, end - 1, -1):
            if need[li]:
                layers[li].backward(tops[li], propagate[li], bottoms[li])

    def _forward(self, start, end):
        """pycaffe's net._forward(start, end) (Caffe's ForwardFromTo): layer indices,
        inclusive; returns the loss."""
        self.last_loss = self.forward_range(int(start), int(end))
        return self.last_loss

    def _backward(self, start, end):
        """pycaffe's net._backward(start, end) (Caffe's BackwardFromTo): from layer index
        `start` down to `end`, inclusive. The loss tops start from their loss weights, as
        backward() does (Caffe sets those diffs once at setup and nothing overwrites them)."""
        self.set_loss_diffs()
        self.backward_range(int(start), int(end))

    def _fill(self, arrays, allowed, kind, field):
        """Copy keyword arrays into the data (inputs) or diff (outputs) of named blobs."""
        for name, value in arrays.items():
            if name not in allowed:
                raise NetdefError(f"'{name}' is not an {kind} of the net ({kind}s: {allowed})")
            blob = self.blobs[name]
            if tuple(np.shape(value)) != blob.shape:
                raise ShapeError(f"{field} for {kind} '{name}' has shape {tuple(np.shape(value))}, the net "
                                 f"expects {blob.shape}; reshape the blob first (net.blobs['{name}'].reshape(...))",
                                 blob=name)
            getattr(blob, field)[...] = self.backend.asarray(value, dtype=self.dtype)

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """pycaffe's forward: run layers start..end (names; default all), inputs given as
        keyword arrays; returns {name: data} for the tops of `end` (the net's outputs when end
        is None) and the extra blob names in `blobs`. The arrays are views of the blobs."""
        self._fill(kwargs, self.inputs, "input", "data")
        last = self._index(end, len(self.layers) - 1)
        self.last_loss = self.forward_range(self._index(start, 0), last)
        names = self.top_names[end] if end is not None else self.outputs
        return {n: self.blobs[n].data for n in self._result_names(names, blobs)}

    def _result_names(self, names, extra):
        for n in extra or []:
            if n not in self.blobs:
                raise NetdefError(f"no blob named '{n}' in the net")
        return list(OrderedDict.fromkeys(list(names) + list(extra or [])))

    #: What the loss tops' diffs are multiplied by (the solver's loss scaling,
    #: netdef/solver/loss_scale.py); every gradient of a backward is then that many times larger.
    loss_scale = 1.0

    def set_loss_diffs(self):
        """Seed backward: each loss top's diff = its loss weight (what backward() starts from),
        times loss_scale."""
        for blob, w in self._loss_tops:
            blob.diff[...] = w * self.loss_scale

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """pycaffe's backward: run the backward of layers start..end (names; default from the
        last layer to the first), output diffs given as keyword arrays (the loss tops start
        from their loss weights); returns {name: diff} for the bottoms of `end` (the net's
        inputs when end is None) and the extra blob names in `diffs`."""
        self.set_loss_diffs()
        self._fill(kwargs, self.outputs, "output", "diff")
        self.backward_range(self._index(start, len(self.layers) - 1), self._index(end, 0))
        names = self.bottom_names[end] if end is not None else self.inputs
        return {n: self.blobs[n].diff for n in self._result_names(names, diffs)}

    def _batches(self, arrays, allowed, kind):
        """pycaffe's _batch: the keyword arrays cut into the net's batch size (of the blob of
        the first name), the last batch padded with zeros; yields (dict of batches, padding)."""
        for name in arrays:
            if name not in allowed:
                raise NetdefError(f"'{name}' is not an {kind} of the net ({kind}s: {allowed})")
        if not arrays:
            return
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise ShapeError(f"the {kind} arrays have different lengths: "
                             f"{ {n: len(a) for n, a in arrays.items()} }")
        total = sizes.pop()
        batch = self.blobs[next(iter(arrays))].num
        for i in range(0, total, batch):
            part = {}
            for name, a in arrays.items():
                chunk = np.asarray(a[i:i + batch])
                if len(chunk) < batch:
                    pad = np.zeros((batch - len(chunk),) + chunk.shape[1:], dtype=chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                part[name] = chunk
            yield part, max(0, i + batch - total)

    def forward_all(self, blobs=None, **kwargs):
        """pycaffe's forward_all: forward over arrays longer than a batch, batch by batch;
        returns {output (and `blobs`) name: numpy array of all the items}."""
        names = self._result_names(self.outputs, blobs)
        out = {n: [] for n in names}
        for part, pad in self._batches(kwargs, self.inputs, "input"):
            result = self.forward(blobs=blobs, **part)
            for n in names:
                values = np.array(self.backend.to_numpy(result[n]))
                out[n].extend(values[:len(values) - pad] if pad else values)
        if not kwargs:
            result = self.forward(blobs=blobs)
            return {n: self.backend.to_numpy(v).copy() for n, v in result.items()}
        return {n: np.asarray(v) for n, v in out.items()}

    def backward_all(self, diffs=None, **kwargs):
        """pycaffe's backward_all: backward over output diffs longer than a batch; returns
        {input (and `diffs`) name: numpy array of all the items}."""
        names = self._result_names(self.inputs, diffs)
        out = {n: [] for n in names}
        for part, pad in self._batches(kwargs, self.outputs, "output"):
            result = self.backward(diffs=diffs, **part)
            for n in names:
                values = np.array(self.backend.to_numpy(result[n]))
                out[n].extend(values[:len(values) - pad] if pad else values)
        if not kwargs:
            result = self.backward(diffs=diffs)
            return {n: self.backend.to_numpy(v).copy() for n, v in result.items()}
        return {n: np.asarray(v) for n, v in out.items()}

    def forward_backward(self):
        """One training pass: forward, then backward from the losses; returns the loss."""
        loss = self.forward_range()
        if self._share_diffs:
            self._diff_pool.plan(tuple(b.shape for b in self.blobs.values()), self._diff_lifetimes)
        self.set_loss_diffs()
        self.backward_range()
        return loss

    #: What after_backward accepts: the solver package's NCCL adds itself when it is defined, so
    #: that the Net, below the solver, never imports it.
    after_backward_types = ()

    def after_backward(self, callback):
        """pycaffe's net.after_backward(nccl), which Caffe's python/train.py calls when the
        solver's layer_wise_reduce is set (its default): Caffe then all-reduces each layer's
        gradients as its backward ends. netdef's data-parallel solver all-reduces all of them in
        one collective after the backward pass (netdef/solver/distributed.py), so a netdef.NCCL
        is accepted here and needs nothing more; other per-layer callbacks are not supported."""
        if not isinstance(callback, self.after_backward_types):
            raise NetdefError(f"after_backward takes a netdef.NCCL (Caffe's layer-wise reduce), not "
                              f"{type(callback).__name__}: per-layer backward callbacks are not supported")

    @property
    def share_diffs(self):
        """Let forward_backward() keep the diffs of the blobs between layers in a shared pool:
        a blob's diff lives only from the backward of the layer that writes it to that of the
        layer that reads it last, so blobs whose lives do not overlap can share memory (FCN-8s
        at 500x500: about half of its activation diffs). Off by default: pycaffe's
        net.backward() and Caffe leave every blob's diff readable afterwards. The Solver turns
        it on for its training net (solver.net.share_diffs = False gives every blob its own
        diff again, to inspect intermediate diffs). Net inputs, outputs, loss tops, params and
        any diff that no layer writes (it must read as zeros) always keep their own memory."""
        return self._share_diffs

    @share_diffs.setter
    def share_diffs(self, on):
        self._share_diffs = bool(on)
        if not on:
            self._diff_pool.release()

    def _diff_lifetimes(self):
        """{blob: (first, last) backward step that touches its diff} for the blobs that may share
        (netdef.memory.diff_lifetimes over this net's backward pass)."""
        keep = {id(self.blobs[n]) for n in list(self.inputs) + list(self.outputs)}
        keep |= {id(b) for b, _ in self._loss_tops}
        steps = [(self._top_ids[li], list(zip(self._bottom_ids[li], self._bottom_need_backward[li])))
                 for li in range(len(self.layers) - 1, -1, -1) if self._layer_need_backward[li]]
        return diff_lifetimes(steps, keep)

    def clear_param_diffs(self):
        for blob in self.learnable_params:
            self.backend.fill(blob.diff, 0)

    # ---- weights ------------------------------------------------------------------------
    def _load_blob(self, layer, blob, bp, index, source=None):
        where = f"layer '{layer.name}' param {index}: "
        shape, legacy = proto.proto_shape(bp, where)
        if shape == blob.shape or (legacy and proto.legacy_shape_matches(blob.shape, shape)):
            values = proto.proto_to_array(bp, self.dtype, where).reshape(blob.shape)
        else:
            # A layer may accept another layout of the same parameters (e.g. a published
            # caffemodel's dense bilinear Deconvolution weights for a grouped layer).
            values = None
            if blob.check_bytes(shape) >= 0:
                values = layer.adapt_param(index, proto.proto_to_array(bp, self.dtype, where))
            if values is None or tuple(values.shape) != blob.shape:
                raise ShapeError(f"param {index} has shape {blob.shape} in the net but {shape} in "
                                 f"{source or 'the prototxt'}", layer=layer.name, file=source)
        blob.data[...] = self.backend.asarray(values, dtype=self.dtype)

    def copy_from(self, weights):
        """Load params by layer name from a .caffemodel path (or NetParameter). Layers of the
        file that this net lacks are reported and ignored, as Caffe does; returns their names."""
        if isinstance(weights, pb.NetParameter):
            source, src = "<NetParameter>", weights
        elif os.fspath(weights).endswith((".h5", ".hdf5")):  # as Caffe's CopyTrainedLayersFrom
            return self.load_hdf5(weights)
        else:
            source = os.fspath(weights)
            src = proto.read_caffemodel(source)
        ignored = []
        for lp in src.layer:
            if lp.name not in self.layer_dict:
                if lp.blobs:
                    ignored.append(lp.name)
                    log.info("Ignoring source layer %s", lp.name)
                continue
            layer = self.layer_dict[lp.name]
            if not lp.blobs:
                continue
            if len(lp.blobs) != len(layer.blobs):
                raise ShapeError(f"{source} has {len(lp.blobs)} param blobs for this layer, "
                                 f"the net has {len(layer.blobs)}", layer=lp.name, file=source)
            for i, bp in enumerate(lp.blobs):
                self._load_blob(layer, layer.blobs[i], bp, i, source)
        return ignored

    def share_with(self, other):
        """Make this net's params show the params of `other`'s layers of the same name (Caffe's
        ShareTrainedLayersWith; a solver's test nets see its train net's weights this way, and
        FCN's score.seg_tests does net.share_with(solver.net)). Only the data is shared: each
        net keeps its own diffs. Layers of `other` that this net lacks are ignored (logged)."""
        if other.dtype != self.dtype or other.backend is not self.backend:
            raise NetdefError(f"cannot share params between nets of {self.dtype.name} on "
                              f"{self.backend.name} and {other.dtype.name} on {other.backend.name}")
        for name, src in other.layer_dict.items():
            layer = self.layer_dict.get(name)
            if layer is None:
                log.debug("Ignoring source layer %s", name)
                continue
            if len(src.blobs) != len(layer.blobs):
                raise NetdefError(f"cannot share params: this net has {len(layer.blobs)} param "
                                  f"blobs for the layer, the other net {len(src.blobs)}",
                                  layer=name, file=self.filename)
            for i, (mine, theirs) in enumerate(zip(layer.blobs, src.blobs)):
                if mine.shape != theirs.shape:
                    raise ShapeError(f"cannot share param {i}: shape {mine.shape} here, "
                                     f"{theirs.shape} in the other net", layer=name, file=self.filename)
                if mine is not theirs:
                    mine.share_data(theirs, release=True)

    # Caffe's HDF5 weights (Net::ToHDF5 / CopyTrainedLayersFromHDF5): a group "data" holding a
    # group per layer (every layer, in net order) with one dataset per param blob named by its
    # index ("0", "1", ...); with diffs, a group "diff" of the same layout. A param shared
    # through a ParamSpec name is written only by the layer that owns it.
    def save_hdf5(self, path, write_diff=False):
        """Write the params in Caffe's HDF5 layout (a .caffemodel.h5), as pycaffe's save_hdf5;
        write_diff: also their diffs (Caffe's ToHDF5(filename, true)). Needs h5py."""
        h5py = _h5py()
        path = os.fspath(path)
        owners = self._owned_param_ids()
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with h5py.File(tmp, "w") as f:
                groups = [f.create_group("data")] + ([f.create_group("diff")] if write_diff else [])
                for name, layer in self.layer_dict.items():
                    subs = [g.create_group(name) for g in groups]
                    for i, blob in enumerate(layer.blobs):
                        if id(blob) not in owners.get(name, ()):
                            continue
                        subs[0].create_dataset(str(i), data=blob.to_numpy())
                        if write_diff:
                            subs[1].create_dataset(str(i), data=blob.to_numpy(diff=True))
            os.replace(tmp, path)
        except OSError as e:
            with _suppress_os_error():
                os.remove(tmp)
            raise NetdefError(f"cannot write {path}: {e}") from None

    def _owned_param_ids(self):
        """{layer name: ids of the param blobs it owns} (not those it takes from another layer
        through a ParamSpec name)."""
        owned = {}
        for name, layer in self.layer_dict.items():
            specs = layer.layer_param.param
            owned[name] = {id(b) for i, b in enumerate(layer.blobs)
                           if not (i < len(specs) and specs[i].name
                                   and self._param_owner[specs[i].name][1] != name)}
        return owned

    def load_hdf5(self, path):
        """Load params by layer name from Caffe's HDF5 layout (pycaffe's load_hdf5; copy_from
        takes .h5 files too). Layers of the file that this net lacks are ignored (logged);
        returns their names. Needs h5py."""
        h5py = _h5py()
        path = os.fspath(path)
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise NetdefError(f"cannot read {path} as HDF5: {e}") from None
        ignored = []
        with f:
            if "data" not in f or not isinstance(f["data"], h5py.Group):
                raise NetdefError(f"{path} has no group 'data': not a Caffe HDF5 model "
                                  "(.caffemodel.h5)")
            for name, group in f["data"].items():
                if name not in self.layer_dict:
                    log.info("Ignoring source layer %s", name)
                    ignored.append(name)
                    continue
                layer = self.layer_dict[name]
                if not isinstance(group, h5py.Group) or len(group) > len(layer.blobs):
                    n = len(group) if isinstance(group, h5py.Group) else "not a group of"
                    raise ShapeError(f"{path} has {n} param blobs for this layer, the net has "
                                     f"{len(layer.blobs)}", layer=name, file=path)
                owned = self._owned_param_ids()[name]
                for i, blob in enumerate(layer.blobs):
                    if str(i) not in group:
                        if id(blob) in owned:
                            raise ShapeError(f"{path} has no param blob {i} for this layer "
                                             f"(it has {len(group)})", layer=name, file=path)
                        continue  # a shared param: its owner loads it
                    values = np.asarray(group[str(i)])
                    if values.shape != blob.shape:
                        raise ShapeError(f"param {i} has shape {blob.shape} in the net but "
                                         f"{values.shape} in {path}", layer=name, file=path)
                    blob.data[...] = self.backend.asarray(values, dtype=self.dtype)
        return ignored

    def to_proto(self, write_diff=False):
        out = pb.NetParameter()
        out.name = self.param.name
        for layer in self.layers:
            lp = out.layer.add()
            lp.CopyFrom(layer.layer_param)
            del lp.blobs[:]
            for blob in layer.blobs:
                proto.blob_to_proto(blob.to_numpy(), lp.blobs.add(),
                                    blob.to_numpy(diff=True) if write_diff else None)
        return out

    def save(self, path):
        """Write the params as a binary .caffemodel (atomically)."""
        proto.write_binary(self.to_proto(), path)

    # ---- pycaffe conveniences -----------------------------------------------------------
    def set_input_arrays(self, data, labels, layer=None):
        """pycaffe's: hand arrays to a MemoryData layer (the first one, or the one named)."""
        mem = [l for n, l in self.layer_dict.items() if l.type == "MemoryData" and layer in (None, n)]
        if not mem:
            raise NetdefError(f"set_input_arrays: the net has no MemoryData layer{f' named {layer!r}' if layer else ''}")
        mem[0].set_input_arrays(data, labels)

    def close(self):
        """Release what the layers hold besides blobs (data readers' prefetch threads); the
        net may not run afterwards."""
        for layer in self.layers:
            layer.close()

    def layer_need_backward(self, name):
        return self._layer_need_backward[self._index(name, 0)]

    def __repr__(self):
        return f"<netdef.Net '{self.name}' {len(self.layers)} layers, phase {pb.Phase.Name(self.phase)}>"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise NetdefError("Caffe's HDF5 model files need h5py, which is not installed: "
                          "pip install 'netdef[hdf5]'") from None
    return h5py


def _suppress_os_error():
    return contextlib.suppress(OSError)
