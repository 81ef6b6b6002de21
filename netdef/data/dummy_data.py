"""DummyData: tops of given shapes filled by fillers (for timing and tests).

    layer { name: "data" type: "DummyData" top: "data" top: "label"
      dummy_data_param {
        shape { dim: 1 dim: 3 dim: 128 dim: 128 }  shape { dim: 1 dim: 1 dim: 128 dim: 128 }
        data_filler { type: "gaussian" std: 1 }    data_filler { type: "constant" value: 0 } } }

Shapes: one `shape` for every top or one per top; or the legacy num/channels/height/width
(each given once for every top or once per top). Fillers: none (constant 0), one for every top,
or one per top. As in Caffe, tops with a constant filler are filled once; the others are filled
anew at every forward, from the backend's seeded generator (netdef.fillers).
"""
from ..core import netdef_pb2 as pb
from ..core.fillers import fill
from ..core.layer import Layer
from ..layers import register_layer


@register_layer("DummyData")
class DummyDataLayer(Layer):
    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        dp = self.layer_param.dummy_data_param
        n = len(top)
        legacy = [list(dp.num), list(dp.channels), list(dp.height), list(dp.width)]
        if len(dp.shape) and any(legacy):
            raise self.error("dummy_data_param: give shape or num/channels/height/width, not both")
        if len(dp.shape):
            if len(dp.shape) not in (1, n):
                raise self.error(f"dummy_data_param: {len(dp.shape)} shapes for {n} tops; give 1 or {n}")
            shapes = [tuple(dp.shape[i if len(dp.shape) > 1 else 0].dim) for i in range(n)]
        elif any(legacy):
            names = ("num", "channels", "height", "width")
            for name, vals in zip(names, legacy):
                if len(vals) not in (1, n):
                    raise self.error(f"dummy_data_param: {len(vals)} values of {name} for {n} tops; give 1 or {n}")
            shapes = [tuple(v[i if len(v) > 1 else 0] for v in legacy) for i in range(n)]
        else:
            raise self.error("dummy_data_param: no shape given (shape { dim: ... } per top)")
        nf = len(dp.data_filler)
        if nf not in (0, 1, n):
            raise self.error(f"dummy_data_param: {nf} data_fillers for {n} tops; give 0, 1 or {n}")
        if nf == 0:
            const = pb.FillerParameter(type="constant", value=0)
            self.fillers = [const] * n
        else:
            self.fillers = [dp.data_filler[i if nf > 1 else 0] for i in range(n)]
        self.refill = [f.type != "constant" for f in self.fillers]
        for t, shape, f in zip(top, shapes, self.fillers):
            t.reshape(shape)
            fill(t, f, self.name)
        self.filled = [t.shape for t in top]

    def reshape(self, bottom, top):
        pass  # as Caffe: after setup the tops' shapes are the user's (net.blobs[...].reshape)

    def forward(self, bottom, top):
        for i, (t, f, again) in enumerate(zip(top, self.fillers, self.refill)):
            # a constant top is filled once per shape (a reshape leaves new memory unfilled)
            if again or t.shape != self.filled[i]:
                fill(t, f, self.name)
                self.filled[i] = t.shape

    def backward(self, top, propagate_down, bottom):
        pass
