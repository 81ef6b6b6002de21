"""Shared machinery of the one-bottom, one-top elementwise ("neuron") layers: ReLU, Sigmoid,
TanH, AbsVal, Power, Exp, Log, BNLL, ELU, PReLU, Dropout. Not a layer type itself.

top has the bottom's shape and may be the bottom (in place). A layer whose backward pass needs
the input x itself, not only the output y, says so through backward_reads_input(); when it runs
in place, forward first keeps a copy of x for backward (as Caffe's PReLU does), unless the Net
plans no backward for it (need_backward).
"""
from ..core.layer import Layer


class NeuronLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1
    in_place_ok = True

    _x_copy = None

    def backward_reads_input(self):
        return False

    def reshape(self, bottom, top):
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def _copies_input(self, bottom, top):
        return top[0] is bottom[0] and self.backward_reads_input()

    def keep_input(self, bottom, top):
        """Call first in forward: copies x when in place and a backward, which will need it,
        can follow (not in a TEST net without force_backward)."""
        if self._copies_input(bottom, top) and self.need_backward:
            x = bottom[0].data
            if self._x_copy is None or self._x_copy.shape != x.shape:
                self._x_copy = self.xp.empty_like(x)
            self._x_copy[...] = x
        else:
            self._x_copy = None

    def input_data(self, bottom, top):
        """The forward input x, for backward."""
        if not self._copies_input(bottom, top):
            return bottom[0].data
        if self._x_copy is None:
            raise self.error("backward after a forward that kept no copy of the input (the Net "
                             "planned no backward for this layer: use force_backward)")
        return self._x_copy

    def activation(self):
        return self.kernels("activation")
