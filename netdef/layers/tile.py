"""Tile: repeats the bottom `tiles` times along `axis`.

tile_param { axis (1)  tiles (required, > 0) }
Seeing the bottom as (outer, inner), outer = prod(shape[:axis]), inner = prod(shape[axis:]),
the top is (outer, tiles, inner): whole blocks from `axis` on are repeated, so tiling
(2, 3) along axis 1 twice gives rows [a b c a b c] (numpy's np.tile, not np.repeat).
forward:  top[o, t, j] = bottom[o, j]                 t < tiles
backward: dbottom[o, j] = sum_t dtop[o, t, j]
shape:    top = bottom.shape with shape[axis] * tiles
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("Tile")
class TileLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.tile_param
        if not p.HasField("tiles"):
            raise self.error("tile_param.tiles must be given")
        if p.tiles <= 0:
            raise self.error(f"tile_param.tiles must be > 0, got {p.tiles}")
        self.tiles = int(p.tiles)
        self.axis_param = int(p.axis)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        axis = bottom[0].canonical_axis(self.axis_param)
        self.outer = bottom[0].count_range(0, axis)
        self.inner = bottom[0].count_range(axis)
        top[0].reshape(shape[:axis] + (shape[axis] * self.tiles,) + shape[axis + 1:])

    def forward(self, bottom, top):
        iters, tile = self.row_launch(top[0].count, self.inner)
        self.kernels("gather").tile_forward(iters, bottom[0].data, top[0].data, self.inner,
                                            self.tiles, tile)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.kernels("gather").tile_backward(bottom[0].count, top[0].diff, bottom[0].diff,
                                                 self.inner, self.tiles)
