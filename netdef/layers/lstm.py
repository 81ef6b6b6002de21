"""LSTM: Caffe's long short-term memory layer (Hochreiter & Schmidhuber 1997, the form of
Graves 2013 without peepholes).

recurrent_param, bottoms and tops: see layers/_recurrent.py. With D = num_output, x_t the
step-t slice of x (1 x N x K):
    [i' f' o' g'] = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static]   (4D)
    c_t, h_t = LSTMUnit(c_{t-1}, [i' f' o' g'], cont_t)      (see layers/lstm_unit.py:
    c_t = cont_t sigmoid(f') c_{t-1} + sigmoid(i') tanh(g'),  h_t = sigmoid(o') tanh(c_t))
    top[0] = [h_1; ...; h_T]  (T x N x D)
h_0 = c_0 = 0 at the first forward, else the previous forward's h_T, c_T (or the bottoms h_0,
c_0 with expose_hidden). Backward: backpropagation through time over the unrolled net.
Params, in Caffe's order: W_xc (4D x K), b_c (4D), [W_xc_static (4D x K_static)], W_hc (4D x D).
The unrolled net, as Caffe builds it: x_transform (InnerProduct, axis 2) of all of x, Slice of
it and of cont over time, then per step t: Scale (h_{t-1} by cont_t), InnerProduct W_hc,
Eltwise SUM, LSTMUnit; Split of c_T, Concat of the h_t.
shape:    top[0] = T x N x num_output; with expose_hidden top[1] = h_T, top[2] = c_T
          (1 x N x num_output each); bottoms h_0 then c_0 likewise.
"""
from . import register_layer
from ._recurrent import RecurrentLayer, add_layer, inner_product


@register_layer("LSTM")
class LSTMLayer(RecurrentLayer):
    recurrent_inputs = ("h_0", "c_0")
    output_name = "h"

    def recurrent_outputs(self):
        return (f"h_{self.T}", "c_T")

    def fill_unrolled_net(self, net):
        rp = self.layer_param.recurrent_param
        D, wf = self.num_output, rp.weight_filler
        static = self.add_input_transforms(net, "W_xc", "b_c", 4 * D)
        for t in range(1, self.T + 1):
            p = t - 1
            add_layer(net, "Scale", f"h_conted_{p}", [f"h_{p}", f"cont_{t}"],
                      [f"h_conted_{p}"]).scale_param.axis = 0
            inner_product(net, f"transform_{t}", f"h_conted_{p}", f"W_hc_h_{p}", ["W_hc"], 4 * D, wf)
            add_layer(net, "Eltwise", f"gate_input_{t}",
                      [f"W_hc_h_{p}", f"W_xc_x_{t}"] + static,
                      [f"gate_input_{t}"])
            add_layer(net, "LSTMUnit", f"unit_{t}", [f"c_{p}", f"gate_input_{t}", f"cont_{t}"],
                      [f"c_{t}", f"h_{t}"])
        add_layer(net, "Split", "c_T_copy", [f"c_{self.T}"], ["c_T"])
        add_layer(net, "Concat", "h_concat", [f"h_{t}" for t in range(1, self.T + 1)],
                  ["h"]).concat_param.axis = 0
