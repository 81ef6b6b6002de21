"""LSTMUnit: one time step of an LSTM cell (the gate arithmetic of Caffe's LSTM layer).

bottom[0]: c_prev, the previous cell state, 1 x N x D
bottom[1]: x, the gate pre-activations, 1 x N x 4D, in Caffe's order [i | f | o | g]
bottom[2]: cont, 1 x N: 0 where a sequence starts (the previous cell is then forgotten)
forward:  i = sigmoid(x_i)  f = sigmoid(x_f)  o = sigmoid(x_o)  g = tanh(x_g)
          c = cont f c_prev + i g          h = o tanh(c)          (top[0] = c, top[1] = h)
backward: with dc_all = dc + dh o (1 - tanh(c)^2):
          dc_prev = dc_all cont f
          dx_i = dc_all g i (1 - i)      dx_f = dc_all cont c_prev f (1 - f)
          dx_o = dh tanh(c) o (1 - o)    dx_g = dc_all i (1 - g^2)
          No gradient to cont.  (kernels/lstm.cu)
shape:    top[0] = top[1] = bottom[0] = 1 x N x D
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("LSTMUnit")
class LSTMUnitLayer(Layer):
    exact_num_bottom = 3
    exact_num_top = 2

    def allow_backward(self, bottom_index):
        return bottom_index < 2

    def reshape(self, bottom, top):
        c_prev, x, cont = bottom
        if c_prev.num_axes != 3 or c_prev.shape[0] != 1:
            raise self.shape_error(f"c_prev (bottom[0]) {c_prev.shape} must be 1 x N x D")
        N, D = c_prev.shape[1], c_prev.shape[2]
        if x.shape != (1, N, 4 * D):
            raise self.shape_error(f"the gate input (bottom[1]) {x.shape} must be 1 x N x 4D = "
                                   f"{(1, N, 4 * D)} for c_prev {c_prev.shape}")
        if cont.shape != (1, N):
            raise self.shape_error(f"cont (bottom[2]) {cont.shape} must be 1 x N = {(1, N)}")
        self.D = D
        for t in top:
            t.reshape(c_prev.shape)

    def forward(self, bottom, top):
        c_prev, x, cont = bottom
        self.kernels("lstm").lstm_unit_forward(c_prev.count, c_prev.data, x.data, cont.data,
                                               top[0].data, top[1].data, self.D)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            raise self.error("cannot backpropagate to the sequence continuation input (bottom[2])")
        if not (propagate_down[0] or propagate_down[1]):
            return
        c_prev, x, cont = bottom
        self.kernels("lstm").lstm_unit_backward(
            c_prev.count, c_prev.data, x.data, cont.data, top[0].data, top[0].diff, top[1].diff,
            c_prev.diff, x.diff, self.D, int(propagate_down[0]), int(propagate_down[1]))
