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
import logging
import os
from collections import OrderedDict

import numpy as np

from . import graph
from . import netdef_pb2 as pb
from . import proto
from .backend import get_backend
from .blob import Blob, ShapeClock
from .errors import LayerSetupError, NetdefError, ShapeError
from .layers import create_layer
from .memory import DiffPool, diff_lifetimes

log = logging.getLogger("netdef")

TRAIN, TEST = pb.TRAIN, pb.TEST


class Net:
    """pycaffe-compatible network.

    Net(network, phase, level=0, stages=None, weights=None)   network: path, prototxt text or
    NetParameter; also the legacy form Net(network, weights_file, phase)."""

    def __init__(self, network, phase=None, *legacy, level=0, stages=None, weights=None,
                 dtype=np.float32, backend=None):
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
        #: the weighted loss of the last forward() (None before the first)
        self.last_loss = None
        self._share_diffs = False
        self._diff_pool = DiffPool(self.backend, self.dtype)
        self._build()
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
        if self.param.force_backward:
            for li, layer in enumerate(self.layers):
                self._layer_need_backward[li] = True
                bottom_need_backward[li] = [bnb or layer.allow_backward(i)
                                            for i, bnb in enumerate(bottom_need_backward[li])]
        self._bottom_need_backward = bottom_need_backward

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

    def forward_range(self, start=0, end=None):
        """Run layers start..end (indices, inclusive); returns the weighted loss. Layers whose
        bottoms changed shape (an input reshaped by the user, a batch of another size from a
        data layer) are reshaped first; when nothing changed this costs one comparison."""
        end = len(self.layers) - 1 if end is None else end
        layers, bottoms, tops, losses = self.layers, self._bottom_ids, self._top_ids, self._layer_losses
        clock = self._clock
        if clock.ticks != self._seen_ticks:
            self._sync_shapes(start, end)
        loss = 0.0
        for li in range(start, end + 1):
            layer = layers[li]
            ticks = clock.ticks
            layer.forward(bottoms[li], tops[li])
            if clock.ticks != ticks:  # the layer gave its tops new shapes (a data layer's batch)
                layer.tops_reshaped = False
                self._shapes[li] = self._current_shapes(li)
                self._propagate(li + 1, end)
                if start == 0 and end == len(layers) - 1 and ticks == self._seen_ticks:
                    self._seen_ticks = clock.ticks
            for blob, w in losses[li]:
                loss += w * float(blob.data.sum())
        return loss

    def backward_range(self, start=None, end=0):
        start = len(self.layers) - 1 if start is None else start
        if self._clock.ticks != self._seen_ticks:
            self._sync_shapes(end, start)
        layers, bottoms, tops = self.layers, self._bottom_ids, self._top_ids
        need, propagate = self._layer_need_backward, self._bottom_need_backward
        for li in range(start, end - 1, -1):
            if need[li]:
                layers[li].backward(tops[li], propagate[li], bottoms[li])

    def _fill(self, arrays, allowed, kind, field):
        """Copy keyword arrays into the data (inputs) or diff (outputs) of named blobs."""
        for name, value in arrays.items():
            if name not in allowed:
                raise NetdefError(f"'{name}' is not an {kind} of the net ({kind}s: {allowed})")
            blob = self.blobs[name]
            if tuple(np.shape(value)) != blob.shape:
                raise ShapeError(f"{field} for {kind} '{name}' has shape {tuple(np.shape(value))}, the net "
                                 f"expects {blob.shape}; reshape the blob and call net.reshape() first",
                                 blob=name)
            getattr(blob, field)[...] = self.backend.asarray(value, dtype=self.dtype)

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """pycaffe's forward: inputs as keyword arrays; returns {output name: data} (plus `blobs`)."""
        self._fill(kwargs, self.inputs, "input", "data")
        self.last_loss = self.forward_range(self._index(start, 0), self._index(end, len(self.layers) - 1))
        names = list(self.top_names[self._layer_names[self._index(end, len(self.layers) - 1)]]) \
            if end is not None else list(self.outputs)
        return {n: self.blobs[n].data for n in names + list(blobs or [])}

    def set_loss_diffs(self):
        """Seed backward: each loss top's diff = its loss weight (what backward() starts from)."""
        for blob, w in self._loss_tops:
            blob.diff[...] = w

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """pycaffe's backward: output diffs as keyword arrays; returns {input name: diff}."""
        self.set_loss_diffs()
        self._fill(kwargs, self.outputs, "output", "diff")
        self.backward_range(self._index(start, len(self.layers) - 1), self._index(end, 0))
        names = list(self.inputs) + list(diffs or [])
        return {n: self.blobs[n].diff for n in names}

    def forward_backward(self):
        """One training pass: forward, then backward from the losses; returns the loss."""
        loss = self.forward_range()
        if self._share_diffs:
            self._diff_pool.plan(tuple(b.shape for b in self.blobs.values()), self._diff_lifetimes)
        self.set_loss_diffs()
        self.backward_range()
        return loss

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
