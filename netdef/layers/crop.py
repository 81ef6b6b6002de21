"""Crop: cuts bottom[0] down to the shape of bottom[1] (the reference) from `axis` on.

crop_param { axis (2)  offset (repeated) }
The axes before `axis` keep bottom[0]'s size; every axis d >= axis takes bottom[1]'s size and
starts at offset o_d counted from bottom[0]'s top-left (Caffe crops from the corner, never the
centre): no offset => 0 everywhere, one value => the same for every cropped axis, otherwise one
value per axis from `axis` on. Needs o_d + bottom[1].shape[d] <= bottom[0].shape[d].
forward:  y[i_0 .. i_{axis-1}, j_axis ..] = x[i_0 .. i_{axis-1}, j_axis + o_axis, ..]
backward: dx = dy inside the cropped window, 0 elsewhere; bottom[1] is only a shape reference
          and receives no gradient (zeros if asked).
shape:    top = bottom[0].shape[:axis] + bottom[1].shape[axis:]
"""
import numpy as np

from ..core.layer import Layer
from . import register_layer


@register_layer("Crop")
class CropLayer(Layer):
    exact_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        self.offsets_param = [int(o) for o in self.layer_param.crop_param.offset]
        self.geom = None
        self.geom_key = None

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        src, ref = bottom[0].shape, bottom[1].shape
        if len(src) != len(ref):
            raise self.shape_error(f"bottom[0] {src} and bottom[1] {ref} must have the same number of axes")
        axis = bottom[0].canonical_axis(self.layer_param.crop_param.axis)
        n_crop = len(src) - axis
        offs = self.offsets_param
        if len(offs) > 1 and len(offs) != n_crop:
            raise self.error(f"{len(offs)} offset values for {n_crop} cropped axes (axis {axis} of "
                             f"{len(src)}); give one value, or one per axis from axis {axis} on")
        offs = offs * n_crop if len(offs) == 1 else (offs or [0] * n_crop)
        for d in range(axis, len(src)):
            o = offs[d - axis]
            if o + ref[d] > src[d]:
                raise self.shape_error(
                    f"cannot crop bottom[0] {src} to bottom[1] {ref} from axis {axis} with offsets "
                    f"{offs}: on axis {d}, offset {o} + size {ref[d]} exceeds {src[d]}")
        self.offsets = offs
        out = tuple(src[:axis]) + tuple(ref[axis:])
        top[0].reshape(out)
        outer = bottom[0].count_range(0, axis)
        key = (src, out, tuple(offs))
        if key != self.geom_key:
            geom = [outer] + list(src[axis:]) + [outer] + list(ref[axis:]) + [0] + list(offs)
            self.ndim = 1 + n_crop
            self.geom = self.backend.asarray(np.array(geom, dtype=np.int64))
            self.geom_key = key

    def forward(self, bottom, top):
        iters, tile = self.row_launch(top[0].count, top[0].shape[-1])
        self.kernels("crop").crop_forward(iters, bottom[0].data, top[0].data, self.ndim, self.geom, tile)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            iters, tile = self.row_launch(bottom[0].count, bottom[0].shape[-1])
            self.kernels("crop").crop_backward(iters, top[0].diff, bottom[0].diff, self.ndim,
                                               self.geom, tile)
        if len(propagate_down) > 1 and propagate_down[1]:
            bottom[1].diff[...] = 0
