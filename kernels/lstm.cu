// LSTMUnit: one time step of the LSTM cell, per (n, d) of N x D hidden units.
// x holds the 4 D gate pre-activations of each of the N rows, in Caffe's order i, f, o, g:
//   i = sigmoid(x_i)  f = sigmoid(x_f)  o = sigmoid(x_o)  g = tanh(x_g)
//   c = cont * f * c_prev + i * g        h = o * tanh(c)
// cont (one per row) is 0 at the start of a sequence: the previous cell is forgotten.
// Backward (dc, dh the tops' diffs; the gates are recomputed from x, tanh(c) from top c):
//   dc_all = dc + dh * o * (1 - tanh(c)^2)
//   dc_prev = dc_all * cont * f
//   dx_i = dc_all * g * i (1 - i)           dx_f = dc_all * cont * c_prev * f (1 - f)
//   dx_o = dh * tanh(c) * o (1 - o)         dx_g = dc_all * i * (1 - g^2)
#include "common.cuh"

DEVICE_FN Dtype lstm_sigmoid(const Dtype v) { return Dtype(1) / (Dtype(1) + exp(-v)); }

// The four gates of element d from its row of pre-activations (i, f, o, g blocks of D each);
// backward recomputes them rather than keeping a copy of x's activations.
DEVICE_FN void lstm_gates(const Dtype* xr, const index_t d, const index_t D, Dtype& i, Dtype& f,
                          Dtype& o, Dtype& g) {
  i = lstm_sigmoid(xr[d]);
  f = lstm_sigmoid(xr[D + d]);
  o = lstm_sigmoid(xr[2 * D + d]);
  g = tanh(xr[3 * D + d]);
}

KERNEL(lstm_unit_forward, (const index_t n, const Dtype* c_prev, const Dtype* x,
                           const Dtype* cont, Dtype* c, Dtype* h, const index_t D)) {
  KERNEL_LOOP(k) {
    const index_t row = k / D, d = k % D;
    Dtype i, f, o, g;
    lstm_gates(x + row * 4 * D, d, D, i, f, o, g);
    const Dtype cv = cont[row] * f * c_prev[k] + i * g;
    c[k] = cv;
    h[k] = o * tanh(cv);
  }
}

// Writes dc_prev and the four gate gradients of element k (each k owns its four x entries).
KERNEL(lstm_unit_backward, (const index_t n, const Dtype* c_prev, const Dtype* x,
                            const Dtype* cont, const Dtype* c, const Dtype* dc, const Dtype* dh,
                            Dtype* dc_prev, Dtype* dx, const index_t D, const index_t want_c_prev,
                            const index_t want_x)) {
  KERNEL_LOOP(k) {
    const index_t row = k / D, d = k % D;
    Dtype i, f, o, g;
    lstm_gates(x + row * 4 * D, d, D, i, f, o, g);
    const Dtype tc = tanh(c[k]);
    const Dtype dc_all = dc[k] + dh[k] * o * (Dtype(1) - tc * tc);
    const Dtype ct = cont[row];
    if (want_c_prev) dc_prev[k] = dc_all * ct * f;
    if (want_x) {
      Dtype* dr = dx + row * 4 * D;
      dr[d] = dc_all * g * i * (Dtype(1) - i);
      dr[D + d] = dc_all * ct * c_prev[k] * f * (Dtype(1) - f);
      dr[2 * D + d] = dh[k] * tc * o * (Dtype(1) - o);
      dr[3 * D + d] = dc_all * i * (Dtype(1) - g * g);
    }
  }
}
