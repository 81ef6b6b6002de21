"""ArgMax: the indices (and/or values) of the top_k largest values.

argmax_param { out_max_val (false)  top_k (1)  axis }
With axis: over bottom.shape[axis] at every other position;
           top = bottom.shape with shape[axis] = top_k, holding the indices, or with out_max_val
           the values.
Without axis: over all of bottom.count(1) values of each item n;
           top = (N, 1, top_k) padded with 1s to the bottom's number of axes (at least 3), holding
           the indices; with out_max_val (N, 2, top_k, ...): the indices, then the values.
Order: larger values first; equal values put the larger index first (Caffe sorts (value, index)
pairs with std::greater).
backward: none (Caffe defines none).
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("ArgMax")
class ArgMaxLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.argmax_param
        self.out_max_val = bool(p.out_max_val)
        self.top_k = int(p.top_k)
        self.has_axis = p.HasField("axis")
        if self.top_k < 1:
            raise self.error(f"top_k must be >= 1, got {self.top_k}")

    def allow_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if self.has_axis:
            self.axis = bottom[0].canonical_axis(self.layer_param.argmax_param.axis)
            self.dim = shape[self.axis]
            if self.top_k > self.dim:
                raise self.error(f"top_k {self.top_k} is larger than axis {self.axis} of the bottom "
                                 f"{shape} ({self.dim} values)")
            self.dist = bottom[0].count_range(self.axis + 1)
            out = list(shape)
            out[self.axis] = self.top_k
            self.mode = 1 if self.out_max_val else 0
        else:
            if len(shape) < 1:
                raise self.shape_error(f"bottom shape {shape} has no axes")
            self.dim = bottom[0].count_range(1) if shape[0] else 0
            if self.top_k > self.dim:
                raise self.error(f"top_k {self.top_k} is larger than the {self.dim} values per item "
                                 f"of the bottom {shape}")
            self.dist = 1
            out = [1] * max(3, len(shape))
            out[0] = shape[0]
            out[2] = self.top_k
            if self.out_max_val:
                out[1] = 2
            self.mode = 2 if self.out_max_val else 0
        top[0].reshape(tuple(out))

    def forward(self, bottom, top):
        if self.dim == 0:
            return
        rows = bottom[0].count // self.dim
        self.kernels("argmax").argmax_forward(rows, bottom[0].data, top[0].data, self.dim, self.dist,
                                              self.top_k, self.mode)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("ArgMax has no backward pass")
