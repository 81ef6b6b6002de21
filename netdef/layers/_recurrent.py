"""What RNN and LSTM share (Caffe's RecurrentLayer): the layer unrolls its recurrence over the
T time steps of its input into an internal Net built from ordinary layers, runs that net
forward and backward, and owns that net's learnable params. Not a layer type itself.

recurrent_param { num_output  weight_filler  bias_filler  debug_info  expose_hidden }
bottom[0]: x, T x N x ...  (T time steps of N independent streams)
bottom[1]: cont, T x N: 0 where a sequence starts (the recurrent state is reset), else 1
bottom[2] (optional): x_static, N x ...: an input seen at every time step
then, with expose_hidden, the initial recurrent state (h_0, and c_0 for LSTM), each
1 x N x num_output; without it each forward starts from the last forward's final state
(so a long sequence can be fed in pieces; cont = 0 at a start resets it anyway).
top[0]: the per-step outputs, T x N x num_output; with expose_hidden, then the final state
(h_T, and c_T for LSTM), each 1 x N x num_output.

The internal net (its layers named "<layer>_<name>", as Caffe names them) shares its params
through ParamSpec names, so the layer's blobs are the params that net owns, in the order
Caffe lists them: a .caffemodel written by Caffe loads, and the solver updates them. Unlike
Caffe, gradients also reach the exposed h_0 / c_0 bottoms and flow from the exposed final
state tops (Caffe leaves those diffs unset).
"""
import logging

from ..core import netdef_pb2 as pb
from ..core.layer import Layer

log = logging.getLogger("netdef")


def add_layer(net, type_, name, bottoms=(), tops=(), params=()):
    """Append a LayerParameter to `net`: its ParamSpec names share params across time steps."""
    lp = net.layer.add(type=type_, name=name)
    lp.bottom.extend(bottoms)
    lp.top.extend(tops)
    for p in params:
        lp.param.add(name=p)
    return lp


def inner_product(net, name, bottom, top, params, num_output, weight_filler, bias_filler=None,
                  axis=2):
    lp = add_layer(net, "InnerProduct", name, [bottom], [top], params)
    ip = lp.inner_product_param
    ip.num_output = num_output
    ip.axis = axis
    ip.weight_filler.CopyFrom(weight_filler)
    ip.bias_term = bias_filler is not None
    if bias_filler is not None:
        ip.bias_filler.CopyFrom(bias_filler)
    return lp


class RecurrentLayer(Layer):
    min_bottom = 2

    # ---- what RNN and LSTM define -------------------------------------------------------
    #: names of the recurrent state blobs at t = 0 and at t = T, and of the output
    recurrent_inputs = ()
    output_name = None

    def recurrent_outputs(self):
        raise NotImplementedError

    def fill_unrolled_net(self, net):
        """Append the layers of the unrolled net (after the Input of x, cont, x_static)."""
        raise NotImplementedError

    def add_input_transforms(self, net, w, b, width):
        """The layers both unrolled nets open with, as Caffe names them: cont sliced into
        cont_1..cont_T; x_transform = x W (params w, b) sliced into {w}_x_1..{w}_x_T; with
        x_static, {w}_x_static (params {w}_static, no bias) reshaped to 1 x N x width. Returns
        the static term each step adds (a list of one blob name, or empty)."""
        rp = self.layer_param.recurrent_param
        wf, bf, steps = rp.weight_filler, rp.bias_filler, range(1, self.T + 1)
        add_layer(net, "Slice", "cont_slice", ["cont"], [f"cont_{t}" for t in steps]).slice_param.axis = 0
        inner_product(net, "x_transform", "x", f"{w}_x", [w, b], width, wf, bf)
        if self.static:
            inner_product(net, f"{w}_x_static", "x_static", f"{w}_x_static_preshape",
                          [f"{w}_static"], width, wf, axis=1)
            r = add_layer(net, "Reshape", f"{w}_x_static_reshape", [f"{w}_x_static_preshape"],
                          [f"{w}_x_static"])
            r.reshape_param.shape.dim.extend([1, -1, width])
        add_layer(net, "Slice", f"{w}_x_slice", [f"{w}_x"],
                  [f"{w}_x_{t}" for t in steps]).slice_param.axis = 0
        return [f"{w}_x_static"] if self.static else []

    # ---- the layer ----------------------------------------------------------------------
    def _hidden_count(self):
        return len(self.recurrent_inputs) if self.layer_param.recurrent_param.expose_hidden else 0

    def check_blob_counts(self, bottom, top):
        lo = 2 + self._hidden_count()
        if not lo <= len(bottom) <= lo + 1:
            hidden = " and the exposed hidden state " + ", ".join(self.recurrent_inputs) \
                if self._hidden_count() else ""
            raise self.error(f"takes {lo} or {lo + 1} bottom blobs (x, cont, optionally x_static"
                             f"{hidden}), got {len(bottom)}")
        want = 1 + self._hidden_count()
        if len(top) != want:
            raise self.error(f"takes exactly {want} top blob(s), got {len(top)}")

    def setup(self, bottom, top):
        rp = self.layer_param.recurrent_param
        if rp.num_output <= 0:
            raise self.error("recurrent_param.num_output must be positive")
        self.num_output = int(rp.num_output)
        self.expose = bool(rp.expose_hidden)
        self.debug_info = bool(rp.debug_info)
        self._check_inputs(bottom)
        self.T, self.N = bottom[0].shape[:2]
        self.static = len(bottom) > 2 + self._hidden_count()
        if self.static and (bottom[2].num_axes < 1 or bottom[2].shape[0] != self.N):
            raise self.shape_error(f"x_static (bottom[2]) {bottom[2].shape} must have N = {self.N} "
                                   "on its first axis")
        net = pb.NetParameter(name=self.name, force_backward=True)
        inp = add_layer(net, "Input", "input", tops=["x", "cont"] + (["x_static"] if self.static else []))
        for b in bottom[:3 if self.static else 2]:
            inp.input_param.shape.add().dim.extend(b.shape)
        state = add_layer(net, "Input", "state_input", tops=list(self.recurrent_inputs))
        state.input_param.shape.add().dim.extend(self._state_shape())
        self.fill_unrolled_net(net)
        if self.expose:  # the final state leaves through tops of its own, so gradients can enter
            for r in self.recurrent_outputs():
                add_layer(net, "Split", f"{r}_expose", [r], [f"{r}_exposed"])
        for lp in net.layer:
            lp.name = f"{self.name}_{lp.name}" if self.name else lp.name
        from ..core.net import Net

        self.net = Net(net, self.phase, dtype=self.dtype, backend=self.backend)
        self.blobs = list(self.net.learnable_params)
        self._carry = False  # whether h_T of the last forward may seed h_0

    def _state_shape(self):
        return (1, self.N, self.num_output)

    def _check_inputs(self, bottom):
        x, cont = bottom[0], bottom[1]
        if x.num_axes < 2:
            raise self.shape_error(f"x (bottom[0]) {x.shape} must have at least 2 axes: "
                                   "T time steps x N streams x ...")
        if cont.shape != x.shape[:2]:
            raise self.shape_error(f"cont (bottom[1]) {cont.shape} must be T x N = {x.shape[:2]}, "
                                   f"the first two axes of x {x.shape}")

    def allow_backward(self, bottom_index):
        return bottom_index != 1

    def reshape(self, bottom, top):
        self._check_inputs(bottom)
        if bottom[0].shape[0] != self.T:
            raise self.shape_error(f"the number of time steps changed from {self.T} to "
                                   f"{bottom[0].shape[0]}: the net is unrolled for {self.T}")
        if bottom[0].shape[1] != self.N:
            self._carry = False
        self.N = bottom[0].shape[1]
        blobs = self.net.blobs
        names = ["x", "cont"] + (["x_static"] if self.static else [])
        for name, b in zip(names, bottom, strict=False):
            blobs[name].reshape(b.shape)
        if self.static and bottom[2].shape[0] != self.N:
            raise self.shape_error(f"x_static (bottom[2]) {bottom[2].shape} must have N = {self.N} "
                                   "on its first axis")
        for i, name in enumerate(self.recurrent_inputs):
            blobs[name].reshape(self._state_shape())
            if self.expose:
                b = bottom[len(names) + i]
                if b.shape != self._state_shape():
                    raise self.shape_error(f"the hidden state bottom '{name}' {b.shape} must be "
                                           f"1 x N x num_output = {self._state_shape()}")
        self.net.reshape()
        top[0].reshape(blobs[self.output_name].shape)
        # top[1:] holds the final state only with expose_hidden (zips below stop at it)
        for t, r in zip(top[1:], self.recurrent_outputs(), strict=False):
            t.reshape(blobs[r].shape)

    def _copy(self, dst, src):
        dst[...] = src.reshape(dst.shape)

    def forward(self, bottom, top):
        blobs = self.net.blobs
        names = ["x", "cont"] + (["x_static"] if self.static else [])
        for name, b in zip(names, bottom, strict=False):
            self._copy(blobs[name].data, b.data)
        for i, (r0, rT) in enumerate(zip(self.recurrent_inputs, self.recurrent_outputs(), strict=True)):
            if self.expose:
                self._copy(blobs[r0].data, bottom[len(names) + i].data)
            elif self._carry:
                self._copy(blobs[r0].data, blobs[rT].data)
            else:
                self.backend.fill(blobs[r0].data, 0)
        self.net.forward_range(0, len(self.net.layers) - 1)
        self._carry = True
        self._copy(top[0].data, blobs[self.output_name].data)
        for t, r in zip(top[1:], self.recurrent_outputs(), strict=False):
            self._copy(t.data, blobs[f"{r}_exposed"].data)
        if self.debug_info:
            self._log_debug("Forward")

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the sequence continuation indicators "
                             "(bottom[1])")
        blobs = self.net.blobs
        exposed = {f"{r}_exposed": t for r, t in zip(self.recurrent_outputs(), top[1:], strict=False)}
        for name in self.net.outputs:
            if name == self.output_name:
                self._copy(blobs[name].diff, top[0].diff)
            elif name in exposed:
                self._copy(blobs[name].diff, exposed[name].diff)
            else:  # a final state that is not exposed: no gradient across batches, as Caffe
                self.backend.fill(blobs[name].diff, 0)
        self.net.backward_range(len(self.net.layers) - 1, 0)
        names = ["x", "cont"] + (["x_static"] if self.static else []) + \
            (list(self.recurrent_inputs) if self.expose else [])
        for i, name in enumerate(names):
            if i != 1 and propagate_down[i]:
                self._copy(bottom[i].diff, blobs[name].diff)
        if self.debug_info:
            self._log_debug("Backward")

    def _log_debug(self, direction):
        """Caffe's debug_info lines for the unrolled net: the mean absolute value of every
        layer's top data (forward) or bottom diff (backward)."""
        net = self.net
        for name in net.layer_dict:
            which = net.top_names[name] if direction == "Forward" else net.bottom_names[name]
            for b in which:
                blob = net.blobs[b]
                arr = blob.data if direction == "Forward" else blob.diff
                value = float(abs(arr).sum()) / max(blob.count, 1)
                what = "top" if direction == "Forward" else "bottom"
                field = "data" if direction == "Forward" else "diff"
                log.info("    [%s] Layer %s, %s blob %s %s: %.6g", direction, name, what, b,
                         field, value)
        for i, p in enumerate(self.blobs):
            arr = p.data if direction == "Forward" else p.diff
            log.info("    [%s] Layer %s, param blob %d %s: %.6g", direction, self.name, i,
                     "data" if direction == "Forward" else "diff",
                     float(abs(arr).sum()) / max(p.count, 1))

    def close(self):
        self.net.close()

