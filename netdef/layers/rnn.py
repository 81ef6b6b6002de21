"""RNN: Caffe's plain recurrent layer (Elman network with a tanh output layer).

recurrent_param, bottoms and tops: see layers/_recurrent.py. With D = num_output, x_t the
step-t slice of x (1 x N x K, K = the product of x's axes after the second):
    h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])
    o_t = tanh(W_ho h_t + b_o)                       top[0] = [o_1; ...; o_T]  (T x N x D)
h_0 = 0 at the first forward, else the previous forward's h_T (or the bottom h_0 with
expose_hidden). Backward: backpropagation through time over the unrolled net.
Params, in Caffe's order: W_xh (D x K), b_h (D), [W_xh_static (D x K_static)], W_hh (D x D),
W_ho (D x D), b_o (D).
The unrolled net, as Caffe builds it: x_transform (InnerProduct, axis 2) of all of x at once,
Slice of it and of cont over time, then per step t: Scale (h_{t-1} by cont_t), InnerProduct
W_hh, Eltwise SUM, TanH -> h_t, InnerProduct W_ho, TanH -> o_t; Concat of the o_t.
shape:    top[0] = T x N x num_output; with expose_hidden top[1] = h_T, 1 x N x num_output
"""
from . import register_layer
from ._recurrent import RecurrentLayer, add_layer, inner_product


@register_layer("RNN")
class RNNLayer(RecurrentLayer):
    recurrent_inputs = ("h_0",)
    output_name = "o"

    def recurrent_outputs(self):
        return (f"h_{self.T}",)

    def fill_unrolled_net(self, net):
        rp = self.layer_param.recurrent_param
        D, wf, bf = self.num_output, rp.weight_filler, rp.bias_filler
        static = self.add_input_transforms(net, "W_xh", "b_h", D)
        for t in range(1, self.T + 1):
            p = t - 1
            add_layer(net, "Scale", f"h_conted_{p}", [f"h_{p}", f"cont_{t}"],
                      [f"h_conted_{p}"]).scale_param.axis = 0
            inner_product(net, f"W_hh_h_{p}", f"h_conted_{p}", f"W_hh_h_{p}", ["W_hh"], D, wf)
            add_layer(net, "Eltwise", f"h_neuron_input_{t}",
                      [f"W_hh_h_{p}", f"W_xh_x_{t}"] + static,
                      [f"h_neuron_input_{t}"])
            add_layer(net, "TanH", f"h_neuron_{t}", [f"h_neuron_input_{t}"], [f"h_{t}"])
            inner_product(net, f"W_ho_h_{t}", f"h_{t}", f"W_ho_h_{t}", ["W_ho", "b_o"], D, wf, bf)
            add_layer(net, "TanH", f"o_neuron_{t}", [f"W_ho_h_{t}"], [f"o_{t}"])
        add_layer(net, "Concat", "o_concat", [f"o_{t}" for t in range(1, self.T + 1)],
                  ["o"]).concat_param.axis = 0
