"""Parameter: a learnable blob as the layer's only top (no bottoms), e.g. a learned bias or
embedding table to be combined with other blobs by Eltwise, Scale, BatchReindex...

parameter_param { shape { dim: ... } }
blobs[0] has that shape and starts at 0, as Caffe's (there is no filler field: its values come
from a caffemodel or from training); lr_mult / decay_mult apply as for any param.
forward:  top = blobs[0]
backward: d blobs[0] += dtop (added, as every param gradient, so iter_size and shared params
          accumulate)
shape:    top = parameter_param.shape (a shape with no dims is a scalar blob)
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("Parameter")
class ParameterLayer(Layer):
    exact_num_bottom = 0
    exact_num_top = 1

    def setup(self, bottom, top):
        dims = tuple(int(d) for d in self.layer_param.parameter_param.shape.dim)
        if any(d < 0 for d in dims):
            raise self.error(f"parameter_param.shape {dims} has a negative dimension")
        self.blobs = [self.make_blob(dims)]
        self.blobs[0].data[...] = 0

    def reshape(self, bottom, top):
        top[0].reshape(self.blobs[0].shape)

    def forward(self, bottom, top):
        n = top[0].count
        iters, tile = self.row_launch(n, n)  # one row of n elements (none when n is 0)
        self.kernels("gather").copy_block(iters, self.blobs[0].data, top[0].data, n, n, 0, n, 0, tile)

    def backward(self, top, propagate_down, bottom):
        if self.param_needs_grad(0):
            self.kernels("eltwise").eltwise_axpby(top[0].count, top[0].diff, 1.0,
                                                  self.blobs[0].diff, 1.0)
