"""Input: declares the net's input blobs and their shapes; computes nothing.

    input_param { shape { dim: N dim: C dim: H dim: W } }   one shape for every top, or one per top
Users fill the data (net.blobs['data'].data[...] = x) and may reshape it, then net.reshape().
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("Input")
class InputLayer(Layer):
    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        shapes = self.layer_param.input_param.shape
        if len(shapes) not in (0, 1, len(top)):
            raise self.error(f"{len(shapes)} input shapes for {len(top)} tops; give one, or one per top")
        for i, t in enumerate(top):
            if shapes:
                t.reshape(tuple(shapes[i if len(shapes) > 1 else 0].dim))

    def reshape(self, bottom, top):
        pass  # the user owns the input shapes

    def forward(self, bottom, top):
        pass
